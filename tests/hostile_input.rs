//! Hostile and broken input files, end to end (issue 8): every bad row is reported with
//! its line, column and what to do, is never sent (checked in the simulator's request
//! log), and does not stop the good rows; problems with the file as a whole stop the run
//! with exit code 2 before any API call.

use crate::common;

use std::path::Path;

use common::{Harness, Output};
use podero_onboard::sandbox;
use uuid::Uuid;

const HEADER: &str = "user_id,external_user_id,building_name";

fn user(i: u64) -> Uuid {
    sandbox::generated_user_id(i)
}

/// The good row every per-row case carries: user 0, `CRM-0`, `Home 0`.
fn good_row() -> String {
    format!("{},CRM-0,Home 0", user(0))
}

/// A bad row for user 1 with the given external id and building name.
fn row_of_user1(external: &str, name: &str) -> Vec<u8> {
    format!("{},{external},{name}", user(1)).into_bytes()
}

/// A bad row whose user id is `user_id` (the other cells are fine).
fn row_with_user_id(user_id: &str) -> Vec<u8> {
    format!("{user_id},CRM-1,Home 0").into_bytes()
}

/// Header, the good row (line 2) and `bad` (line 3), `\n`-terminated.
fn file_with(bad: &[u8]) -> Vec<u8> {
    let mut csv = format!("{HEADER}\n{}\n", good_row()).into_bytes();
    csv.extend_from_slice(bad);
    csv.push(b'\n');
    csv
}

/// One bad record in an otherwise good file.
struct RowCase {
    /// The whole file.
    csv: Vec<u8>,
    /// Where the bad record starts.
    bad_line: u64,
    /// The column blamed; `None` for row-level problems (ragged rows).
    column: Option<&'static str>,
    /// A part of the reason that says what is wrong or what to do.
    reason: &'static str,
}

impl RowCase {
    fn line3(bad: Vec<u8>, column: Option<&'static str>, reason: &'static str) -> RowCase {
        RowCase {
            csv: file_with(&bad),
            bad_line: 3,
            column,
            reason,
        }
    }
}

/// What a report CSV says about one line: (state, error).
fn report_line(path: &Path, line: u64) -> Option<(String, String)> {
    let mut reader = csv::Reader::from_path(path).expect("report is CSV");
    let headers = reader.headers().expect("report header").clone();
    let at = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (l, state, error) = (at("line"), at("state"), at("error"));
    reader
        .records()
        .map(|r| r.expect("report record"))
        .find(|r| r[l] == line.to_string())
        .map(|r| (r[state].to_owned(), r[error].to_owned()))
}

/// The checkpoint's `rejects`: (line, kind, column, reason).
fn rejects(h: &Harness) -> Vec<(u64, String, Option<String>, String)> {
    let conn = rusqlite::Connection::open(h.checkpoint()).expect("open checkpoint");
    let mut stmt = conn
        .prepare("SELECT line, kind, column_name, reason FROM rejects ORDER BY line")
        .expect("query rejects");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rejects")
        .collect::<Result<_, _>>()
        .expect("rejects decode")
}

/// Every request the simulator saw was the token or user 0's PUT and POST, and the
/// client made no mistake the simulator noticed.
fn assert_only_the_good_row_was_sent(h: &Harness, out: &Output) {
    let state = h.state();
    let api = format!(
        "/api/partners/v2.0/org/{}/users/{}",
        h.sandbox.org_id(),
        user(0)
    );
    let buildings = format!("{api}/buildings");
    for entry in &state.log {
        let expected = match entry.endpoint.as_str() {
            "token" => true,
            "put_user" => entry.path == api,
            "create_building" => entry.path == buildings,
            _ => false,
        };
        assert!(
            expected && (entry.endpoint == "token" || entry.user_id == Some(user(0))),
            "unexpected request {entry:?}\nstderr: {}",
            out.stderr
        );
    }
    assert!(
        state.anomalies.is_empty(),
        "the simulator saw client mistakes: {:?}",
        state.anomalies
    );
    assert!(
        state.users[&user(1)].external_user_id.is_none() && !state.buildings.contains_key(&user(1)),
        "user 1 was touched: {:?}",
        state.users[&user(1)]
    );
}

