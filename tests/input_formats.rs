//! The files partners actually have (issue 15), end to end: the real binary against the
//! simulator. A German-Excel CSV (`;`, Windows-1252, CRLF, decimal commas) onboards
//! with names arriving as the right Unicode; the same data as UTF-8 `,` costs zero
//! calls; a Windows-1252 file read as UTF-8 stops before any request naming
//! `--encoding`; separators are detected (or ambiguous, naming `--delimiter`); an Excel
//! `sep=` line is honoured and line numbers stay those of the file. Problems with the
//! file as a whole (missing, header only, malformed header, an oversized record) stop
//! the run before any request, the token's included.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Harness, generated_csv, states};
use podero_onboard::sandbox;
use serde_json::{Value, json};
use uuid::Uuid;

/// The committed sample (written by `scripts/gen_excel_sample.py`).
fn excel_sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/users-excel-de.csv")
}

fn sandbox_users() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/sandbox-users.csv")
}

/// A simulator knowing the users of `samples/sandbox-users.csv`.
async fn harness_with_sample_users() -> Harness {
    let builder = sandbox::Builder::new()
        .users_from_csv(&sandbox_users())
        .expect("sample users");
    Harness::new(builder).await
}

fn user(i: u64) -> Uuid {
    sandbox::generated_user_id(i)
}

fn sample_user(i: usize) -> Uuid {
    let text = std::fs::read_to_string(sandbox_users()).expect("sample users");
    let line = text.lines().nth(i + 1).expect("enough sample users");
    Uuid::parse_str(line.trim()).expect("uuid")
}

/// The sample as a UTF-8, comma-separated, LF file with decimal points: the same CRM
/// data as another night's export.
fn sample_as_utf8_commas() -> String {
    let bytes = std::fs::read(excel_sample()).expect("sample");
    let (text, _, malformed) = encoding_rs::WINDOWS_1252.decode(&bytes);
    assert!(!malformed);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let coordinate = |i: usize| matches!(&headers[i], "latitude" | "longitude");
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&headers).expect("write");
    for record in reader.records() {
        let record = record.expect("record");
        let fields = record.iter().enumerate().map(|(i, field)| {
            if coordinate(i) {
                field.replace(',', ".")
            } else {
                field.to_owned()
            }
        });
        writer
            .write_record(fields.collect::<Vec<_>>())
            .expect("write");
    }
    String::from_utf8(writer.into_inner().expect("flush")).expect("utf-8")
}

