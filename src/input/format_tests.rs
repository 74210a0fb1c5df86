//! Unit tests of the file formats: separators (flag, `sep=` line, detection),
//! encodings, the Windows-1252 diagnosis and decimal commas. Each feeds bytes in memory.

use std::io::Cursor;

use serde_json::json;

use super::*;

const ID: &str = "497f6eca-6276-4993-bfeb-53cbbbba6f08";

fn open_with(bytes: &[u8], format: Format) -> Result<Reader, InputError> {
    Reader::from_read_with(
        Cursor::new(bytes.to_vec()),
        "test.csv",
        &[],
        DEFAULT_MAX_RECORD_BYTES,
        format,
    )
}

fn read_with(bytes: &[u8], format: Format) -> Result<Vec<Record>, InputError> {
    open_with(bytes, format)?.collect()
}

fn rows(bytes: &[u8], format: Format) -> Vec<Row> {
    read_with(bytes, format)
        .expect("readable")
        .into_iter()
        .map(|r| match r {
            Record::Valid(row) => row,
            Record::Invalid(invalid) => panic!("invalid row: {invalid}"),
        })
        .collect()
}

fn detected(bytes: &[u8]) -> Vec<Row> {
    rows(bytes, Format::default())
}

fn encoded(encoding: Encoding) -> Format {
    Format {
        encoding,
        delimiter: None,
    }
}

fn separated(delimiter: Delimiter) -> Format {
    Format {
        encoding: Encoding::Utf8,
        delimiter: Some(delimiter),
    }
}

fn windows_1252(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable, "{text:?} fits Windows-1252");
    bytes.into_owned()
}

#[test]
fn comma_semicolon_and_tab_headers_are_detected() {
    for sep in [",", ";", "\t"] {
        let csv = format!(
            "user_id{sep}external_user_id{sep}building_name{sep}town\n\
             {ID}{sep}crm-1{sep}Home{sep}\"Wien, Innere Stadt\"\n"
        );
        let rows = detected(csv.as_bytes());
        assert_eq!(rows.len(), 1, "{sep:?}");
        assert_eq!(rows[0].building_name, "Home", "{sep:?}");
        assert_eq!(rows[0].user_fields["town"], json!("Wien, Innere Stadt"));
    }
}

#[test]
fn detection_honours_renames() {
    let renames = [("building_name".to_owned(), "Objekt".to_owned())];
    let csv = format!("user_id;external_user_id;Objekt\n{ID};crm-1;Haus\n");
    let reader = Reader::from_read(
        Cursor::new(csv.into_bytes()),
        "t.csv",
        &renames,
        DEFAULT_MAX_RECORD_BYTES,
    )
    .expect("semicolon header with a renamed column");
    assert_eq!(reader.headers(), ["user_id", "external_user_id", "Objekt"]);
}

#[test]
fn a_header_that_fits_two_separators_is_ambiguous_and_names_the_flag() {
    let csv = b"user_id;external_user_id;building_name;x,user_id,external_user_id,building_name\n";
    let err = open_with(csv, Format::default()).expect_err("ambiguous");
    assert!(
        matches!(&err, InputError::AmbiguousDelimiter { candidates, line: 1, .. }
            if candidates == &[Delimiter::Comma, Delimiter::Semicolon]),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("--delimiter ','"), "{text}");
    assert!(text.contains("with ',' and with ';'"), "{text}");
    let chosen = open_with(csv, separated(Delimiter::Semicolon)).expect("the flag decides");
    assert_eq!(
        chosen.headers()[3],
        "x,user_id,external_user_id,building_name"
    );
}

#[test]
fn a_semicolon_header_forced_to_comma_gets_a_hint_naming_the_flag() {
    let csv = format!("user_id;external_user_id;building_name\n{ID};crm-1;Home\n");
    let err = open_with(csv.as_bytes(), separated(Delimiter::Comma)).expect_err("forced");
    let text = err.to_string();
    assert!(text.contains("separated by semicolons"), "{text}");
    assert!(text.contains("--delimiter says ','"), "{text}");
    assert!(text.contains("run with --delimiter ';'"), "{text}");
}

#[test]
fn a_pipe_separated_header_is_explained() {
    let err = open_with(
        b"user_id|external_user_id|building_name\n",
        Format::default(),
    )
    .expect_err("pipes");
    assert!(err.to_string().contains("separated by pipes"), "{err}");
}

