//! Unit tests: one rule per test, each feeding a small in-memory CSV.

use std::io::{self, Cursor, Read};

use serde_json::json;

use super::*;

const HEADER: &str = "user_id,external_user_id,building_name";
const ID: &str = "497f6eca-6276-4993-bfeb-53cbbbba6f08";

fn reader_with(csv: &[u8], renames: &[(&str, &str)]) -> Result<Reader, InputError> {
    let renames: Vec<(String, String)> = renames
        .iter()
        .map(|(c, h)| (c.to_string(), h.to_string()))
        .collect();
    Reader::from_read(
        Cursor::new(csv.to_vec()),
        "test.csv",
        &renames,
        DEFAULT_MAX_RECORD_BYTES,
    )
}

fn records(csv: &str) -> Vec<Record> {
    reader_with(csv.as_bytes(), &[])
        .expect("header is valid")
        .map(|r| r.expect("no fatal error"))
        .collect()
}

fn only(csv: &str) -> Record {
    let mut all = records(csv);
    assert_eq!(all.len(), 1, "expected one record in {csv:?}, got {all:?}");
    all.remove(0)
}

fn valid(csv: &str) -> Row {
    match only(csv) {
        Record::Valid(row) => row,
        Record::Invalid(invalid) => panic!("expected a valid row, got: {invalid}"),
    }
}

fn invalid(csv: &str) -> Invalid {
    match only(csv) {
        Record::Invalid(invalid) => invalid,
        Record::Valid(row) => panic!("expected an invalid row, got {row:?}"),
    }
}

/// A one-row CSV with the required columns plus `extra` (a `name=value` column).
fn with_column(name: &str, value: &str) -> String {
    format!("{HEADER},{name}\n{ID},crm-1,Main House,\"{value}\"\n")
}

fn fatal(csv: &[u8]) -> InputError {
    reader_with(csv, &[]).expect_err("expected a fatal header error")
}

fn assert_rejects(csv: &str, column: &str, reason_part: &str) -> Invalid {
    let invalid = invalid(csv);
    assert_eq!(invalid.column.as_deref(), Some(column), "{invalid}");
    assert!(
        invalid.reason.contains(reason_part),
        "reason {:?} lacks {reason_part:?}",
        invalid.reason
    );
    invalid
}

fn user_id_row(user_id: &str) -> String {
    format!("{HEADER}\n\"{user_id}\",crm-1,Main House\n")
}

// ---- valid rows ----

#[test]
fn valid_row_is_parsed_with_its_line() {
    let row = valid(&format!("{HEADER}\n {ID} , crm-1 , Main House \n"));
    assert_eq!(row.line, 2);
    assert_eq!(row.user_id.map(|id| id.to_string()).as_deref(), Some(ID));
    assert_eq!(row.external_user_id, "crm-1");
    assert_eq!(row.building_name, "Main House");
    assert!(row.user_fields.is_empty() && row.building_fields.is_empty());
}

#[test]
fn uppercase_user_id_is_accepted() {
    let row = valid(&user_id_row(&ID.to_uppercase()));
    assert_eq!(row.user_id.map(|id| id.to_string()).as_deref(), Some(ID));
}

#[test]
fn empty_optional_cells_are_not_sent() {
    let csv = format!("{HEADER},first_name,photovoltaic,latitude\n{ID},crm-1,Home, ,,\n");
    let row = valid(&csv);
    assert!(
        row.user_fields.is_empty() && row.building_fields.is_empty(),
        "{row:?}"
    );
}

#[test]
fn blank_rows_are_skipped() {
    let all = records(&format!("{HEADER}\n,,\n  , ,\n{ID},crm-1,Home\n"));
    assert_eq!(all.len(), 1);
    assert!(
        matches!(&all[0], Record::Valid(row) if row.line == 4),
        "{all:?}"
    );
}

// ---- user_id ----

#[test]
fn user_id_rejects_path_traversal() {
    let invalid = assert_rejects(&user_id_row("../../admin"), "user_id", "is not a UUID");
    assert_eq!(invalid.value.as_deref(), Some("../../admin"));
}

