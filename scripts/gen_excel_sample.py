#!/usr/bin/env python3
"""Writes samples/users-excel-de.csv: a CSV as Excel saves it in a German or Austrian
locale ("CSV (Trennzeichen-getrennt)"): fields separated by ';', Windows-1252 bytes,
CRLF line ends, decimal commas in latitude/longitude, umlauts and ß in names and towns.

The user ids are those of samples/sandbox-users.csv, so the file onboards against
`podero-onboard sandbox --users samples/sandbox-users.csv` (and the tests' simulator).
Deterministic: running it again rewrites the same bytes.

    python3 scripts/gen_excel_sample.py
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "samples" / "users-excel-de.csv"
IDS = ROOT / "samples" / "sandbox-users.csv"

HEADER = [
    "user_id", "external_user_id", "building_name", "first_name", "last_name",
    "street_and_number", "zip_code", "town", "country", "latitude", "longitude",
    "property_type", "space_heating", "property_size_m2", "building_town",
]

# (external id, building, first, last, street, zip, town, country, lat, lon,
#  property type, heating, m², building town)
PEOPLE = [
    ("KD-4711", "Haus Müller", "Jürgen", "Müller", "Grüne Gasse 5", "8054",
     "Graz-Straßgang", "AT", "47,0333", "15,3833", "Detached", "Wärmepumpe", "142",
     "Graz-Straßgang"),
    ("KD-4712", "Ferienwohnung Zell", "Renée", "Weiß", "Seeuferstraße 12", "5700",
     "Zell am See", "AT", "47,3236", "12,7966", "Flat", "Fernwärme", "58", "Zell am See"),
    ("KD-4713", "Bäckerei Größl", "Ludwig", "Größl", "Hauptstraße 1", "3100",
     "St. Pölten", "AT", "48,2047", "15,6256", "Terraced", "Gas", "210", "St. Pölten"),
    ("KD-4714", "Wohnung Schönbrunn", "Zoë", "Öztürk", "Schönbrunner Straße 88", "1050",
     "Wien", "AT", "48,1889", "16,3539", "Flat", "Fernwärme", "74", "Wien"),
    ("KD-4715", "Almhütte", "Jörg", "Fußenegger", "Bödele 3", "6850", "Dornbirn", "AT",
     "47,4125", "9,7417", "Bungalow", "Holz", "96", "Dornbirn"),
    ("KD-4716", "Haus Köhler", "Ännchen", "Köhler", "Äußere Maximilianstraße 9",
     "80539", "München", "DE", "48,1374", "11,5755", "Semi-detached", "Öl", "131",
     "München"),
]


def quote(value: str) -> str:
    """Excel quotes a field only when it holds the separator, a quote or a line break."""
    if any(c in value for c in ';"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def main() -> None:
    ids = [line.strip() for line in IDS.read_text().splitlines()[1:] if line.strip()]
    lines = [";".join(HEADER)]
    for user_id, person in zip(ids, PEOPLE):
        lines.append(";".join(quote(v) for v in (user_id, *person)))
    # Excel ends every line, the last too, with CRLF.
    OUT.write_bytes("".join(line + "\r\n" for line in lines).encode("cp1252"))
    print(f"wrote {OUT.relative_to(ROOT)}: {len(lines) - 1} rows")


if __name__ == "__main__":
    main()