/// Runs a per-row case and checks everything the brief asks of it.
async fn check_row_case(name: &str, case: RowCase) {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", &case.csv);
    let report = h.path("report.csv");
    let out = h
        .run(&csv, &["--report", report.to_str().expect("utf-8")])
        .await;
    h.expect_code(&out, 1);
    assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);

    // stderr: the file, the line, the column (or "row"), what to do.
    let cause = case.column.map_or_else(
        || "invalid (row)".to_owned(),
        |c| format!("invalid (column {c})"),
    );
    for needle in [
        csv.display().to_string(),
        cause,
        format!("line {}", case.bad_line),
        case.reason.to_owned(),
    ] {
        assert!(
            out.stderr.contains(&needle),
            "{name}: stderr lacks {needle:?}:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains('\u{1b}'),
        "{name}: a raw escape character reached the terminal: {:?}",
        out.stderr
    );

    // The good row went through; the bad one was never sent.
    let rows = h.checkpoint_rows();
    assert_eq!(rows.len(), 1, "{name}: {rows:?}");
    assert_eq!(
        (rows[0].user_id.as_str(), rows[0].state.as_str()),
        (user(0).to_string().as_str(), "done"),
        "{name}"
    );
    assert_only_the_good_row_was_sent(&h, &out);
    h.assert_no_duplicates_and_map_matches();

    // The checkpoint's rejects and the report name the line and the column.
    let rejected = rejects(&h);
    assert_eq!(rejected.len(), 1, "{name}: {rejected:?}");
    let (line, kind, column, reason) = &rejected[0];
    assert_eq!(
        (*line, kind.as_str(), column.as_deref()),
        (case.bad_line, "invalid", case.column),
        "{name}"
    );
    assert!(reason.contains(case.reason), "{name}: {reason}");
    let (state, error) = report_line(&report, case.bad_line)
        .unwrap_or_else(|| panic!("{name}: no report line {}", case.bad_line));
    assert_eq!(state, "invalid", "{name}: {error}");
    assert!(error.contains(case.reason), "{name}: {error}");
    if let Some(column) = case.column {
        assert!(error.contains(column), "{name}: {error}");
    }
    assert!(!error.contains('\u{1b}'), "{name}: {error:?}");
    let (good_state, _) = report_line(&report, 2).expect("report has the good line");
    assert_eq!(good_state, "done", "{name}");
}

/// One `#[test]` per bad row.
macro_rules! row_cases {
    ($($name:ident => $case:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check_row_case(stringify!($name), $case).await;
        }
    )*};
}

const NOT_A_UUID: &str = "is not a UUID";