#[test]
fn sep_line_is_honoured_skipped_and_line_numbers_stay_the_files() {
    let csv = format!(
        "sep=;\r\nuser_id;external_user_id;building_name\r\n{ID};crm-1;Home\r\n\r\n{ID};;Flat\r\n"
    );
    let records = read_with(csv.as_bytes(), Format::default()).expect("readable");
    assert!(
        matches!(&records[0], Record::Valid(row) if row.line == 3 && row.building_name == "Home"),
        "{records:?}"
    );
    assert!(
        matches!(&records[1], Record::Invalid(i) if i.line == 5),
        "{records:?}"
    );
}

#[test]
fn sep_line_errors_name_the_header_line() {
    let err = open_with(b"sep=,\r\nuser_id,building_name\r\n", Format::default())
        .expect_err("missing column");
    assert!(
        matches!(err, InputError::MissingColumns { line: 2, .. }),
        "{err:?}"
    );
    let err = open_with(
        b"sep=;\nuser_id,external_user_id,building_name\n",
        Format::default(),
    )
    .expect_err("sep says ;");
    assert!(err.to_string().contains("first line says sep=;"), "{err}");
    let err = open_with(b"sep=|\nuser_id|x\n", Format::default()).expect_err("pipe sep");
    assert!(
        matches!(&err, InputError::UnsupportedSeparator { value, .. } if value == "|"),
        "{err:?}"
    );
}

#[test]
fn decimal_commas_in_coordinates_become_json_numbers_when_not_comma_separated() {
    let csv = format!(
        "user_id;external_user_id;building_name;latitude;longitude\n\
         {ID};crm-1;Home;48,2082;-16,3738\n"
    );
    let row = &detected(csv.as_bytes())[0];
    assert_eq!(row.user_fields["latitude"], json!(48.2082));
    assert_eq!(row.user_fields["longitude"], json!(-16.3738));
}

#[test]
fn decimal_comma_stays_invalid_in_a_comma_file_and_in_integer_columns() {
    let comma_file =
        format!("user_id,external_user_id,building_name,latitude\n{ID},crm-1,Home,\"48,2082\"\n");
    let records = read_with(comma_file.as_bytes(), Format::default()).expect("readable");
    assert!(
        matches!(&records[0], Record::Invalid(i) if i.reason.contains("uses a comma")),
        "{records:?}"
    );
    let integers = format!(
        "user_id;external_user_id;building_name;property_size_m2;latitude\n\
         {ID};crm-1;Home;1,500;\n{ID};crm-2;Home;;91,5\n"
    );
    let records = read_with(integers.as_bytes(), Format::default()).expect("readable");
    assert!(
        matches!(&records[0], Record::Invalid(i) if i.column.as_deref() == Some("property_size_m2")),
        "{records:?}"
    );
    assert!(
        matches!(&records[1], Record::Invalid(i) if i.value.as_deref() == Some("91,5")),
        "the value is shown as written: {records:?}"
    );
}

#[test]
fn windows_1252_file_is_decoded_with_the_flag() {
    let csv = windows_1252(&format!(
        "user_id;external_user_id;building_name;last_name;town\r\n\
         {ID};crm-1;Haus Müller;Müller;Graz-Straßgang\r\n"
    ));
    let row = &rows(&csv, encoded(Encoding::Windows1252))[0];
    assert_eq!(row.building_name, "Haus Müller");
    assert_eq!(row.user_fields["town"], json!("Graz-Straßgang"));
    let latin1 = &rows(&csv, encoded(Encoding::Latin1))[0];
    assert_eq!(latin1, row);
}

#[test]
fn windows_1252_read_as_utf8_stops_at_open_naming_the_flag() {
    let csv = windows_1252(&format!(
        "user_id;external_user_id;building_name\r\n{ID};crm-1;Home\r\n{ID};crm-2;Haus Müller\r\n"
    ));
    let err = open_with(&csv, Format::default()).expect_err("not UTF-8");
    assert!(
        matches!(&err, InputError::LooksLikeWindows1252 { line: 3, value, .. } if value == "Haus Müller"),
        "{err:?}"
    );
    assert!(err.to_string().contains("--encoding windows-1252"), "{err}");
}