#[test]
fn user_id_rejects_percent_encoded_slash() {
    assert_rejects(
        &user_id_row("497f6eca-6276-4993-bfeb-53cbbbba%2F08"),
        "user_id",
        "not a UUID",
    );
}

#[test]
fn user_id_rejects_query_string() {
    assert_rejects(&user_id_row(&format!("{ID}?x=1")), "user_id", "not a UUID");
}

#[test]
fn user_id_rejects_fragment() {
    assert_rejects(
        &user_id_row("497f6eca-6276-4993-bfeb-53cbbbb#6f08"),
        "user_id",
        "not a UUID",
    );
}

#[test]
fn user_id_rejects_inner_space() {
    assert_rejects(
        &user_id_row("497f6eca-6276-4993-bfeb 53cbbbba6f08"),
        "user_id",
        "not a UUID",
    );
}

#[test]
fn user_id_rejects_other_uuid_forms() {
    for form in [
        format!("{{{ID}}}"),
        ID.replace('-', ""),
        format!("urn:uuid:{ID}"),
    ] {
        assert_rejects(&user_id_row(&form), "user_id", "8-4-4-4-12");
    }
}

#[test]
fn user_id_rejects_nil_uuid() {
    assert_rejects(
        &user_id_row("00000000-0000-0000-0000-000000000000"),
        "user_id",
        "nil UUID",
    );
}

#[test]
fn an_empty_user_id_keys_the_row_by_its_crm_id() {
    let row = valid(&user_id_row(""));
    assert_eq!(row.user_id, None);
    assert_eq!(row.external_user_id, "crm-1");
}

#[test]
fn a_file_without_user_id_is_a_file_of_crm_keyed_customers_keeping_postcode_zeros() {
    let csv = "external_user_id,email,zip_code,building_name\nC-1,ann@example.com,01067,Home\n";
    let row = valid(csv);
    assert_eq!(row.user_id, None);
    assert_eq!(row.user_fields["zip_code"], serde_json::json!("01067"));
}

// ---- external_user_id ----

#[test]
fn external_user_id_rejects_empty() {
    let invalid = assert_rejects(
        &format!("{HEADER}\n{ID}, ,Home\n"),
        "external_user_id",
        "fill in the CRM id",
    );
    assert_eq!(invalid.value, None);
}

#[test]
fn external_user_id_rejects_256_chars() {
    let long = "x".repeat(256);
    let invalid = assert_rejects(
        &format!("{HEADER}\n{ID},{long},Home\n"),
        "external_user_id",
        "at most 255",
    );
    assert_eq!(
        invalid.value,
        Some(format!("{}…", "x".repeat(MAX_SHOWN_CHARS)))
    );
}

#[test]
fn external_user_id_accepts_255_chars() {
    let long = "é".repeat(255);
    assert_eq!(
        valid(&format!("{HEADER}\n{ID},{long},Home\n")).external_user_id,
        long
    );
}

#[test]
fn external_user_id_rejects_tab() {
    assert_rejects(
        &format!("{HEADER}\n{ID},crm\t1,Home\n"),
        "external_user_id",
        "control character",
    );
}

// ---- building_name ----

#[test]
fn empty_building_name_is_a_user_only_row() {
    let row = valid(&format!("{HEADER}\n{ID},crm-1,\"  \"\n"));
    assert_eq!(row.building_name, "");
    assert_eq!(row.property_id, None);
}

#[test]
fn a_file_without_building_name_has_only_user_rows() {
    let row = valid(&format!("user_id,external_user_id\n{ID},crm-1\n"));
    assert_eq!(row.building_name, "");
}

#[test]
fn building_data_without_a_building_name_is_invalid() {
    assert_rejects(
        &format!("{HEADER},property_type\n{ID},crm-1,,Flat\n"),
        "building_name",
        "the row has building data",
    );
}