row_cases! {
    user_id_with_dot_dot_slash_is_invalid_and_not_sent =>
        RowCase::line3(row_with_user_id("../../admin"), Some("user_id"), NOT_A_UUID);
    user_id_that_is_a_uuid_followed_by_a_path_is_invalid =>
        RowCase::line3(row_with_user_id(&format!("{}/buildings", user(1))), Some("user_id"), NOT_A_UUID);
    user_id_with_a_slash_is_invalid =>
        RowCase::line3(row_with_user_id("5eed0000-0000-4000-8000/00000000001"), Some("user_id"), NOT_A_UUID);
    user_id_with_percent_encoded_slash_is_invalid =>
        RowCase::line3(row_with_user_id("5eed0000-0000-4000-8000%2F000000001"), Some("user_id"), NOT_A_UUID);
    user_id_with_a_query_is_invalid =>
        RowCase::line3(row_with_user_id(&format!("{}?admin=1", user(1))), Some("user_id"), NOT_A_UUID);
    user_id_with_a_fragment_is_invalid =>
        RowCase::line3(row_with_user_id(&format!("{}#x", user(1))), Some("user_id"), NOT_A_UUID);
    user_id_with_an_inner_space_is_invalid =>
        RowCase::line3(row_with_user_id("5eed0000-0000-4000-8000 000000000001"), Some("user_id"), NOT_A_UUID);
    user_id_in_braces_is_invalid =>
        RowCase::line3(row_with_user_id(&format!("{{{}}}", user(1))), Some("user_id"), NOT_A_UUID);
    // An empty user_id is no longer invalid: the row is keyed by its CRM id (issue 19,
    // tests/customers.rs).
    // An empty building_name alone is a user-only row (issue 11); with building data it is invalid.
    building_name_empty_with_building_data_is_invalid =>
        RowCase {
            csv: format!("{HEADER},property_type\n{},Flat\n{},CRM-1,,Flat\n", good_row(), user(1))
                .into_bytes(),
            bad_line: 3,
            column: Some("building_name"),
            reason: "the row has building data",
        };
    building_name_of_101_chars_is_invalid =>
        RowCase::line3(row_of_user1("CRM-1", &"n".repeat(101)), Some("building_name"), "at most 100 characters");
    external_id_empty_is_invalid =>
        RowCase::line3(row_of_user1("", "Home 0"), Some("external_user_id"), "fill in the CRM id");
    external_id_of_256_chars_is_invalid =>
        RowCase::line3(row_of_user1(&"x".repeat(256), "Home 0"), Some("external_user_id"), "at most 255 characters");
    external_id_of_100_kib_is_invalid =>
        RowCase::line3(row_of_user1(&"x".repeat(100 << 10), "Home 0"), Some("external_user_id"), "at most 255 characters");
    escape_sequence_in_building_name_is_invalid_and_shown_escaped =>
        RowCase::line3(row_of_user1("CRM-1", "Home\u{1b}[2J"), Some("building_name"), "control character");
    tab_in_external_id_is_invalid =>
        RowCase::line3(row_of_user1("CRM\t1", "Home 0"), Some("external_user_id"), "control character");
    nul_in_building_name_is_invalid =>
        RowCase::line3(row_of_user1("CRM-1", "Ho\0me"), Some("building_name"), "control character");
    invalid_utf8_in_building_name_is_invalid =>
        RowCase::line3(
            // 0x81 is not text in Windows-1252 either: a junk byte is one invalid row
            // (Windows-1252 text read as UTF-8 stops the run: see tests/input_formats.rs).
            [format!("{},CRM-1,Caf", user(1)).as_bytes(), b"\x81"].concat(),
            Some("building_name"),
            "UTF-8",
        );
    ragged_row_with_an_extra_field_is_invalid =>
        RowCase::line3(row_of_user1("CRM-1", "Home 0,extra"), None, "row has 4 fields, the header has 3");
    ragged_row_with_a_missing_field_is_invalid =>
        RowCase::line3(format!("{},CRM-1", user(1)).into_bytes(), None, "row has 2 fields, the header has 3");
    quoted_newline_in_building_name_is_invalid =>
        RowCase::line3(row_of_user1("CRM-1", "\"Home\n0\""), Some("building_name"), "control character");
    bad_row_after_a_quoted_multiline_field_has_its_own_line =>
        RowCase {
            csv: format!(
                "{HEADER},street_add_info\n{},CRM-0,Home 0,\"Floor 2\nDoor 3\"\n{},,Home 1,\n",
                user(0),
                user(1)
            )
            .into_bytes(),
            bad_line: 4,
            column: Some("external_user_id"),
            reason: "fill in the CRM id",
        };
    crlf_file_reports_the_right_line =>
        RowCase {
            csv: format!("{HEADER}\r\n{}\r\n{},,Home 1\r\n", good_row(), user(1)).into_bytes(),
            bad_line: 3,
            column: Some("external_user_id"),
            reason: "fill in the CRM id",
        };
    bom_file_is_read_and_reports_the_right_line =>
        RowCase {
            csv: [b"\xEF\xBB\xBF".as_slice(), &file_with(&row_with_user_id("nope"))].concat(),
            bad_line: 3,
            column: Some("user_id"),
            reason: NOT_A_UUID,
        };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_crlf_and_bom_values_reach_the_api_intact() {
    let h = Harness::with_users(2).await;
    let csv = h.write(
        "users.csv",
        format!(
            "\u{feff}{HEADER},street_add_info\r\n{},CRM-0,Home 0,\"Floor 2\nDoor 3\"\r\n{},CRM-1,Home 1,\r\n",
            user(0),
            user(1)
        ),
    );
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert!(state.anomalies.is_empty(), "{:?}", state.anomalies);
    let first = &state.users[&user(0)];
    assert_eq!(first.external_user_id.as_deref(), Some("CRM-0"));
    assert_eq!(
        first.fields.get("street_add_info").and_then(|v| v.as_str()),
        Some("Floor 2\nDoor 3")
    );
    assert_eq!(
        state.users[&user(1)].external_user_id.as_deref(),
        Some("CRM-1")
    );
    let names: Vec<&str> = state
        .buildings
        .values()
        .flatten()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(names, ["Home 0", "Home 1"], "no \\r may stick to a value");
    let lines: Vec<i64> = {
        let conn = rusqlite::Connection::open(h.checkpoint()).expect("open");
        let mut stmt = conn
            .prepare("SELECT line FROM rows ORDER BY line")
            .expect("query");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("decode")
    };
    assert_eq!(
        lines,
        [2, 4],
        "the second row starts after the two-line field"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sends_nothing_when_any_row_is_invalid() {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", file_with(&row_with_user_id("../x")));
    let out = h.run(&csv, &["--strict"]).await;
    h.expect_code(&out, 1);
    assert!(out.stderr.contains("--strict"), "{}", out.stderr);
    assert!(out.stderr.contains("line 3"), "{}", out.stderr);
    let state = h.state();
    assert_eq!(state.api_requests(), 0, "{:?}", state.requests);
    assert!(state.anomalies.is_empty(), "{:?}", state.anomalies);
    assert!(
        h.checkpoint_rows().iter().all(|r| r.state != "done"),
        "{:?}",
        h.checkpoint_rows()
    );
    assert_eq!(rejects(&h).len(), 1);
}

/// A problem with the file as a whole: exit 2, a message, no API call, no row recorded.
async fn check_file_case(name: &str, content: &[u8], needles: &[&str]) -> Harness {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", content);
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 2);
    assert_file_refused(&h, name, &out, needles);
    h
}

fn assert_file_refused(h: &Harness, name: &str, out: &Output, needles: &[&str]) {
    assert!(out.stderr.starts_with("error: "), "{name}: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "{name}: stderr lacks {needle:?}:\n{}",
            out.stderr
        );
    }
    let state = h.state();
    assert_eq!(state.api_requests(), 0, "{name}: {:?}", state.requests);
    assert!(state.anomalies.is_empty(), "{name}: {:?}", state.anomalies);
    assert!(h.checkpoint_rows().is_empty(), "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_header_column_is_exit_2_and_suggests_column_flag() {
    let content = format!("user_id,building_name\n{},Home 0\n", user(0));
    let h = check_file_case(
        "missing column",
        content.as_bytes(),
        &["users.csv line 1", "external_user_id", "--column"],
    )
    .await;
    assert_eq!(
        h.state().requests.values().sum::<u64>(),
        0,
        "not even a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_header_column_is_exit_2() {
    let content = format!("{HEADER},building_name\n{},CRM-0,Home 0,Home 1\n", user(0));
    let h = check_file_case(
        "duplicate column",
        content.as_bytes(),
        &[
            "users.csv line 1",
            "building_name appears twice",
            "delete or rename one",
        ],
    )
    .await;
    assert_eq!(
        h.state().requests.values().sum::<u64>(),
        0,
        "not even a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_file_is_exit_2() {
    let h = check_file_case("empty", b"", &["users.csv is empty", "header"]).await;
    assert_eq!(
        h.state().requests.values().sum::<u64>(),
        0,
        "not even a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_file_is_exit_2() {
    check_file_case(
        "header only",
        format!("{HEADER}\n").as_bytes(),
        &["users.csv has a header but no data rows"],
    )
    .await;
}

/// 64 MiB without a newline after a good row: refused at 1 MiB, the good row not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_single_field_file_is_exit_2_at_the_record_limit() {
    use std::io::Write;
    let h = Harness::with_users(2).await;
    let path = h.path("huge.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    write!(file, "{HEADER}\n{}\n{},CRM-1,", good_row(), user(1)).expect("write");
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..64 {
        file.write_all(&chunk).expect("write");
    }
    file.flush().expect("flush");
    drop(file);
    let out = h.run(&path, &[]).await;
    h.expect_code(&out, 2);
    assert_file_refused(
        &h,
        "huge field",
        &out,
        &[
            "huge.csv line 3",
            "longer than 1048576 bytes",
            "unclosed quote",
        ],
    );
}

/// The same through stdin: the job stops reading soon after the 1 MiB limit, so it
/// cannot have held the 64 MiB in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_single_field_on_stdin_is_refused_after_reading_little_of_it() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::with_users(2).await;
    let args = h.run_args(Path::new("-"), &[]);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut written = 0usize;
    let head = format!("{HEADER}\n{}\n{},CRM-1,", good_row(), user(1));
    stdin.write_all(head.as_bytes()).await.expect("header");
    let chunk = vec![b'A'; 64 << 10];
    while written < 64 << 20 {
        match stdin.write_all(&chunk).await {
            Ok(()) => written += chunk.len(),
            Err(_) => break,
        }
    }
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("<stdin> line 3"), "{stderr}");
    assert!(stderr.contains("longer than 1048576 bytes"), "{stderr}");
    assert!(
        written < 8 << 20,
        "the job read {written} bytes of one record before refusing it"
    );
    assert_eq!(h.state().api_requests(), 0);
}

/// A hostile value must not run as a formula when the report is opened in a spreadsheet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_and_export_escape_formula_prefixes() {
    let h = Harness::with_users(3).await;
    let csv = h.write(
        "users.csv",
        format!(
            "{HEADER}\n{},+SUM(A1),\"=HYPERLINK(\"\"http://evil\"\")\"\n{},@cmd,-2+3\n{},CRM-2,Home 0\n",
            user(0),
            user(1),
            user(2)
        ),
    );
    let report = h.path("report.csv");
    let out = h
        .run(&csv, &["--report", report.to_str().expect("utf-8")])
        .await;
    h.expect_code(&out, 0);
    // The API gets the values as they are; only the spreadsheet output is escaped.
    let state = h.state();
    assert_eq!(
        state.users[&user(0)].external_user_id.as_deref(),
        Some("+SUM(A1)")
    );
    assert_eq!(
        state.buildings[&user(0)][0].name,
        "=HYPERLINK(\"http://evil\")"
    );

    let mut reader = csv::Reader::from_path(&report).expect("report");
    let cells: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            (r[2].to_owned(), r[3].to_owned())
        })
        .collect();
    assert_eq!(
        cells,
        [
            (
                "'+SUM(A1)".to_owned(),
                "'=HYPERLINK(\"http://evil\")".to_owned()
            ),
            ("'@cmd".to_owned(), "'-2+3".to_owned()),
            ("CRM-2".to_owned(), "Home 0".to_owned()),
        ]
    );

    let export = h.export(&[]).await;
    let mut reader = csv::Reader::from_reader(export.stdout.as_bytes());
    for record in reader.records() {
        let record = record.expect("record");
        for cell in record.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "unescaped export cell {cell:?}"
            );
        }
    }
}

