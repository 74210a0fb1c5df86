//! Property tests for the CSV input: no input makes it panic (in any encoding and with
//! any separator), valid rows carry URL-safe user ids, any sane building name is
//! accepted, and the same data reads the same as UTF-8 `,` or Windows-1252 `;`.

use std::io::Cursor;

use podero_onboard::input::{
    DEFAULT_MAX_RECORD_BYTES, Delimiter, Encoding, Format, Reader, Record,
};
use proptest::prelude::*;

const HEADER: &str =
    "user_id,external_user_id,building_name,latitude,photovoltaic,street_add_info\n";
const ID: &str = "497f6eca-6276-4993-bfeb-53cbbbba6f08";

fn read_all(bytes: Vec<u8>, limit: usize) -> Vec<Record> {
    let Ok(reader) = Reader::from_read(Cursor::new(bytes), "prop.csv", &[], limit) else {
        return Vec::new();
    };
    reader.map_while(Result::ok).collect()
}

/// Every record, in the given format; stops at the first fatal error like the caller.
fn read_all_with(bytes: Vec<u8>, limit: usize, format: Format) -> Vec<Record> {
    let Ok(reader) = Reader::from_read_with(Cursor::new(bytes), "prop.csv", &[], limit, format)
    else {
        return Vec::new();
    };
    reader.map_while(Result::ok).collect()
}

fn any_format() -> impl Strategy<Value = Format> {
    let encoding = prop_oneof![
        Just(Encoding::Utf8),
        Just(Encoding::Windows1252),
        Just(Encoding::Latin1),
        Just(Encoding::Utf16Le),
        Just(Encoding::Utf16Be),
    ];
    let delimiter = prop_oneof![
        Just(None),
        Just(Some(Delimiter::Comma)),
        Just(Some(Delimiter::Semicolon)),
        Just(Some(Delimiter::Tab)),
    ];
    (encoding, delimiter).prop_map(|(encoding, delimiter)| Format {
        encoding,
        delimiter,
    })
}

/// Prefixes that steer the reader into its format paths: BOMs, `sep=` lines, headers.
fn any_prefix() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xFF\xFE".to_vec()),
        Just(b"\xFE\xFF".to_vec()),
        Just(b"sep=;\r\n".to_vec()),
        Just(b"sep=|\n".to_vec()),
        Just(b"user_id;external_user_id;building_name;latitude\r\n".to_vec()),
        Just(b"user_id\texternal_user_id\tbuilding_name\n".to_vec()),
        Just(HEADER.as_bytes().to_vec()),
    ]
}

/// Text that Windows-1252 can encode: ASCII letters, umlauts, ß, accents, spaces.
fn latin_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9äöüÄÖÜßéèàçñ€ ]{1,30}".prop_map(|s| s.trim().to_owned())
}

