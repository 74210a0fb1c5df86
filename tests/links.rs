//! `links` end to end: the real binary against the simulator, asserting on the simulator's
//! sessions and heat pumps and on the checkpoint's `links` and `connections` tables.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::hostile::{Reply, scripted_podero};
use common::{Harness, Output, generated_csv};
use podero_onboard::sandbox::{self, Faults};
use uuid::Uuid;

/// `links <csv>` with the session flags, the default checkpoint and fast settings, plus `extra`.
fn links_args(h: &Harness, csv: &Path, extra: &[&str]) -> Vec<String> {
    h.links_args(csv, extra)
}

/// Replaces the value of `flag` in `args`.
fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let at = args.iter().position(|a| a == flag).expect("flag present");
    args[at + 1] = value.to_owned();
}

async fn links(h: &Harness, csv: &Path, extra: &[&str]) -> Output {
    h.exec(&links_args(h, csv, extra)).await
}

/// `links` with the client's calendar set to `today` (the simulator's moved clock).
async fn links_on(h: &Harness, csv: &Path, today: &str, extra: &[&str]) -> Output {
    let args = links_args(h, csv, extra);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    cmd.env("PODERO_ONBOARD_TODAY", today);
    h.exec_with(cmd).await
}

/// Onboards `csv` with `run` (buildings done) and checks it worked.
async fn onboard(h: &Harness, csv: &Path) {
    let out = h.run(csv, &[]).await;
    h.expect_code(&out, 0);
}

fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not the JSON summary ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    })
}

fn count(summary: &serde_json::Value, key: &str) -> u64 {
    summary["links"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no links.{key} in {summary}"))
}

/// `state -> n` of the checkpoint's links table.
fn link_states(h: &Harness) -> BTreeMap<String, u64> {
    let conn = rusqlite::Connection::open(h.checkpoint()).expect("open checkpoint");
    let mut stmt = conn
        .prepare("SELECT state, count(*) FROM links GROUP BY state")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("decode")
}

/// `(building_id, session_id)` of every live link.
fn live_links(h: &Harness) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(h.checkpoint()).expect("open checkpoint");
    let mut stmt = conn
        .prepare("SELECT building_id, session_id FROM links WHERE state = 'live'")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("decode")
}