/// Part of the reason given for a cell holding a bidi control (issue 21).
const BIDI: &str = "bidirectional control character";

// Bidi controls make a value display in another order than it is stored ("Trojan
// Source"): a cell holding one is invalid and never sent (issue 21).
row_cases! {
    right_to_left_override_in_building_name_is_invalid_and_not_sent =>
        RowCase::line3(row_of_user1("CRM-1", "Home \u{202e}1 esuoH"), Some("building_name"), BIDI);
    left_to_right_isolate_in_external_id_is_invalid_and_not_sent =>
        RowCase::line3(row_of_user1("CRM\u{2066}-1", "Home 0"), Some("external_user_id"), BIDI);
    right_to_left_mark_in_building_name_is_invalid_and_not_sent =>
        RowCase::line3(row_of_user1("CRM-1", "Home\u{200f} 0"), Some("building_name"), BIDI);
    arabic_letter_mark_in_external_id_is_invalid_and_not_sent =>
        RowCase::line3(row_of_user1("CRM-1\u{061c}", "Home 0"), Some("external_user_id"), BIDI);
}

/// Whether `text` holds a bidi control or an escape character as such.
fn holds_raw_bidi_or_escape(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c, '\u{1b}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    })
}

/// Header names and cell values are the file's text: whatever reaches the terminal or the
/// report shows bidi controls and escape sequences escaped, never as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_controls_in_headers_and_cells_reach_terminal_and_report_escaped() {
    let h = Harness::with_users(2).await;
    let csv = h.write(
        "users.csv",
        format!(
            "{HEADER},no\u{202e}te,\u{1b}[2Jcolour\n{},CRM-0,Home 0,a,b\n{},CRM-1,Ho\u{2067}me,c,d\n",
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
        out.stderr
            .contains("ignoring unknown columns no\\u{202e}te, \\u{1b}[2Jcolour"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Ho\\u{2067}me"), "{}", out.stderr);
    assert!(!holds_raw_bidi_or_escape(&out.stderr), "{:?}", out.stderr);
    let report = std::fs::read_to_string(&report).expect("report");
    assert!(!holds_raw_bidi_or_escape(&report), "{report:?}");
    assert_only_the_good_row_was_sent(&h, &out);
}