fn text(fields: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    fields.get(name).and_then(Value::as_str).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_sample_onboards_every_row_with_names_arriving_as_unicode() {
    let h = harness_with_sample_users().await;
    let out = h
        .run(&excel_sample(), &["--encoding", "windows-1252"])
        .await;
    h.expect_code(&out, 0);
    let rows = h.checkpoint_rows();
    assert_eq!(states(&rows).get("done"), Some(&6), "{rows:?}");
    h.assert_no_duplicates_and_map_matches();

    let state = h.state();
    let first = &state.users[&sample_user(0)];
    assert_eq!(first.external_user_id.as_deref(), Some("KD-4711"));
    assert_eq!(text(&first.fields, "first_name").as_deref(), Some("Jürgen"));
    assert_eq!(text(&first.fields, "last_name").as_deref(), Some("Müller"));
    assert_eq!(
        text(&first.fields, "town").as_deref(),
        Some("Graz-Straßgang")
    );
    assert_eq!(first.fields.get("latitude"), Some(&json!(47.0333)));
    assert_eq!(first.fields.get("longitude"), Some(&json!(15.3833)));
    let building = &state.buildings[&sample_user(0)][0];
    assert_eq!(building.name, "Haus Müller");
    assert_eq!(
        text(&building.fields, "space_heating").as_deref(),
        Some("Wärmepumpe")
    );
    assert_eq!(building.fields.get("property_size_m2"), Some(&json!(142)));
    let sixth = &state.users[&sample_user(5)];
    assert_eq!(
        text(&sixth.fields, "street_and_number").as_deref(),
        Some("Äußere Maximilianstraße 9")
    );
    assert!(
        state.buildings[&sample_user(2)]
            .iter()
            .any(|b| b.name == "Bäckerei Größl"),
        "{:?}",
        state.buildings[&sample_user(2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_rows_as_utf8_commas_rerun_with_zero_calls() {
    let h = harness_with_sample_users().await;
    let first = h
        .run(&excel_sample(), &["--encoding", "windows-1252"])
        .await;
    h.expect_code(&first, 0);
    let before = h.state().api_requests();
    assert_eq!(before, 12, "6 PUTs and 6 POSTs: {}", h.describe_state());

    let utf8 = h.write("utf8-commas.csv", sample_as_utf8_commas());
    let again = h.run(&utf8, &[]).await;
    h.expect_code(&again, 0);
    assert_eq!(
        h.state().api_requests(),
        before,
        "the same data in another encoding and separator made calls:\n{}\n{}",
        again.stderr,
        h.describe_state()
    );
    let rows = h.checkpoint_rows();
    assert_eq!(rows.len(), 6, "no second identity per row: {rows:?}");
    assert_eq!(states(&rows).get("done"), Some(&6), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_1252_file_read_as_utf8_stops_before_any_request_naming_encoding() {
    let h = harness_with_sample_users().await;
    let out = h.run(&excel_sample(), &[]).await;
    h.expect_code(&out, 2);
    assert!(
        out.stderr.contains("users-excel-de.csv line 2")
            && out.stderr.contains("\"Haus Müller\"")
            && out.stderr.contains("--encoding windows-1252"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("error:").count(),
        1,
        "one message, not one per row: {}",
        out.stderr
    );
    let state = h.state();
    assert!(state.requests.is_empty(), "{:?}", state.requests);
    assert_eq!(state.tokens_issued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comma_semicolon_and_tab_are_detected_from_the_header() {
    let h = Harness::with_users(3).await;
    for (i, sep) in [",", ";", "\t"].into_iter().enumerate() {
        let csv = h.write(
            &format!("sep{i}.csv"),
            format!(
                "user_id{sep}external_user_id{sep}building_name{sep}latitude\r\n\
                 {}{sep}CRM-{i}{sep}Home{sep}48.5\r\n",
                user(i as u64)
            ),
        );
        let checkpoint = h.path(&format!("sep{i}.sqlite"));
        let checkpoint = checkpoint.to_str().expect("utf-8 path");
        let out = h.run(&csv, &["--checkpoint", checkpoint]).await;
        h.expect_code(&out, 0);
    }
    let state = h.state();
    for i in 0..3 {
        let sent = &state.users[&user(i)];
        assert_eq!(sent.external_user_id, Some(format!("CRM-{i}")));
        assert_eq!(sent.fields.get("latitude"), Some(&json!(48.5)));
        assert_eq!(state.buildings[&user(i)].len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_header_exits_2_naming_the_delimiter_flag_before_any_request() {
    let h = Harness::with_users(1).await;
    let csv = h.write(
        "ambiguous.csv",
        format!(
            "user_id;external_user_id;building_name;x,user_id,external_user_id,building_name\n\
             {};CRM-0;Home;x,{},CRM-0,Home\n",
            user(0),
            user(0)
        ),
    );
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 2);
    assert!(
        out.stderr.contains("ambiguous.csv line 1") && out.stderr.contains("--delimiter"),
        "{}",
        out.stderr
    );
    assert!(h.state().requests.is_empty(), "{}", h.describe_state());

    let decided = h.run(&csv, &["--delimiter", ";"]).await;
    h.expect_code(&decided, 0);
    assert_eq!(h.state().buildings[&user(0)][0].name, "Home");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sep_line_is_honoured_and_the_report_keeps_the_files_line_numbers() {
    let h = Harness::with_users(2).await;
    let csv = h.write(
        "sep.csv",
        format!(
            "sep=;\r\nuser_id;external_user_id;building_name;longitude\r\n\
             {};CRM-0;Home;16,37\r\n\r\n{};;Flat;16,37\r\n",
            user(0),
            user(1)
        ),
    );
    let report = h.path("report.csv");
    let out = h
        .run(&csv, &["--report", report.to_str().expect("utf-8")])
        .await;
    h.expect_code(&out, 1);
    assert!(
        out.stderr.contains("line 5") && !out.stderr.contains("line 4,"),
        "{}",
        out.stderr
    );
    let mut reader = csv::Reader::from_path(&report).expect("report");
    let headers = reader.headers().expect("header").clone();
    let at = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let lines: Vec<(String, String)> = reader
        .records()
        .map(|r| r.expect("record"))
        .map(|r| (r[at("line")].to_owned(), r[at("state")].to_owned()))
        .collect();
    assert!(lines.contains(&("3".into(), "done".into())), "{lines:?}");
    assert!(lines.contains(&("5".into(), "invalid".into())), "{lines:?}");
    let state = h.state();
    assert_eq!(
        state.users[&user(0)].fields.get("longitude"),
        Some(&json!(16.37))
    );
    assert!(!state.buildings.contains_key(&user(1)), "invalid row sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_unicode_text_utf16_with_bom_onboards_without_flags() {
    let h = Harness::with_users(1).await;
    let text = format!(
        "user_id\texternal_user_id\tbuilding_name\r\n{}\tCRM-0\tHaus Weiß\r\n",
        user(0)
    );
    let bytes: Vec<u8> = std::iter::once(0xFEFF_u16)
        .chain(text.encode_utf16())
        .flat_map(u16::to_le_bytes)
        .collect();
    let csv = h.write("unicode.txt", bytes);
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 0);
    assert_eq!(h.state().buildings[&user(0)][0].name, "Haus Weiß");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_delimiter_or_encoding_exits_2_before_any_request() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    for (flag, value) in [("--delimiter", "|"), ("--encoding", "ebcdic")] {
        let out = h.run(&csv, &[flag, value]).await;
        h.expect_code(&out, 2);
        assert!(out.stderr.contains(flag), "{}", out.stderr);
    }
    let state = h.state();
    assert!(state.requests.is_empty(), "{:?}", state.requests);
    assert_eq!(state.tokens_issued, 0);
}

/// The required columns (the header of [`generated_csv`]).
const REQUIRED_HEADER: &str = "user_id,external_user_id,building_name";

/// Every input-file problem that needs no server is found before the first request, the
/// token request included (issue 14). Runs `csv` and expects exit 2 with `needle` on stderr and no request at all.
async fn assert_refused_before_any_request(h: &Harness, csv: &std::path::Path, needle: &str) {
    let out = h.run(csv, &[]).await;
    h.expect_code(&out, 2);
    assert!(
        out.stderr.contains(needle),
        "{needle:?} not in:\n{}",
        out.stderr
    );
    let state = h.state();
    assert_eq!(
        state.tokens_issued,
        0,
        "a token was issued: {}",
        h.describe_state()
    );
    assert_eq!(
        state.requests.values().sum::<u64>(),
        0,
        "requests were sent: {}",
        h.describe_state()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_only_file_sends_not_even_a_token_request() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", format!("{REQUIRED_HEADER}\n"));
    assert_refused_before_any_request(&h, &csv, "has a header but no data rows").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_after_good_rows_sends_not_even_a_token_request() {
    let h = Harness::with_users(50).await;
    // 50 good rows, then a record past the 1 MiB bound (2 MiB without a newline).
    let mut content = generated_csv(50, 1);
    content.push_str(&format!(
        "{},CRM-x,{}",
        sandbox::generated_user_id(0),
        "A".repeat(2 << 20)
    ));
    let csv = h.write("users.csv", content);
    assert_refused_before_any_request(&h, &csv, "line 52: a record is longer than").await;
    assert!(
        h.checkpoint_rows().iter().all(|r| r.state != "done"),
        "no row is done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_header_sends_not_even_a_token_request() {
    let h = Harness::with_users(1).await;
    let csv = h.write(
        "users.csv",
        format!(
            "user_id,building_name\n{},Home\n",
            sandbox::generated_user_id(0)
        ),
    );
    assert_refused_before_any_request(&h, &csv, "missing required column").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_file_exits_2_naming_it_before_any_request() {
    let h = Harness::with_users(1).await;
    let missing = h.path("no-such-export.csv");
    assert_refused_before_any_request(&h, &missing, "cannot open").await;
    let out = h.run(&missing, &[]).await;
    assert!(
        out.stderr.contains(&missing.display().to_string())
            && out.stderr.contains("check the path"),
        "{}",
        out.stderr
    );
}