#[test]
fn property_id_is_read_and_required_for_rows_with_a_building() {
    let header = format!("{HEADER},property_id");
    let row = valid(&format!("{header}\n{ID},crm-1,Home,P-1\n"));
    assert_eq!(row.property_id.as_deref(), Some("P-1"));
    let user_only = valid(&format!("{header}\n{ID},crm-1,,\n"));
    assert_eq!(
        (user_only.building_name.as_str(), user_only.property_id),
        ("", None)
    );
    assert_rejects(
        &format!("{header}\n{ID},crm-1,Home,\n"),
        "property_id",
        "every row with a building needs",
    );
    assert_rejects(
        &format!("{header}\n{ID},crm-1,,P-1\n"),
        "building_name",
        "the row has building data",
    );
    assert_rejects(
        &format!("{header}\n{ID},crm-1,Home,{}\n", "p".repeat(256)),
        "property_id",
        "at most 255 characters",
    );
}

#[test]
fn building_name_rejects_101_chars() {
    let name = "b".repeat(101);
    assert_rejects(
        &format!("{HEADER}\n{ID},crm-1,{name}\n"),
        "building_name",
        "at most 100",
    );
}

#[test]
fn building_name_counts_chars_not_bytes() {
    let name = "ä".repeat(100);
    assert_eq!(
        valid(&format!("{HEADER}\n{ID},crm-1,{name}\n")).building_name,
        name
    );
}

#[test]
fn building_name_rejects_embedded_newline() {
    assert_rejects(
        &format!("{HEADER}\n{ID},crm-1,\"Main\nHouse\"\n"),
        "building_name",
        "control character",
    );
}

#[test]
fn building_name_rejects_del_and_c1_controls() {
    for bad in ["Main\u{7f}House", "Main\u{85}House", "Main\u{1b}[31mHouse"] {
        let invalid = assert_rejects(
            &format!("{HEADER}\n{ID},crm-1,{bad}\n"),
            "building_name",
            "control",
        );
        let shown = invalid.value.unwrap();
        assert!(
            !shown.chars().any(char::is_control),
            "value not escaped: {shown:?}"
        );
    }
}

// ---- encoding and shape ----

#[test]
fn invalid_utf8_is_an_invalid_row_naming_the_column() {
    let mut csv = format!("{HEADER}\n{ID},crm-1,M").into_bytes();
    // 0x81 is undefined in Windows-1252 too: junk, not a Windows-1252 file (that is fatal).
    csv.extend_from_slice(b"\x81nner\n");
    csv.extend_from_slice(format!("{ID},crm-2,Home\n").as_bytes());
    let all: Vec<Record> = reader_with(&csv, &[])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let Record::Invalid(invalid) = &all[0] else {
        panic!("{all:?}")
    };
    assert_eq!(invalid.column.as_deref(), Some("building_name"));
    assert!(invalid.reason.contains("UTF-8"), "{invalid}");
    assert_eq!(invalid.value.as_deref(), Some("M\u{FFFD}nner"));
    assert!(matches!(&all[1], Record::Valid(row) if row.line == 3));
}

#[test]
fn ragged_row_is_invalid_without_column() {
    let all = records(&format!("{HEADER}\n{ID},crm-1,Home,extra\n{ID},crm-1\n"));
    for (record, fields) in all.iter().zip([4, 2]) {
        let Record::Invalid(invalid) = record else {
            panic!("{record:?}")
        };
        assert_eq!(invalid.column, None);
        assert!(
            invalid
                .reason
                .starts_with(&format!("row has {fields} fields, the header has 3")),
            "{invalid}"
        );
    }
}

#[test]
fn quoted_newline_in_street_add_info_is_kept_and_next_line_is_right() {
    let csv = format!(
        "{HEADER},street_add_info\n{ID},crm-1,Home,\"Stiege 2\nTop 7\"\n{ID},crm-2,Shed,\n"
    );
    let all = records(&csv);
    let Record::Valid(first) = &all[0] else {
        panic!("{all:?}")
    };
    assert_eq!(first.line, 2);
    assert_eq!(
        first.user_fields["street_add_info"],
        json!("Stiege 2\nTop 7")
    );
    assert!(
        matches!(&all[1], Record::Valid(row) if row.line == 4),
        "{all:?}"
    );
}