/// Unicode bidi controls: cells holding one are invalid (issue 21).
const BIDI_CONTROLS: [char; 12] = [
    '\u{200e}', '\u{200f}', '\u{061c}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

fn is_bidi(c: char) -> bool {
    BIDI_CONTROLS.contains(&c)
}

/// A word of a building name: no control, whitespace or bidi character.
const NAME_WORD: &str =
    "[^\\p{Cc}\\s\\x{200E}\\x{200F}\\x{061C}\\x{202A}-\\x{202E}\\x{2066}-\\x{2069}]{1,10}";

fn csv_quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// A CSV-ish alphabet: separators, quotes, line breaks, hex digits, hyphens and junk.
fn csv_ish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(",".to_owned()),
            Just("\"".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("-".to_owned()),
            Just(ID.to_owned()),
            "[0-9a-fA-F]{1,8}",
            any::<char>().prop_map(String::from),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_all(bytes, DEFAULT_MAX_RECORD_BYTES);
    }

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        limit in 0usize..64,
    ) {
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend(body);
        read_all(bytes.clone(), limit);
        read_all(bytes, DEFAULT_MAX_RECORD_BYTES);
    }

    #[test]
    fn csv_like_bodies_never_panic_and_lines_only_grow(body in csv_ish()) {
        let records = read_all(format!("{HEADER}{body}").into_bytes(), DEFAULT_MAX_RECORD_BYTES);
        let lines: Vec<u64> = records.iter().map(|r| match r {
            Record::Valid(row) => row.line,
            Record::Invalid(invalid) => invalid.line,
        }).collect();
        prop_assert!(lines.iter().all(|&l| l >= 2), "lines {:?}", lines);
        prop_assert!(lines.windows(2).all(|w| w[0] < w[1]), "lines {:?}", lines);
    }

    #[test]
    fn valid_user_ids_are_canonical_and_url_safe(user_id in csv_ish(), name in "[A-Za-z ]{1,20}") {
        let csv = format!("{HEADER}{},crm-1,{},,,\n", csv_quoted(&user_id), csv_quoted(&name));
        for record in read_all(csv.into_bytes(), DEFAULT_MAX_RECORD_BYTES) {
            if let Record::Valid(row) = record {
                // An empty cell keys the row by its CRM id instead.
                let Some(id) = row.user_id else {
                    prop_assert!(user_id.trim().is_empty(), "{:?}", user_id);
                    continue;
                };
                let text = id.to_string();
                prop_assert!(text.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f' | '-')), "{}", text);
                prop_assert_eq!(text.len(), 36);
                prop_assert_eq!(text, user_id.trim().to_ascii_lowercase());
            }
        }
    }

    #[test]
    fn any_uuid_round_trips(raw in any::<u128>().prop_filter("not nil", |n| *n != 0), upper in any::<bool>()) {
        let id = uuid::Uuid::from_u128(raw).to_string();
        let written = if upper { id.to_uppercase() } else { id.clone() };
        let csv = format!("{HEADER}{written},crm-1,Home,,,\n");
        let records = read_all(csv.into_bytes(), DEFAULT_MAX_RECORD_BYTES);
        prop_assert!(matches!(&records[..], [Record::Valid(row)] if row.user_id.map(|u| u.to_string()) == Some(id.clone())), "{:?}", records);
    }

    #[test]
    fn building_names_of_1_to_100_non_control_chars_are_valid(
        name in proptest::collection::vec(any::<char>().prop_filter("no control or bidi chars", |c| !c.is_control() && !is_bidi(*c)), 1..=100)
            .prop_map(|chars| chars.into_iter().collect::<String>())
            .prop_filter("surrounding whitespace is trimmed", |s| s.trim() == s)
    ) {
        let csv = format!("{HEADER}{ID},crm-1,{},,,\n", csv_quoted(&name));
        let records = read_all(csv.into_bytes(), DEFAULT_MAX_RECORD_BYTES);
        match &records[..] {
            [Record::Valid(row)] => prop_assert_eq!(&row.building_name, &name),
            other => prop_assert!(false, "name {:?} gave {:?}", name, other),
        }
    }

    #[test]
    fn inner_spaces_in_building_names_are_kept(
        words in proptest::collection::vec(NAME_WORD, 1..8)
    ) {
        let name: String = words.join(" ").chars().take(100).collect::<String>().trim().to_owned();
        prop_assume!(!name.is_empty());
        let csv = format!("{HEADER}{ID},crm-1,{},,,\n", csv_quoted(&name));
        let records = read_all(csv.into_bytes(), DEFAULT_MAX_RECORD_BYTES);
        prop_assert!(matches!(&records[..], [Record::Valid(row)] if row.building_name == name), "{:?}", records);
    }

    #[test]
    fn a_bidi_control_anywhere_in_a_name_makes_the_row_invalid(
        words in proptest::collection::vec(NAME_WORD, 1..4),
        bidi in prop::sample::select(BIDI_CONTROLS.to_vec()),
        at in any::<prop::sample::Index>(),
    ) {
        let mut name: Vec<char> = words.join(" ").chars().take(90).collect();
        name.insert(at.index(name.len() + 1), bidi);
        let name: String = name.into_iter().collect();
        let csv = format!("{HEADER}{ID},crm-1,{},,,\n", csv_quoted(&name));
        let records = read_all(csv.into_bytes(), DEFAULT_MAX_RECORD_BYTES);
        prop_assert!(matches!(&records[..], [Record::Invalid(_)]), "{:?} gave {:?}", name, records);
    }

    #[test]
    fn arbitrary_bytes_never_panic_in_any_format(
        prefix in any_prefix(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        format in any_format(),
        limit in prop_oneof![Just(DEFAULT_MAX_RECORD_BYTES), 0usize..64],
    ) {
        let mut bytes = prefix;
        bytes.extend(body);
        read_all_with(bytes, limit, format);
    }

    #[test]
    fn windows_1252_semicolons_read_like_utf8_commas(
        names in proptest::collection::vec((latin_text(), latin_text()), 1..5),
        latitude in -90.0f64..90.0,
    ) {
        let latitude = format!("{latitude:.4}");
        let names: Vec<_> = names.into_iter().filter(|(a, b)| !a.is_empty() && !b.is_empty()).collect();
        prop_assume!(!names.is_empty());
        let mut utf8 = String::from("user_id,external_user_id,building_name,town,latitude\n");
        let mut excel = String::from("user_id;external_user_id;building_name;town;latitude\r\n");
        for (i, (building, town)) in names.iter().enumerate() {
            utf8.push_str(&format!("{ID},crm-{i},{building},{town},{latitude}\n"));
            let comma = latitude.replace('.', ",");
            excel.push_str(&format!("{ID};crm-{i};{building};{town};{comma}\r\n"));
        }
        let (excel, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&excel);
        prop_assert!(!unmappable);
        let format = Format { encoding: Encoding::Windows1252, delimiter: None };
        let a = read_all(utf8.into_bytes(), DEFAULT_MAX_RECORD_BYTES);
        let b = read_all_with(excel.into_owned(), DEFAULT_MAX_RECORD_BYTES, format);
        prop_assert_eq!(a.len(), names.len());
        prop_assert!(a.iter().all(|r| matches!(r, Record::Valid(_))), "{:?}", a);
        prop_assert_eq!(a, b);
    }
}