#[test]
fn windows_1252_past_the_lookahead_stops_the_stream_at_its_line() {
    let mut text = String::from("user_id,external_user_id,building_name\n");
    let rows = sniff::LOOKAHEAD_BYTES / 40 + 10;
    for i in 0..rows {
        text.push_str(&format!("{ID},crm-{i},Home {i}\n"));
    }
    text.push_str(&format!("{ID},crm-x,Haus Müller\n"));
    let reader = open_with(&windows_1252(&text), Format::default()).expect("ASCII prefix");
    let results: Vec<_> = reader.collect();
    assert_eq!(results.len(), rows + 1);
    assert!(results[..rows].iter().all(Result::is_ok));
    let line = rows as u64 + 2;
    assert!(
        matches!(results.last(), Some(Err(InputError::LooksLikeWindows1252 { line: l, .. })) if *l == line),
        "{:?}",
        results.last()
    );
}

#[test]
fn a_utf8_file_with_one_bad_cell_reports_the_row_not_the_file() {
    let mut csv =
        format!("user_id,external_user_id,building_name\n{ID},crm-1,Jürgen\n{ID},crm-2,M")
            .into_bytes();
    csv.extend_from_slice(b"\xFCller\n");
    let records = read_with(&csv, Format::default()).expect("not fatal");
    assert!(matches!(&records[0], Record::Valid(_)), "{records:?}");
    assert!(
        matches!(&records[1], Record::Invalid(i) if i.reason.contains("--encoding")),
        "{records:?}"
    );
}

fn utf16(text: &str, bom: bool, big_endian: bool) -> Vec<u8> {
    let unit = |u: u16| {
        if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        }
    };
    let bom = bom.then_some(0xFEFF).into_iter();
    bom.chain(text.encode_utf16()).flat_map(unit).collect()
}

#[test]
fn utf16_is_read_by_its_bom_or_the_flag() {
    let text = format!("user_id\texternal_user_id\tbuilding_name\r\n{ID}\tcrm-1\tHaus Müller\r\n");
    let expected = "Haus Müller";
    let by_bom = rows(&utf16(&text, true, false), Format::default());
    assert_eq!(by_bom[0].building_name, expected);
    let big_endian = rows(&utf16(&text, true, true), Format::default());
    assert_eq!(big_endian[0].building_name, expected);
    let by_flag = rows(&utf16(&text, false, false), encoded(Encoding::Utf16Le));
    assert_eq!(by_flag[0].building_name, expected);
    assert_eq!(by_flag[0].line, 2);
}

#[test]
fn the_same_data_gives_the_same_row_in_any_encoding_and_separator() {
    let utf8 = format!(
        "user_id,external_user_id,building_name,last_name,latitude\n\
         {ID},crm-1,Haus Müller,Weiß,48.2082\n"
    );
    let excel = windows_1252(&format!(
        "sep=;\r\nuser_id;external_user_id;building_name;last_name;latitude\r\n\
         {ID};crm-1;Haus Müller;Weiß;48,2082\r\n"
    ));
    let a = &detected(utf8.as_bytes())[0];
    let b = &rows(&excel, encoded(Encoding::Windows1252))[0];
    assert_eq!((a.line, b.line), (2, 3));
    assert_eq!(
        Row {
            line: 0,
            ..a.clone()
        },
        Row {
            line: 0,
            ..b.clone()
        }
    );
}

#[test]
fn flags_parse_and_reject_unknown_values() {
    assert_eq!(parse_delimiter(";"), Ok(Delimiter::Semicolon));
    assert_eq!(parse_delimiter("TAB"), Ok(Delimiter::Tab));
    assert_eq!(parse_delimiter(","), Ok(Delimiter::Comma));
    assert!(parse_delimiter("|").unwrap_err().contains("',' ';' or tab"));
    assert_eq!(parse_encoding("Windows-1252"), Ok(Encoding::Windows1252));
    assert_eq!(parse_encoding("latin1"), Ok(Encoding::Latin1));
    assert_eq!(parse_encoding("utf-16"), Ok(Encoding::Utf16Le));
    assert!(
        parse_encoding("ebcdic")
            .unwrap_err()
            .contains("windows-1252")
    );
}