#[test]
fn street_add_info_still_rejects_other_controls() {
    assert_rejects(
        &with_column("building_street_add_info", "a\tb"),
        "building_street_add_info",
        "other than a line break",
    );
}

#[test]
fn lines_count_blank_lines_and_a_missing_final_newline() {
    let all = records(&format!(
        "\n{HEADER}\n\n\n{ID},crm-1,Home\n\n{ID},crm-2,\"Two\nlines\"\n{ID},crm-3,Last"
    ));
    let lines: Vec<u64> = all
        .iter()
        .map(|r| match r {
            Record::Valid(row) => row.line,
            Record::Invalid(invalid) => invalid.line,
        })
        .collect();
    assert_eq!(lines, [5, 7, 9]);
}

#[test]
fn quoted_newline_in_the_last_record_without_final_newline_keeps_its_line() {
    let all = records(&format!(
        "{HEADER},street_add_info\n{ID},crm-1,Home,\"a\nb\nc\""
    ));
    assert!(
        matches!(&all[0], Record::Valid(row) if row.line == 2),
        "{all:?}"
    );
}

#[test]
fn cr_only_line_endings_get_a_hint() {
    let err = fatal(format!("{HEADER}\r{ID},crm-1,Home\r").as_bytes());
    assert!(err.to_string().contains("CR only"), "{err}");
}

#[test]
fn bom_is_stripped() {
    let row = valid(&format!("\u{FEFF}{HEADER}\n{ID},crm-1,Home\n"));
    assert_eq!(row.building_name, "Home");
}

#[test]
fn crlf_line_endings_work() {
    let all = records(&format!(
        "{HEADER}\r\n{ID},crm-1,Home\r\n{ID},crm-2,\"Shed\r\nNo 2\"\r\n{ID},crm-3,Barn\r\n"
    ));
    let Record::Valid(first) = &all[0] else {
        panic!("{all:?}")
    };
    assert_eq!((first.line, first.building_name.as_str()), (2, "Home"));
    assert!(
        matches!(&all[1], Record::Invalid(i) if i.line == 3),
        "{all:?}"
    );
    assert!(
        matches!(&all[2], Record::Valid(row) if row.line == 5 && row.building_name == "Barn"),
        "{all:?}"
    );
}

// ---- header ----

#[test]
fn header_matching_ignores_case_and_spaces() {
    let row = valid(&format!(
        " User_ID ,EXTERNAL_USER_ID,  Building_Name\n{ID},crm-1,Home\n"
    ));
    assert_eq!(row.external_user_id, "crm-1");
}

#[test]
fn unknown_headers_are_ignored_and_listed() {
    let reader = reader_with(format!("{HEADER},Notes,notes,town\n").as_bytes(), &[]).unwrap();
    assert_eq!(reader.ignored_columns(), ["Notes", "notes"]);
    assert_eq!(reader.headers().len(), 6);
    assert_eq!(reader.source_name(), "test.csv");
}

#[test]
fn rename_maps_a_header_to_a_column() {
    let csv = format!("user_id,external_user_id,Property\n{ID},crm-1,Home\n");
    let mut reader = reader_with(csv.as_bytes(), &[("building_name", "property")]).unwrap();
    assert!(matches!(reader.next(), Some(Ok(Record::Valid(row))) if row.building_name == "Home"));
}

#[test]
fn rename_takes_a_header_away_from_its_default_column() {
    let csv =
        format!("user_id,external_user_id,building_name,email\n{ID},old-id,Home,crm@example.com\n");
    let mut reader = reader_with(csv.as_bytes(), &[("external_user_id", "email")]).unwrap();
    assert_eq!(reader.ignored_columns(), ["external_user_id"]);
    let Some(Ok(Record::Valid(row))) = reader.next() else {
        panic!("expected a valid row")
    };
    assert_eq!(row.external_user_id, "crm@example.com");
    assert!(
        row.user_fields.is_empty(),
        "email must not also be sent as the user's email: {row:?}"
    );
}

