#!/usr/bin/env python3
"""Deterministic benchmark CSVs for podero-onboard.

Row i (0-based) belongs to the simulator's i-th generated user
(`podero_onboard::sandbox::generated_user_id(i)`, i.e. what
`podero-onboard sandbox --generate-users N` registers):

    user_id          = 5eed0000-0000-4000-8000-{i as 12 hex digits}
    external_user_id = CRM-{i:08d}            (CRM-{i:08d}-v2 for a changed row)
    building_name    = Home

One building per user, so N rows = N users = N PUTs + N POSTs on a first run.

`--first I` starts at user I instead of 0 (external ids follow the user index).

`--changed-percent P` rewrites the external id of every (100/P)-th row
(i % step == step - 1): the "nightly sync" input, where P% of the users
changed in the CRM. The output is byte-for-byte the same for the same
arguments.

Usage: gen_csv.py ROWS OUT.csv [--first I] [--changed-percent P]
"""

import argparse
import sys


def user_id(i: int) -> str:
    """The simulator's generated_user_id(i): 0x5eed0000_0000_4000_8000_000000000000 + i."""
    value = 0x5EED0000_0000_4000_8000_000000000000 + i
    h = f"{value:032x}"
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("out")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--changed-percent", type=float, default=0.0)
    args = parser.parse_args()
    step = round(100 / args.changed_percent) if args.changed_percent > 0 else 0
    with open(args.out, "w", newline="", encoding="utf-8") as out:
        out.write("user_id,external_user_id,building_name\n")
        chunk = []
        for i in range(args.first, args.first + args.rows):
            ext = f"CRM-{i:08d}"
            if step and i % step == step - 1:
                ext += "-v2"
            chunk.append(f"{user_id(i)},{ext},Home\n")
            if len(chunk) == 65536:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