/// Sessions on the simulator per building.
fn sessions_per_building(h: &Harness) -> BTreeMap<Uuid, usize> {
    let mut map = BTreeMap::new();
    for session in h.state().sessions {
        *map.entry(session.building.expect("building_id sent"))
            .or_default() += 1;
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_rows_get_links_once_a_day_and_renewed_once_after_expiry() {
    let h = Harness::with_users(200).await;
    let csv = h.write("users.csv", generated_csv(200, 1));
    onboard(&h, &csv).await;
    let out_path = h.path("links.csv");
    let first = links(&h, &csv, &["--out", out_path.to_str().unwrap(), "--json"]).await;
    h.expect_code(&first, 0);
    assert_eq!(count(&summary(&first), "created"), 200);
    assert_eq!(h.state().sessions.len(), 200);
    assert!(sessions_per_building(&h).values().all(|&n| n == 1));
    assert_eq!(h.state().anomalies, Vec::<String>::new());
    // The mail-merge file: owner-only, one row per link, the session the server made.
    let mode = std::fs::metadata(&out_path).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&out_path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "user_id,external_user_id,email,first_name,last_name,building_name,building_id,session_id,link,expires_on"
        )
    );
    let server: Vec<String> = h
        .state()
        .sessions
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 200);
    for row in &rows {
        let cells: Vec<&str> = row.split(',').collect();
        assert!(
            server.contains(&cells[7].to_owned()),
            "unknown session in {row}"
        );
        assert!(
            cells[8].contains(cells[7]),
            "link without its session: {row}"
        );
    }
    // The same day again: nothing sent but the heat-pump checks; --out keeps its links.
    let second = links(&h, &csv, &["--out", out_path.to_str().unwrap(), "--json"]).await;
    h.expect_code(&second, 0);
    assert_eq!(h.state().count("create_session"), 200);
    assert_eq!(count(&summary(&second), "still_valid"), 200);
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), text);
    // Two days later every link has expired: each is renewed exactly once.
    h.sandbox.advance_days(2);
    let today = h.sandbox.today();
    let third = links_on(&h, &csv, &today, &["--json"]).await;
    h.expect_code(&third, 0);
    assert_eq!(count(&summary(&third), "renewed"), 200);
    assert!(sessions_per_building(&h).values().all(|&n| n == 2));
    let fourth = links_on(&h, &csv, &today, &["--json"]).await;
    h.expect_code(&fourth, 0);
    assert_eq!(h.state().count("create_session"), 400);
    let states = link_states(&h);
    assert_eq!(states.get("live"), Some(&200), "{states:?}");
    assert_eq!(states.get("replaced"), Some(&200), "{states:?}");
    // export --links prints the live links only.
    let export = h.export(&["--links"]).await;
    assert_eq!(export.stdout.lines().count(), 201, "{}", export.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_buildings_get_no_link_and_are_counted() {
    let h = Harness::with_users(6).await;
    let user = |i| sandbox::generated_user_id(i);
    let mut csv = generated_csv(5, 1);
    csv.push_str(&format!(
        "{},CRM-5,Home 0\n{},CRM-5,Home 1\n",
        user(5),
        user(5)
    ));
    let csv = h.write("users.csv", csv);
    onboard(&h, &csv).await;
    let building = |i: u64, name: &str| h.state().building_map()[&(user(i), name.to_owned())][0];
    // 0 and 1 connected to their building; 2 connected without a building (one building
    // in the file: assigned); 5 connected without a building but has two: not assigned.
    h.sandbox
        .connect_heat_pump(user(0), Some(building(0, "Home 0")));
    h.sandbox
        .connect_heat_pump(user(1), Some(building(1, "Home 0")));
    let pump = h.sandbox.connect_heat_pump(user(2), None);
    h.sandbox.connect_heat_pump(user(5), None);
    let out = links(&h, &csv, &["--json"]).await;
    h.expect_code(&out, 0);
    let s = summary(&out);
    assert_eq!(count(&s, "connected"), 3, "{s}");
    assert_eq!(count(&s, "assigned"), 1, "{s}");
    assert_eq!(count(&s, "created"), 4, "{s}");
    let sessions = sessions_per_building(&h);
    for i in [0, 1, 2] {
        assert!(
            !sessions.contains_key(&building(i, "Home 0")),
            "user {i} got a link"
        );
    }
    assert_eq!(sessions.len(), 4);
    let assigned = &h.state().heat_pumps[&user(2)];
    assert_eq!(assigned[0].id, pump);
    assert_eq!(assigned[0].building, Some(building(2, "Home 0")));
    // Once connected, never a link again, even after every link expired.
    h.sandbox.advance_days(3);
    let today = h.sandbox.today();
    let again = links_on(&h, &csv, &today, &["--json"]).await;
    h.expect_code(&again, 0);
    assert_eq!(count(&summary(&again), "connected"), 3);
    assert_eq!(count(&summary(&again), "renewed"), 4);
    assert_eq!(h.state().sessions.len(), 8);
    let status = h
        .exec(&[
            "status".into(),
            "--checkpoint".into(),
            h.checkpoint().display().to_string(),
            "--json".into(),
        ])
        .await;
    h.expect_code(&status, 0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["links_funnel"]["rows_done"], 7, "{status}");
    assert_eq!(status["links_funnel"]["links_sent"], 4, "{status}");
    assert_eq!(status["links_funnel"]["connected"], 3, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_row_language_and_price_zone_override_the_flags() {
    let h = Harness::with_users(4).await;
    let id = |i| sandbox::generated_user_id(i);
    let csv = format!(
        "user_id,external_user_id,building_name,language,price_zone,email\n\
         {},CRM-0,Home,,,a@example.com\n{},CRM-1,Home,sv,SE_3,\n{},CRM-2,Home,fr,AT,\n{},CRM-3,Home,en,DE,\n",
        id(0),
        id(1),
        id(2),
        id(3)
    );
    let csv = h.write("users.csv", csv);
    onboard(&h, &csv).await;
    let out_path = h.path("out.csv");
    let out = links(
        &h,
        &csv,
        &[
            "--json",
            "--smart-optimization",
            "--session-field",
            "device_type=hp",
            "--out",
            out_path.to_str().unwrap(),
        ],
    )
    .await;
    h.expect_code(&out, 1);
    assert_eq!(count(&summary(&out), "invalid"), 2);
    assert!(
        out.stderr.contains("line 4, column language")
            && out.stderr.contains("line 5, column price_zone")
            && out.stderr.contains("DE_LU"),
        "{}",
        out.stderr
    );
    let sessions: BTreeMap<Uuid, _> = h
        .state()
        .sessions
        .into_iter()
        .map(|s| (s.user, s))
        .collect();
    assert_eq!(sessions.len(), 2, "invalid rows are never sent");
    assert_eq!(
        (
            sessions[&id(0)].language.as_str(),
            sessions[&id(0)].price_zone_default.as_str()
        ),
        ("de", "AT")
    );
    assert_eq!(
        (
            sessions[&id(1)].language.as_str(),
            sessions[&id(1)].price_zone_default.as_str()
        ),
        ("sv", "SE_3")
    );
    assert_eq!(sessions[&id(0)].smart_optimization, Some(true));
    assert_eq!(sessions[&id(0)].extra["device_type"], "hp");
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.contains(",CRM-0,a@example.com,"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_flags_send_nothing() {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", generated_csv(2, 1));
    onboard(&h, &csv).await;
    let before = h.state().requests.values().sum::<u64>();
    let cases: [(&str, &str, &str); 4] = [
        ("--language", "fr", "sv, de, en"),
        ("--price-zone", "DE", "DE_LU"),
        ("--success-url", "http://partner.example/ok", "https://"),
        ("--cancel-url", "x".repeat(9000).leak(), "8000"),
    ];
    for (flag, value, hint) in cases {
        let mut args = links_args(&h, &csv, &[]);
        set_flag(&mut args, flag, value);
        let out = h.exec(&args).await;
        h.expect_code(&out, 2);
        assert!(
            out.stderr.contains(flag) && out.stderr.contains(hint),
            "{}",
            out.stderr
        );
    }
    let mut args = links_args(&h, &csv, &[]);
    set_flag(
        &mut args,
        "--checkpoint",
        h.path("none.sqlite").to_str().unwrap(),
    );
    let missing = h.exec(&args).await;
    h.expect_code(&missing, 2);
    assert!(
        missing.stderr.contains("run `podero-onboard run` first"),
        "{}",
        missing.stderr
    );
    // An unwritable --out fails before the first request too.
    let unwritable = h.path("no-such-dir/links.csv");
    let out = links(&h, &csv, &["--out", unwritable.to_str().unwrap()]).await;
    h.expect_code(&out, 2);
    assert!(out.stderr.contains("cannot write --out"), "{}", out.stderr);
    assert_eq!(
        h.state().requests.values().sum::<u64>(),
        before,
        "a request was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_id_or_link_in_logs_or_summary() {
    let h = Harness::with_users(5).await;
    let csv = h.write("users.csv", generated_csv(5, 1));
    onboard(&h, &csv).await;
    // One more row whose building `run` never created: counted, no link, exit still 0.
    let mut text = generated_csv(5, 1);
    text.push_str(&format!(
        "{},CRM-0,Not yet\n",
        sandbox::generated_user_id(0)
    ));
    let csv = h.write("links.csv", text);
    let out = links(&h, &csv, &["-vv", "--json"]).await;
    h.expect_code(&out, 0);
    assert_eq!(count(&summary(&out), "not_onboarded"), 1);
    let sessions = h.state().sessions;
    assert_eq!(sessions.len(), 5);
    assert!(
        out.stderr.contains("link created"),
        "-vv logs each row: {}",
        out.stderr
    );
    for session in &sessions {
        let id = session.id.to_string();
        assert!(
            !out.stderr.contains(&id),
            "session id in stderr:\n{}",
            out.stderr
        );
        assert!(
            !out.stdout.contains(&id),
            "session id in the summary:\n{}",
            out.stdout
        );
        assert!(!id.is_empty());
    }
    assert!(
        !out.stderr.contains("onboarding_session_id"),
        "{}",
        out.stderr
    );
    // They are where they belong: the checkpoint and export --links.
    let export = h.export(&["--links"]).await;
    for session in &sessions {
        assert!(export.stdout.contains(&session.id.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_links_then_rerun_leaves_one_live_link_per_building() {
    let users = 60;
    let h = Harness::with_users(users).await;
    let csv = h.write("users.csv", generated_csv(users, 1));
    onboard(&h, &csv).await;
    h.sandbox.set_faults(Faults {
        latency: Duration::from_millis(40),
        ..Faults::default()
    });
    let mut args = links_args(&h, &csv, &[]);
    set_flag(&mut args, "--concurrency", "4");
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = h.command(&strs).spawn().expect("spawn links");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while h.state().sessions.len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "links made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let killed_at = h.state().sessions.len();
    let after_kill = link_states(&h);
    eprintln!("after SIGKILL: {killed_at} sessions on the server, checkpoint links {after_kill:?}");
    assert!(killed_at < users, "killed too late to test anything");
    h.sandbox.set_faults(Faults::default());
    let out = links(&h, &csv, &["--json"]).await;
    h.expect_code(&out, 0);
    let live = live_links(&h);
    assert_eq!(live.len(), users, "{:?}", link_states(&h));
    let buildings: std::collections::BTreeSet<_> = live.iter().map(|(b, _)| b).collect();
    assert_eq!(buildings.len(), users, "two live links for one building");
    let server: BTreeMap<Uuid, Option<Uuid>> = h
        .state()
        .sessions
        .iter()
        .map(|s| (s.id, s.building))
        .collect();
    for (building, session) in &live {
        let session = Uuid::parse_str(session).unwrap();
        assert_eq!(
            server.get(&session),
            Some(&Some(Uuid::parse_str(building).unwrap()))
        );
    }
    let states = link_states(&h);
    eprintln!("after the re-run: checkpoint links {states:?}");
    let recorded: u64 =
        states.get("live").copied().unwrap_or(0) + states.get("replaced").copied().unwrap_or(0);
    assert!(
        server.len() as u64 >= recorded,
        "{states:?} vs {} sessions",
        server.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_sessions_validate_enums_ownership_and_expire_the_next_day() {
    let h = Harness::with_users(2).await;
    let (alice, bob) = (sandbox::generated_user_id(0), sandbox::generated_user_id(1));
    let bobs = h.sandbox.add_building(bob, "Bob's");
    let alices = h.sandbox.add_building(alice, "Alice's");
    podero_onboard::api::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let base = h.sandbox.base_url();
    let token: serde_json::Value = http
        .post(format!("{base}/oauth2/token/"))
        .basic_auth(sandbox::DEMO_CLIENT_ID, Some(sandbox::DEMO_CLIENT_SECRET))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap().to_owned();
    let post = |body: serde_json::Value| {
        http.post(format!("{base}/api/partners/v2.0/device-onboarding"))
            .bearer_auth(&bearer)
            .json(&body)
            .send()
    };
    let body = |language: &str, zone: &str, building: Uuid| {
        serde_json::json!({"language": language, "price_zone_default": zone,
            "success_url": "https://a.example", "cancel_url": "https://b.example",
            "user_id": alice, "building_id": building})
    };
    assert_eq!(post(body("fr", "AT", alices)).await.unwrap().status(), 422);
    assert_eq!(post(body("de", "DE", alices)).await.unwrap().status(), 422);
    assert_eq!(
        post(body("de", "AT", bobs)).await.unwrap().status(),
        422,
        "not her building"
    );
    let created = post(body("de", "AT", alices)).await.unwrap();
    assert_eq!(created.status(), 200);
    let session: serde_json::Value = created.json().await.unwrap();
    let id = session["id"].as_str().unwrap();
    assert!(
        session["authentication_url"]
            .as_str()
            .unwrap()
            .ends_with(id)
    );
    // "valid until the end of the next day", by the simulator's (movable) calendar.
    h.sandbox.advance_days(5);
    let today = h.sandbox.today();
    assert!(session["expiration_date"].as_str().unwrap() < today.as_str());
    let read = http
        .get(format!("{base}/api/partners/v2.0/device-onboarding/{id}"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // The admin hooks the docs use against the standalone simulator.
    let moved: serde_json::Value = http
        .put(format!("{base}/__sandbox/clock"))
        .json(&serde_json::json!({"advance_days": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(moved["today"], h.sandbox.today());
    assert_ne!(h.sandbox.today(), today);
    let connected = http
        .post(format!("{base}/__sandbox/heat-pumps"))
        .json(&serde_json::json!({"user_id": alice, "building_id": alices}))
        .send()
        .await
        .unwrap();
    assert_eq!(connected.status(), 200);
    assert_eq!(h.state().heat_pumps[&alice][0].building, Some(alices));
    assert!(h.state().anomalies.is_empty(), "{:?}", h.state().anomalies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_reported_per_row_exit_1_and_heal_on_rerun() {
    let h = Harness::with_users(3).await;
    let csv = h.write("users.csv", generated_csv(3, 1));
    onboard(&h, &csv).await;
    h.sandbox.set_faults(Faults {
        random_5xx: 1.0,
        ..Faults::default()
    });
    let out = links(&h, &csv, &["--json", "--max-attempts", "1"]).await;
    h.expect_code(&out, 1);
    let s = summary(&out);
    assert_eq!(count(&s, "failed"), 3, "{s}");
    assert_eq!(s["failures"].as_array().map(Vec::len), Some(3), "{s}");
    assert!(out.stderr.contains("no link, by reason:"), "{}", out.stderr);
    assert!(h.state().sessions.is_empty());
    h.sandbox.set_faults(Faults::default());
    let out = links(&h, &csv, &["--json"]).await;
    h.expect_code(&out, 0);
    assert_eq!(count(&summary(&out), "created"), 3);
    assert_eq!(live_links(&h).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_keyed_buildings_get_links_and_user_only_rows_are_counted() {
    let h = Harness::with_users(3).await;
    let [a, b, c] = [0, 1, 2].map(sandbox::generated_user_id);
    // Two properties of one user share a name: only property_id tells them apart.
    let csv = h.write(
        "users.csv",
        format!(
            "user_id,external_user_id,property_id,building_name\n\
             {a},CRM-A,P-1,Home\n{a},CRM-A,P-2,Home\n{b},CRM-B,P-3,Main House\n{c},CRM-C,,\n"
        ),
    );
    onboard(&h, &csv).await;
    let out = links(&h, &csv, &["--json"]).await;
    h.expect_code(&out, 0);
    let first = summary(&out);
    assert_eq!(count(&first, "created"), 3, "{first}");
    assert_eq!(count(&first, "no_building"), 1, "{first}");
    assert_eq!(count(&first, "not_onboarded"), 0, "{first}");
    let per_building = sessions_per_building(&h);
    assert_eq!(per_building.len(), 3, "one session per building");
    assert!(per_building.values().all(|&n| n == 1));
    // export --links: one line per live link, even where two properties share a name.
    let export = h.export(&["--links"]).await;
    assert_eq!(export.stdout.lines().count(), 4, "{}", export.stdout);
    assert_eq!(
        export.stdout.matches(",CRM-A,Home,").count(),
        2,
        "{}",
        export.stdout
    );
    // The funnel starts at rows with a building: the user-only row can never get a link.
    let status = h
        .exec(&[
            "status".into(),
            "--checkpoint".into(),
            h.checkpoint().display().to_string(),
            "--json".into(),
        ])
        .await;
    h.expect_code(&status, 0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["links_funnel"]["rows_done"], 3, "{status}");
    assert_eq!(status["links_funnel"]["links_sent"], 3, "{status}");
    // The same export without property_id still finds the unambiguous building by name;
    // the user with two "Home"s gets none rather than a guess.
    let by_name = h.write(
        "by-name.csv",
        format!("user_id,external_user_id,building_name\n{a},CRM-A,Home\n{b},CRM-B,Main House\n"),
    );
    let out = links(&h, &by_name, &["--json"]).await;
    let second = summary(&out);
    assert_eq!(count(&second, "still_valid"), 1, "{second}");
    assert_eq!(count(&second, "not_onboarded"), 1, "{second}");
    assert_eq!(h.state().sessions.len(), 3, "nothing new was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_spanning_two_pages_is_one_job_and_dry_run_pages_too() {
    // User 0 sorts first and has one building more than a page (512): if the pager split
    // the user across pages, the last building would be a one-building job, its heat pumps
    // listed twice and the unassigned heat pump wrongly assigned to it.
    let h = Harness::with_users(3).await;
    let [big, b, c] = [0, 1, 2].map(sandbox::generated_user_id);
    let mut text = String::from("user_id,external_user_id,building_name,first_name\n");
    for i in 0..513 {
        text.push_str(&format!("{big},CRM-0,Home {i},Big\n"));
    }
    text.push_str(&format!("{b},CRM-1,Home,=1+2\n{c},CRM-2,Home,Cee\n"));
    let csv = h.write("users.csv", text);
    onboard(&h, &csv).await;
    h.sandbox.connect_heat_pump(big, None);
    let dry = links(&h, &csv, &["--dry-run", "--json"]).await;
    h.expect_code(&dry, 0);
    assert_eq!(count(&summary(&dry), "created"), 515, "{}", dry.stdout);
    assert_eq!(
        h.state().count("create_session"),
        0,
        "a dry run sends nothing"
    );
    let out_path = h.path("out.csv");
    let out = links(&h, &csv, &["--json", "--out", out_path.to_str().unwrap()]).await;
    h.expect_code(&out, 0);
    let s = summary(&out);
    assert_eq!(count(&s, "created"), 515, "{s}");
    assert_eq!(count(&s, "assigned"), 0, "{s}");
    // Only `big` has a heat pump (the user list says so): listed once, not once per page.
    assert_eq!(
        h.state().count("list_heat_pumps"),
        1,
        "once per user with heat pumps"
    );
    let per_building = sessions_per_building(&h);
    assert_eq!(per_building.len(), 515);
    assert!(per_building.values().all(|&n| n == 1));
    assert!(h.state().heat_pumps[&big][0].building.is_none());
    // --out is formula-safe: a cell starting with `=` cannot run in a spreadsheet.
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(text.lines().count(), 516);
    assert!(text.contains(",CRM-1,,'=1+2,"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_appear_on_a_pipe_and_never_hold_a_link() {
    let users = 40;
    let h = Harness::with_users(users).await;
    let csv = h.write("users.csv", generated_csv(users, 1));
    onboard(&h, &csv).await;
    // The user list, then 1 call per user at 80 ms, 2 users at a time: about 1.6 s, so a
    // 1 s interval ticks.
    h.sandbox.set_faults(Faults {
        latency: Duration::from_millis(80),
        ..Faults::default()
    });
    let mut args = links_args(&h, &csv, &["--progress-interval", "1"]);
    set_flag(&mut args, "--concurrency", "2");
    let out = h.exec(&args).await;
    h.expect_code(&out, 0);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(!lines.is_empty(), "no progress line:\n{}", out.stderr);
    for line in &lines {
        assert!(line.contains(&format!("/{users} rows")), "{line}");
        assert!(
            line.contains("0 failed") && !line.contains("unresolved"),
            "{line}"
        );
    }
    let sessions = h.state().sessions;
    assert_eq!(sessions.len(), users);
    for session in &sessions {
        assert!(
            !out.stderr.contains(&session.id.to_string()),
            "{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("onboarding_session_id"),
        "{}",
        out.stderr
    );
    // -q: no progress at all.
    h.sandbox.advance_days(2);
    let today = h.sandbox.today();
    let mut cmd_args = links_args(&h, &csv, &["--progress-interval", "1", "-q"]);
    set_flag(&mut cmd_args, "--concurrency", "2");
    let strs: Vec<&str> = cmd_args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    cmd.env("PODERO_ONBOARD_TODAY", &today);
    let quiet = h.exec_with(cmd).await;
    h.expect_code(&quiet, 0);
    assert_eq!(h.state().count("create_session"), 2 * users as u64);
    assert!(!quiet.stderr.contains("progress: "), "{}", quiet.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_today_test_hook_says_so_on_stderr() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    onboard(&h, &csv).await;
    let out = links_on(&h, &csv, "2030-01-01", &["--dry-run"]).await;
    h.expect_code(&out, 0);
    assert!(
        out.stderr
            .contains("today is 2030-01-01 from --today/PODERO_ONBOARD_TODAY, a test hook"),
        "{}",
        out.stderr
    );
    let normal = links(&h, &csv, &["--dry-run"]).await;
    assert!(!normal.stderr.contains("test hook"), "{}", normal.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_links_with_130_recording_every_link_in_flight() {
    let users = 60;
    let h = Harness::with_users(users).await;
    let csv = h.write("users.csv", generated_csv(users, 1));
    onboard(&h, &csv).await;
    h.sandbox.set_faults(Faults {
        latency: Duration::from_millis(40),
        ..Faults::default()
    });
    let mut args = links_args(&h, &csv, &["--json"]);
    set_flag(&mut args, "--concurrency", "4");
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = h.command(&strs).spawn().expect("spawn links");
    let pid = child.id().expect("pid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while h.state().sessions.len() < 5 {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops within 20 s")
        .expect("wait");
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let s: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    assert_eq!(s["outcome"], "interrupted", "{s}");
    // In-flight POSTs finished and were recorded: no intent is left open, and every
    // session the server made is the building's live link.
    let states = link_states(&h);
    assert_eq!(states.get("creating"), None, "{states:?}");
    let server = h.state().sessions.len();
    assert!(server < users, "stopped too late to test anything");
    assert_eq!(live_links(&h).len(), server, "{states:?}");
    h.sandbox.set_faults(Faults::default());
    let again = links(&h, &csv, &["--json"]).await;
    h.expect_code(&again, 0);
    assert_eq!(count(&summary(&again), "still_valid") as usize, server);
    assert_eq!(live_links(&h).len(), users);
    assert_eq!(h.state().sessions.len(), users, "nothing doubled");
}

/// Issue 18: `links` runs on `run`'s engine, so `--grace` bounds how long a stop waits for
/// calls in flight (it was a fixed 30 s). Every request stalls for a minute once links are
/// under way; with `--grace 1` a SIGTERM ends the run within seconds, exit 130, and the
/// next run leaves one live link per building.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_grace_bounds_how_long_a_stop_waits_for_stalled_calls() {
    let users = 20;
    let h = Harness::with_users(users).await;
    let csv = h.write("users.csv", generated_csv(users, 1));
    onboard(&h, &csv).await;
    h.sandbox.set_faults(Faults {
        latency: Duration::from_millis(40),
        ..Faults::default()
    });
    let mut args = links_args(&h, &csv, &["--grace", "1"]);
    set_flag(&mut args, "--concurrency", "2");
    set_flag(&mut args, "--timeout", "60");
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = h.command(&strs).spawn().expect("spawn links");
    let pid = child.id().expect("pid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while h.state().sessions.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.sandbox.set_faults(Faults {
        latency: Duration::from_secs(60),
        ..Faults::default()
    });
    // Let both workers reach a stalled request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = tokio::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(25), child.wait_with_output())
        .await
        .expect("stops within 25 s")
        .expect("wait");
    let took = signalled.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} with --grace 1"
    );
    assert!(stderr.contains("grace period over"), "{stderr}");
    assert!(
        h.state().sessions.len() < users,
        "stopped too late to test anything"
    );

    h.sandbox.set_faults(Faults::default());
    let again = links(&h, &csv, &["--json"]).await;
    h.expect_code(&again, 0);
    assert_eq!(live_links(&h).len(), users, "{:?}", link_states(&h));
    assert_eq!(link_states(&h).get("creating"), None);
}

/// Issue 18: `links` connects like `run`, so an untrusted server certificate stops it
/// with the same hint (`--ca-cert`), exit 3, before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_stops_links_with_the_ca_cert_hint_before_anything_is_sent() {
    let pki = common::pki::TestPki::new();
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(5)
            .tls(pki.server_tls()),
    )
    .await;
    let csv = h.write("users.csv", generated_csv(5, 1));
    let ca = h.write("company-ca.pem", &pki.ca_pem);
    h.expect_code(&h.run(&csv, &["--ca-cert", ca.to_str().unwrap()]).await, 0);
    let tokens = h.state().tokens_issued;
    let out = links(&h, &csv, &[]).await;
    h.expect_code(&out, 3);
    assert!(
        out.stderr.contains("certificate") && out.stderr.contains("--ca-cert"),
        "names the certificate problem and the fix:\n{}",
        out.stderr
    );
    assert_eq!(h.state().tokens_issued, tokens, "{}", h.describe_state());
    assert!(h.state().sessions.is_empty(), "{}", h.describe_state());
}

/// A session id the scripted server quotes in its refusal.
const QUOTED_SESSION: &str = "S3SSION7SECRET";

/// A Connect link or session id quoted by the server in a *fatal* answer to the session
/// POST (403) does not reach stderr (`-vv`), the `--json` summary or the checkpoint,
/// exactly like the non-fatal answers: `run` and `links` talk to a scripted server that
/// onboards the one row, lists no heat pumps and refuses the session POST with a 403
/// whose body quotes a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_quoted_in_a_fatal_session_answer_is_redacted() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    let server = scripted_podero(|request| {
        let path = request.path.as_str();
        Some(match request.method.as_str() {
            "POST" if path.ends_with("/buildings") => Reply::json(
                201,
                &serde_json::json!({"id": "b0000000-0000-4000-8000-000000000001", "name": "Home"}),
            ),
            "GET" if path.ends_with("/heat-pumps") => Reply::json(200, &serde_json::json!([])),
            "POST" if path.ends_with("/device-onboarding") => Reply::json(
                403,
                &serde_json::json!({"detail": format!(
                    "forbidden: a session exists https://connect.podero.com/?onboarding_session_id={QUOTED_SESSION}"
                )}),
            ),
            _ => return None,
        })
    })
    .await;
    let run_args = h.run_args(&csv, &[]);
    let mut run = h.command(&common::strs(&run_args));
    run.env("PODERO_BASE_URL", server.base_url());
    let out = h.exec_with(run).await;
    h.expect_code(&out, 0);
    let args = links_args(&h, &csv, &["-vv", "--json"]);
    let mut cmd = h.command(&common::strs(&args));
    cmd.env("PODERO_BASE_URL", server.base_url());
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 3);
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/device-onboarding"))
        .count();
    assert_eq!(posts, 1, "the session POST was sent once:\n{}", out.stderr);
    assert!(
        out.stderr.contains("403"),
        "the refusal is reported:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(QUOTED_SESSION),
        "session id in stderr:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains(QUOTED_SESSION),
        "session id in the summary:\n{}",
        out.stdout
    );
    let checkpoint = h.checkpoint();
    let db = std::fs::read(&checkpoint).expect("checkpoint");
    let wal = std::fs::read(format!("{}-wal", checkpoint.display())).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes
                .windows(QUOTED_SESSION.len())
                .any(|w| w == QUOTED_SESSION.as_bytes()),
            "session id in the checkpoint"
        );
    }
}

/// Connects a heat pump to the first building of generated users `0..n`.
fn connect_first(h: &Harness, n: u64) {
    let state = h.state();
    for i in 0..n {
        let user = sandbox::generated_user_id(i);
        let building = state.buildings[&user][0].id;
        h.sandbox.connect_heat_pump(user, Some(building));
    }
}

/// Requests of endpoint `name` between two snapshots.
fn sent(before: &sandbox::Snapshot, after: &sandbox::Snapshot, name: &str) -> u64 {
    after.count(name) - before.count(name)
}

/// All requests (token included) between two snapshots.
fn sent_all(before: &sandbox::Snapshot, after: &sandbox::Snapshot) -> u64 {
    after.api_requests() + after.count("token") - before.api_requests() - before.count("token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_night_of_links_costs_one_user_list_not_a_call_per_customer() {
    let h = Harness::with_users(500).await;
    let csv = h.write("users.csv", generated_csv(500, 1));
    onboard(&h, &csv).await;
    let first = links(&h, &csv, &["--json"]).await;
    h.expect_code(&first, 0);
    assert_eq!(count(&summary(&first), "created"), 500);
    // The same day, nothing changed: the token and one user list.
    let before = h.state();
    let quiet = links(&h, &csv, &["--json", "-v"]).await;
    h.expect_code(&quiet, 0);
    let after = h.state();
    let s = summary(&quiet);
    assert_eq!(count(&s, "still_valid"), 500, "{s}");
    assert_eq!(s["connections_checked_by"], "user_list", "{s}");
    assert_eq!(sent(&before, &after, "list_users"), 1);
    assert_eq!(sent(&before, &after, "list_heat_pumps"), 0);
    assert!(sent_all(&before, &after) <= 3, "{:?}", after.requests);
    assert!(
        quiet.stderr.contains("one user list instead of"),
        "-v does not say which way was taken:\n{}",
        quiet.stderr
    );
    // Ten customers connect: the list, then their heat pumps only.
    connect_first(&h, 10);
    let before = h.state();
    let night = links(&h, &csv, &["--json"]).await;
    h.expect_code(&night, 0);
    let after = h.state();
    let s = summary(&night);
    assert_eq!(count(&s, "connected"), 10, "{s}");
    assert_eq!(count(&s, "still_valid"), 490, "{s}");
    assert_eq!(sent(&before, &after, "list_heat_pumps"), 10);
    assert!(sent_all(&before, &after) <= 3 + 10, "{:?}", after.requests);
    let status = h
        .exec(&[
            "status".into(),
            "--checkpoint".into(),
            h.checkpoint().display().to_string(),
            "--json".into(),
        ])
        .await;
    h.expect_code(&status, 0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["links_funnel"]["connected"], 10, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_user_list_falls_back_to_asking_each_customer_with_the_same_result() {
    let h = Harness::with_users(40).await;
    let csv = h.write("users.csv", generated_csv(40, 1));
    onboard(&h, &csv).await;
    connect_first(&h, 5);
    h.sandbox.set_faults(Faults {
        list_users_status: Some(504),
        ..Faults::default()
    });
    let before = h.state();
    let out = links(&h, &csv, &["--json", "--max-attempts", "1"]).await;
    h.expect_code(&out, 0);
    let after = h.state();
    let s = summary(&out);
    assert_eq!(
        s["connections_checked_by"], "per_customer_after_list_failed",
        "{s}"
    );
    assert_eq!(count(&s, "connected"), 5, "{s}");
    assert_eq!(count(&s, "created"), 35, "{s}");
    assert_eq!(sent(&before, &after, "list_users"), 1);
    assert_eq!(sent(&before, &after, "list_heat_pumps"), 40);
    assert!(
        out.stderr
            .contains("asking each customer for its heat pumps instead"),
        "the fallback is not said:\n{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_customers_of_a_large_organization_are_asked_one_by_one() {
    // Two customers to check, in a checkpoint that knows 3,000 users: one list of the
    // organization would cost more than two heat-pump lists.
    let h = Harness::with_users(3000).await;
    let all = h.write("all.csv", generated_csv(3000, 1));
    onboard(&h, &all).await;
    let two = h.write("two.csv", generated_csv(2, 1));
    let before = h.state();
    let out = links(&h, &two, &["--json", "-v"]).await;
    h.expect_code(&out, 0);
    let after = h.state();
    let s = summary(&out);
    assert_eq!(s["connections_checked_by"], "per_customer", "{s}");
    assert_eq!(sent(&before, &after, "list_users"), 0);
    assert_eq!(sent(&before, &after, "list_heat_pumps"), 2);
    assert!(
        out.stderr.contains("asking each customer"),
        "{}",
        out.stderr
    );
}