#[test]
fn missing_column_lists_headers_and_suggests_column_flag() {
    let err = fatal(b"user_id,crm,building_name\n");
    let message = err.to_string();
    for part in [
        "test.csv line 1",
        "external_user_id",
        "\"crm\"",
        "--column external_user_id=",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

#[test]
fn missing_renamed_column_names_the_header_looked_for() {
    let err = reader_with(HEADER.as_bytes(), &[("building_name", "objekt")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("building_name (looked for header \"objekt\")"),
        "{err}"
    );
}

#[test]
fn semicolon_separated_file_is_detected() {
    let row = valid(&format!(
        "user_id;external_user_id;building_name\n{ID};crm-1;Home\n"
    ));
    assert_eq!((row.line, row.building_name.as_str()), (2, "Home"));
}

#[test]
fn duplicated_column_is_fatal() {
    let err = fatal(b"user_id,external_user_id,building_name,User_Id \n");
    assert!(
        matches!(&err, InputError::DuplicateColumn { column, first: 1, second: 4, .. } if column == "user_id"),
        "{err:?}"
    );
    assert!(err.to_string().contains("appears twice"), "{err}");
}

#[test]
fn conflicting_renames_are_fatal() {
    let err = reader_with(HEADER.as_bytes(), &[("town", "ort"), ("town", "stadt")]).unwrap_err();
    assert!(matches!(err, InputError::Rename { .. }), "{err:?}");
}

#[test]
fn one_header_feeds_several_columns_and_headers_join() {
    let csv = format!("{HEADER},Ort,Straße,Nr\n{ID},crm-1,Home,Graz, Grüne Gasse ,5\n");
    let renames = [
        ("town", "ort"),
        ("building_town", "ort"),
        ("street_and_number", "straße+nr"),
    ];
    let mut reader = reader_with(csv.as_bytes(), &renames).unwrap();
    assert!(
        reader.ignored_columns().is_empty(),
        "{:?}",
        reader.ignored_columns()
    );
    let Some(Ok(Record::Valid(row))) = reader.next() else {
        panic!("expected a valid row");
    };
    assert_eq!(row.user_fields["town"], "Graz");
    assert_eq!(row.building_fields["town"], "Graz");
    assert_eq!(row.user_fields["street_and_number"], "Grüne Gasse 5");
    let missing = reader_with(csv.as_bytes(), &[("street_and_number", "straße+hausnr")]);
    assert!(
        matches!(missing, Err(InputError::Rename { .. })),
        "{missing:?}"
    );
}

#[test]
fn empty_file_is_fatal() {
    for csv in [&b""[..], b"\xEF\xBB\xBF", b"\n\n"] {
        let err = fatal(csv);
        assert!(matches!(err, InputError::Empty { .. }), "{err:?}");
        assert!(err.to_string().starts_with("test.csv is empty"), "{err}");
    }
}

#[test]
fn header_only_file_yields_no_records() {
    assert!(records(&format!("{HEADER}\n")).is_empty());
    assert!(records(HEADER).is_empty());
}

// ---- bounded memory ----

/// An endless field: 'a' forever, never allocated.
struct Endless;

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        buf.fill(b'a');
        Ok(buf.len())
    }
}

#[test]
fn endless_field_is_record_too_long() {
    let head = format!("{HEADER}\n{ID},crm-1,Home\n{ID},crm-2,");
    let source = Cursor::new(head.into_bytes()).chain(Endless);
    let mut reader = Reader::from_read(source, "big.csv", &[], 64 * 1024).unwrap();
    assert!(matches!(reader.next(), Some(Ok(Record::Valid(_)))));
    let err = reader
        .next()
        .expect("an error")
        .expect_err("record too long");
    assert!(
        matches!(
            err,
            InputError::RecordTooLong {
                line: 3,
                limit: 65536,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("big.csv line 3") && err.to_string().contains("really a CSV"),
        "{err}"
    );
    assert!(
        reader.next().is_none(),
        "iteration stops after a fatal error"
    );
}

#[test]
fn endless_header_is_record_too_long() {
    let err = Reader::from_read(Endless, "big.csv", &[], DEFAULT_MAX_RECORD_BYTES).unwrap_err();
    assert!(
        matches!(err, InputError::RecordTooLong { line: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn many_small_records_stay_under_a_small_limit() {
    let rows: String = (0..5000).map(|i| format!("{ID},crm-{i},Home\n")).collect();
    let csv = format!("{HEADER}\n{rows}");
    let reader = Reader::from_read(Cursor::new(csv.into_bytes()), "t", &[], 1024).unwrap();
    assert_eq!(
        reader
            .map(|r| r.unwrap())
            .filter(|r| matches!(r, Record::Valid(_)))
            .count(),
        5000
    );
}

// ---- typed optional columns ----

#[test]
fn enum_accepts_exact_and_normalises_case() {
    let row = valid(&format!(
        "{HEADER},property_type,occupant_type\n{ID},c,H,semi-DETACHED,Working adults\n"
    ));
    assert_eq!(row.building_fields["property_type"], json!("Semi-detached"));
    assert_eq!(
        row.building_fields["occupant_type"],
        json!("Working adults")
    );
}

#[test]
fn enum_rejects_unknown_value_listing_allowed() {
    assert_rejects(
        &with_column("property_type", "Castle"),
        "property_type",
        "Detached, Semi-detached, Bungalow",
    );
}

#[test]
fn counts_are_json_integers() {
    let csv = format!("{HEADER},property_size_m2,property_age,num_occupants\n{ID},c,H,120,0,4\n");
    let row = valid(&csv);
    assert_eq!(row.building_fields["property_size_m2"], json!(120));
    assert_eq!(row.building_fields["property_age"], json!(0));
    assert_eq!(row.building_fields["num_occupants"], json!(4));
}

#[test]
fn counts_reject_negative_decimal_and_huge() {
    for bad in ["-1", "12.5", "1e3", "120 m2"] {
        assert_rejects(
            &with_column("num_occupants", bad),
            "num_occupants",
            "whole number",
        );
    }
    assert_rejects(
        &with_column("property_size_m2", "2147483648"),
        "property_size_m2",
        "too large",
    );
}

#[test]
fn photovoltaic_accepts_yes_no_words() {
    for (text, expected) in [
        ("TRUE", true),
        ("yes", true),
        ("1", true),
        ("False", false),
        ("NO", false),
        ("0", false),
    ] {
        assert_eq!(
            valid(&with_column("photovoltaic", text)).building_fields["photovoltaic"],
            json!(expected)
        );
    }
    assert_rejects(
        &with_column("photovoltaic", "maybe"),
        "photovoltaic",
        "true, false, yes, no, 1 or 0",
    );
}

#[test]
fn coordinates_are_json_numbers_in_range() {
    let row = valid(&format!(
        "{HEADER},latitude,longitude\n{ID},c,H,48.2082,-16.3738\n"
    ));
    assert_eq!(row.user_fields["latitude"], json!(48.2082));
    assert_eq!(row.user_fields["longitude"], json!(-16.3738));
    assert_rejects(&with_column("latitude", "91"), "latitude", "-90 to 90");
    assert_rejects(&with_column("longitude", "NaN"), "longitude", "-180 to 180");
    assert_rejects(&with_column("latitude", "48,2"), "latitude", "dot");
}

#[test]
fn email_needs_the_basic_shape() {
    assert_eq!(
        valid(&with_column("email", "a.b@example.com")).user_fields["email"],
        json!("a.b@example.com")
    );
    for bad in [
        "a.example.com",
        "a@b",
        "@b.c",
        "a@b..c",
        "a b@c.d",
        "a@b@c.d",
    ] {
        assert_rejects(&with_column("email", bad), "email", "not an email address");
    }
}

#[test]
fn building_address_columns_use_api_names() {
    let csv = format!(
        "{HEADER},building_street_and_number,building_town,building_zip_code,building_country,town\n\
         {ID},c,H,Hauptstr. 1,Wien,1010,AT,Graz\n"
    );
    let row = valid(&csv);
    assert_eq!(
        serde_json::Value::Object(row.building_fields),
        json!({"street_and_number": "Hauptstr. 1", "town": "Wien", "zip_code": "1010", "country": "AT"})
    );
    assert_eq!(
        serde_json::Value::Object(row.user_fields),
        json!({"town": "Graz"})
    );
}

#[test]
fn building_zip_code_rejects_21_chars() {
    assert_rejects(
        &with_column("building_zip_code", &"1".repeat(21)),
        "building_zip_code",
        "at most 20",
    );
}

#[test]
fn space_heating_rejects_51_chars() {
    assert_rejects(
        &with_column("space_heating", &"g".repeat(51)),
        "space_heating",
        "at most 50",
    );
}

// ---- messages, options and API surface ----

#[test]
fn invalid_displays_line_column_and_value() {
    let invalid = invalid(&user_id_row("abc"));
    assert!(
        invalid
            .to_string()
            .starts_with("line 2, column user_id: value \"abc\" is not a UUID: "),
        "{invalid}"
    );
    let ragged = record::ragged(7, 4, 3);
    assert!(
        ragged.to_string().starts_with("line 7: row has 4 fields"),
        "{ragged}"
    );
}

#[test]
fn shown_value_escapes_quotes_and_bidi_controls() {
    assert_eq!(
        display::shown("a\"b\\c\u{202E}d\ne"),
        "a\\\"b\\\\c\\u{202e}d\\ne"
    );
}

#[test]
fn parse_rename_accepts_known_columns() {
    assert_eq!(
        parse_rename(" Building_Name = Property "),
        Ok(("building_name".into(), "Property".into()))
    );
}

#[test]
fn parse_rename_rejects_unknown_column_listing_known_ones() {
    let err = parse_rename("house=property").unwrap_err();
    assert!(
        err.contains("unknown column \"house\"")
            && err.contains("building_name, property_id, first_name"),
        "{err}"
    );
    assert!(
        parse_rename("building_name")
            .unwrap_err()
            .contains("CANONICAL=HEADER")
    );
    assert!(parse_rename("building_name= ").is_err());
}

#[test]
fn source_parse_treats_dash_as_stdin() {
    assert_eq!(Source::parse("-"), Source::Stdin);
    assert_eq!(Source::parse("-").display_name(), "<stdin>");
    assert_eq!(Source::parse("users.csv").display_name(), "users.csv");
}

#[test]
fn open_missing_file_names_it() {
    let err = open(&InputOptions::new(Source::parse("/nonexistent/users.csv"))).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("cannot open /nonexistent/users.csv: ")
            && message.contains("check the path"),
        "{message}"
    );
}

#[test]
fn open_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = open(&InputOptions::new(Source::Path(dir.path().to_owned()))).unwrap_err();
    assert!(
        matches!(err, InputError::Open { .. }) && err.to_string().contains("directory"),
        "{err}"
    );
}

#[test]
fn open_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.csv");
    std::fs::write(&path, format!("{HEADER}\n{ID},crm-1,Home\n")).unwrap();
    let reader = open(&InputOptions::new(Source::Path(path))).unwrap();
    assert_eq!(reader.count(), 1);
}

#[test]
fn column_constants_match_the_column_table() {
    let table: Vec<&str> = columns::COLUMNS.iter().map(|c| c.name).collect();
    let listed: Vec<&str> = [USER_ID_COLUMN]
        .iter()
        .chain(&REQUIRED_COLUMNS)
        .chain(BUILDING_KEY_COLUMNS)
        .chain(USER_COLUMNS)
        .chain(BUILDING_COLUMNS)
        .copied()
        .collect();
    assert_eq!(table, listed);
}
