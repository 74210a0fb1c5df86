//! Customers who are not in Podero yet (issue 19): rows keyed by the CRM id, each customer
//! found by CRM id or created with `--create-users`, exactly once, whatever crashes.
//!
//! Every test runs the real binary against the simulator; the claims are checked on the
//! simulator's users (one per CRM id, role `user`) and buildings, and on the checkpoint.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{Harness, Output, generated_csv};
use podero_onboard::sandbox::{self, Building, Faults, SeedUser, Snapshot};
use serde_json::{Value, json};
use uuid::Uuid;

/// `customers` new customers `NEW-<i>` (e-mail `new<i>@example.com`, a German postcode with
/// a leading zero), one property each, the first `second` of them a second property.
fn new_customers_csv(customers: usize, second: usize) -> String {
    let mut csv = String::from(
        "external_user_id,email,first_name,last_name,zip_code,town,country,property_id,building_name\n",
    );
    for i in 0..customers {
        let fields = format!(
            "NEW-{i},new{i}@example.com,Kim,Nr{i},0{:04},Dresden,DE",
            1000 + i
        );
        csv.push_str(&format!("{fields},P-{i}-a,Home\n"));
        if i < second {
            csv.push_str(&format!("{fields},P-{i}-b,Cabin\n"));
        }
    }
    csv
}

fn delta(h: &Harness, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    h.state()
        .requests
        .into_iter()
        .map(|(name, n)| (name.clone(), n - before.get(&name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("--json: {e}\n{}", out.stdout))
}

/// Re-runs `extra` until exit 0 (at most 10 times); each run may only end 0 or 1.
async fn rerun_until_done(h: &Harness, csv: &Path, extra: &[&str]) -> Output {
    for _ in 0..10 {
        let out = h.run(csv, extra).await;
        if out.code == 0 {
            return out;
        }
        assert_eq!(out.code, 1, "a run may only end 0 or 1: {}", out.stderr);
    }
    let out = h.run(csv, extra).await;
    h.expect_code(&out, 0);
    out
}

/// The invariant of the issue: every CRM id of `crms` is exactly one Podero user, of role
/// `user`, and no CRM id is carried by two users.
fn assert_one_user_per_crm_id(state: &Snapshot, crms: impl IntoIterator<Item = String>) {
    assert!(
        state.external_id_duplicates().is_empty(),
        "two users for one CRM id: {:?}",
        state.external_id_duplicates()
    );
    for crm in crms {
        let users = state.users_with_external_id(&crm);
        assert_eq!(users.len(), 1, "CRM id {crm}: {users:?}");
        assert_eq!(users[0].role, "user", "{crm} was created with another role");
    }
}

/// The one user with CRM id `crm`.
fn user_of(state: &Snapshot, crm: &str) -> Uuid {
    let users = state.users_with_external_id(crm);
    assert_eq!(users.len(), 1, "CRM id {crm}: {users:?}");
    users[0].id
}

/// The names of `user`'s buildings on the server, sorted.
fn building_names(state: &Snapshot, user: Uuid) -> Vec<String> {
    let mut names: Vec<String> = state
        .buildings
        .get(&user)
        .map(|b| b.iter().map(|b| b.name.clone()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn customers_table(h: &Harness) -> BTreeMap<String, (Option<String>, String)> {
    let conn = rusqlite::Connection::open(h.checkpoint()).expect("open checkpoint");
    let mut stmt = conn
        .prepare("SELECT external_user_id, user_id, state FROM customers")
        .expect("customers table");
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("decode")
}

/// No create was ever sent for a customer that existed: every customer has its own
/// e-mail, so a second create for one CRM id would have been refused as "e-mail taken"
/// (the simulator's safety net, which Podero's may or may not match: the job must not
/// lean on it, and this shows it never did).
fn assert_no_second_create(state: &Snapshot) {
    let refused: Vec<_> = state
        .log
        .iter()
        .filter(|e| e.endpoint == "create_user" && (400..500).contains(&e.status))
        .collect();
    assert!(
        refused.is_empty(),
        "{} creates were sent for existing customers, the first: {:?}",
        refused.len(),
        refused.first()
    );
}

fn crms(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("NEW-{i}"))
}

// ---- exactly once ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_new_customers_under_drops_and_5xx_become_exactly_two_hundred_users() {
    let faults = Faults {
        commit_then_drop: 0.10,
        random_5xx: 0.05,
        ..Faults::default()
    };
    let h = Harness::new(sandbox::Builder::new().faults(faults).seed(19)).await;
    let csv = h.write("new.csv", new_customers_csv(200, 50));
    let first = h.run(&csv, &["--create-users", "--json"]).await;
    assert!(first.code == 0 || first.code == 1, "{}", first.stderr);
    let done = rerun_until_done(&h, &csv, &["--create-users"]).await;
    let state = h.state();
    assert!(
        state.count("create_user") > 200,
        "no create was retried or lost: the faults tested nothing\n{}",
        h.describe_state()
    );
    assert_eq!(state.users.len(), 200, "exactly one user per customer");
    assert_no_second_create(&state);
    assert_one_user_per_crm_id(&state, crms(200));
    assert!(state.duplicates().is_empty(), "{:?}", state.duplicates());
    for i in 0..200 {
        let user = user_of(&state, &format!("NEW-{i}"));
        let expected = if i < 50 {
            vec!["Cabin", "Home"]
        } else {
            vec!["Home"]
        };
        assert_eq!(building_names(&state, user), expected, "customer NEW-{i}");
        let zip = &state.users[&user].fields["zip_code"];
        assert_eq!(
            zip,
            &json!(format!("0{:04}", 1000 + i)),
            "postcode kept as text"
        );
    }
    let customers = customers_table(&h);
    assert_eq!(customers.len(), 200);
    assert!(
        customers.values().all(|(_, s)| s == "known"),
        "{customers:?}"
    );
    assert!(done.stderr.contains("exit code 0"), "{}", done.stderr);
}

/// Spawns `run` with the harness defaults overridden by `extra`.
fn spawn(h: &Harness, csv: &Path, extra: &[&str]) -> tokio::process::Child {
    let args = h.run_args(csv, extra);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    h.command(&strs).spawn().expect("spawn the binary")
}

async fn wait_for(h: &Harness, what: &str, event: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(Duration::from_secs(30), event)
        .await
        .is_err()
    {
        panic!("no {what} after 30 s\n{}", h.describe_state());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_storm_during_creation_still_leaves_one_user_per_crm_id() {
    const CUSTOMERS: usize = 150;
    const KILLS: u64 = 10;
    let faults = Faults {
        commit_then_drop: 0.05,
        // A POST spends 20-30 ms on the server: the kill lands while it is there.
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        ..Faults::default()
    };
    let h = Harness::new(sandbox::Builder::new().faults(faults).seed(7)).await;
    let csv = h.write("new.csv", new_customers_csv(CUSTOMERS, 30));
    let slow = ["--create-users", "--rate", "200", "--timeout", "1"];
    let mut killed_creating = 0;
    for kill in 0..KILLS {
        let mut child = spawn(&h, &csv, &slow);
        // Kill k after (k+1)*12 creates in all, while a create is on the server.
        let target = (kill + 1) * 12;
        let what = format!("user POST number {target} before kill {kill}");
        wait_for(&h, &what, h.sandbox.wait_requests("create_user", target)).await;
        wait_for(
            &h,
            "a user POST in flight",
            h.sandbox.wait_in_flight("create_user", 1),
        )
        .await;
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("wait");
        killed_creating += customers_table(&h)
            .values()
            .filter(|(_, s)| s == "creating")
            .count();
    }
    assert!(
        killed_creating > 0,
        "no kill left a `creating` intent: the storm tested nothing about intents"
    );
    assert!(h.state().users.len() < CUSTOMERS, "the kills came too late");
    rerun_until_done(&h, &csv, &["--create-users", "--timeout", "1"]).await;
    let state = h.state();
    assert_eq!(state.users.len(), CUSTOMERS);
    assert_no_second_create(&state);
    assert_one_user_per_crm_id(&state, crms(CUSTOMERS));
    assert!(state.duplicates().is_empty(), "{:?}", state.duplicates());
    let buildings: usize = state.buildings.values().map(Vec::len).sum();
    assert_eq!(buildings, CUSTOMERS + 30, "one building per property");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_that_exist_by_crm_id_are_found_updated_where_different_and_never_recreated() {
    let anna = Uuid::from_u128(0xA);
    let ben = Uuid::from_u128(0xB);
    let seeded = [
        SeedUser::new("CRM-A", "anna@example.com")
            .id(anna)
            .names("Anna", "Alt"),
        SeedUser::new("CRM-B", "ben@example.com")
            .id(ben)
            .names("Ben", "Berg"),
    ];
    let h = Harness::new(sandbox::Builder::new().existing_users(seeded)).await;
    let csv = h.write(
        "crm.csv",
        "external_user_id,email,first_name,last_name,building_name\n\
         CRM-A,ANNA@example.com,Anna,Neu,Home\n\
         CRM-B,ben@example.com,Ben,Berg,Home\n",
    );
    // With --create-users too: found customers are never created.
    let out = h.run(&csv, &["--create-users", "--json"]).await;
    h.expect_code(&out, 0);
    assert_eq!(
        delta(&h, &BTreeMap::new()),
        counts(&[
            ("token", 1),
            ("list_users", 1),
            ("get_user_by_ext_id", 2),
            ("put_user", 1),
            ("create_building", 2)
        ]),
        "Anna's changed last name is one PUT, Ben is unchanged, nobody is created; the \
         list (two new customers outnumber its cost) shows both, so both are looked up"
    );
    let state = h.state();
    assert_eq!(state.users.len(), 2);
    assert_eq!(state.users[&anna].fields["last_name"], json!("Neu"));
    assert_eq!(
        state.users[&anna].email, "anna@example.com",
        "e-mail case is no change"
    );
    assert_eq!(building_names(&state, anna), ["Home"]);
    let rows = &json_of(&out)["rows"];
    assert_eq!(rows["users_found"], json!(2));
    assert_eq!(rows["users_created"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_file_onboards_rows_with_and_without_user_id() {
    let known = sandbox::generated_user_id(0);
    let h = Harness::with_users(1).await;
    let csv = h.write(
        "mixed.csv",
        format!(
            "user_id,external_user_id,email,building_name\n\
             {known},CRM-0,known@example.com,Home\n\
             ,CRM-0,known@example.com,Cabin\n\
             ,NEW-1,new1@example.com,Home\n"
        ),
    );
    let metrics = h.path("metrics.prom");
    let metrics_arg = metrics.to_str().unwrap();
    let out = h
        .run(
            &csv,
            &["--create-users", "--json", "--metrics-file", metrics_arg],
        )
        .await;
    h.expect_code(&out, 0);
    let prom = std::fs::read_to_string(&metrics).unwrap();
    for line in [
        "podero_onboard_last_run_customers{how=\"created\"} 1",
        "podero_onboard_last_run_customers{how=\"found\"} 0",
        "podero_onboard_last_run_rows{outcome=\"created\"} 3",
    ] {
        assert!(prom.lines().any(|l| l == line), "{line:?} missing:\n{prom}");
    }
    let state = h.state();
    assert_eq!(state.users.len(), 2, "one user created, the named one kept");
    assert_eq!(
        building_names(&state, known),
        ["Cabin", "Home"],
        "a row without user_id joins the rows naming its CRM id's user"
    );
    let new = user_of(&state, "NEW-1");
    assert_eq!(building_names(&state, new), ["Home"]);
    assert_eq!(
        state.count("get_user_by_ext_id"),
        1,
        "only NEW-1 is looked up"
    );
    let rows = &json_of(&out)["rows"];
    assert_eq!(rows["users_created"], json!(1));
    assert_eq!(
        rows["vanished"],
        json!(0),
        "resolved rows are this input's rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_night_costs_nothing_and_a_changed_address_one_put() {
    let h = Harness::new(sandbox::Builder::new()).await;
    let csv = new_customers_csv(5, 2);
    let path = h.write("night1.csv", &csv);
    let out = h.run(&path, &["--create-users"]).await;
    h.expect_code(&out, 0);
    let before = h.state().requests;
    let again = h.run(&path, &["--create-users"]).await;
    h.expect_code(&again, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1)]),
        "an unchanged night: no API call"
    );
    let moved = csv.replace(
        "NEW-3,new3@example.com,Kim,Nr3,01003,Dresden",
        "NEW-3,new3@example.com,Kim,Nr3,01003,Leipzig",
    );
    assert_ne!(moved, csv);
    let before = h.state().requests;
    let night = h
        .run(&h.write("night2.csv", moved), &["--create-users"])
        .await;
    h.expect_code(&night, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1), ("put_user", 1)]),
        "a changed address: one user PUT"
    );
    let state = h.state();
    assert_eq!(
        state.users[&user_of(&state, "NEW-3")].fields["town"],
        json!("Leipzig")
    );
}

// ---- an old checkpoint ----

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema3");

/// A harness whose checkpoint is a copy of the schema-3 fixture, pointed at this simulator,
/// whose simulator holds the fixture's users (with their CRM ids) and buildings.
async fn from_schema3() -> (Harness, String) {
    let csv = std::fs::read_to_string(format!("{FIXTURE}/users.csv")).unwrap();
    let mut users = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let id = Uuid::parse_str(cells[0]).unwrap();
        users.insert(id, SeedUser::new(cells[1], cells[5]).id(id));
    }
    let h = Harness::new(sandbox::Builder::new().existing_users(users.into_values())).await;
    std::fs::copy(format!("{FIXTURE}/checkpoint.sqlite"), h.checkpoint()).unwrap();
    let conn = rusqlite::Connection::open(h.checkpoint()).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3, "the fixture is a schema-3 checkpoint");
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'base_url'",
        [h.sandbox.base_url()],
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT user_id, building_name, building_id FROM rows")
        .unwrap();
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (user, name, id) in rows {
        let line = csv
            .lines()
            .find(|l| l.starts_with(&user) && l.contains(&format!(",{name},")))
            .unwrap();
        let cells: Vec<&str> = line.split(',').collect();
        let fields = json!({"name": name, "property_type": cells[7],
            "num_occupants": cells[8].parse::<u64>().unwrap()});
        let Value::Object(fields) = fields else {
            unreachable!()
        };
        let building = Building {
            id: Uuid::parse_str(&id).unwrap(),
            name,
            fields,
            created_at_ms: 0,
        };
        h.sandbox
            .insert_building(Uuid::parse_str(&user).unwrap(), building);
    }
    (h, csv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_3_checkpoint_is_upgraded_and_keeps_working_creating_nothing() {
    let (h, csv) = from_schema3().await;
    let path = h.write("users.csv", &csv);
    let out = h.run(&path, &["--json"]).await;
    h.expect_code(&out, 0);
    assert_eq!(
        delta(&h, &BTreeMap::new()),
        counts(&[("token", 1)]),
        "the same file over the upgraded checkpoint: nothing sent"
    );
    let conn = rusqlite::Connection::open(h.checkpoint()).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
    let customers: i64 = conn
        .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(customers, 0, "the upgrade adds a table, nothing else");
    // The partner's next export has no user_id column: the customers are found by CRM id
    // and their rows continue the ones the old checkpoint has. Nothing created.
    let crm_keyed: String = csv
        .lines()
        .map(|l| l.split_once(',').unwrap().1.to_owned() + "\n")
        .collect();
    let before = h.state().requests;
    let out = h
        .run(
            &h.write("crm.csv", crm_keyed),
            &["--create-users", "--json"],
        )
        .await;
    h.expect_code(&out, 0);
    // The simulator's users were seeded without the postcodes and first names the CSV
    // has: each found user gets one PUT of those fields (and only those).
    assert_eq!(
        delta(&h, &before),
        counts(&[
            ("token", 1),
            ("list_users", 1),
            ("get_user_by_ext_id", 2),
            ("put_user", 2)
        ]),
        "the list shows both CRM ids: two lookups, no create, no POST"
    );
    let anna = Uuid::parse_str("11111111-1111-4111-8111-000000000001").unwrap();
    assert_eq!(h.state().users[&anna].fields["zip_code"], json!("01067"));
    assert_eq!(h.state().users.len(), 2);
    assert_eq!(h.state().buildings.values().map(Vec::len).sum::<usize>(), 3);
}

// ---- e-mail taken, several users ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_email_fails_naming_it_and_adopt_existing_gives_the_user_the_crm_id() {
    let app_user = Uuid::from_u128(0xE);
    let seeded = [SeedUser {
        id: Some(app_user),
        email: Some("Eva@Example.com".into()),
        ..SeedUser::default()
    }];
    let h = Harness::new(sandbox::Builder::new().existing_users(seeded)).await;
    let csv = h.write(
        "new.csv",
        "external_user_id,email,first_name,building_name\nCRM-E,eva@example.com,Eva,Home\n",
    );
    let report = h.path("report.csv");
    let report_arg = report.to_str().unwrap();
    let out = h
        .run(&csv, &["--create-users", "--report", report_arg])
        .await;
    h.expect_code(&out, 1);
    let report_text = std::fs::read_to_string(&report).unwrap();
    assert!(
        report_text.contains("eva@example.com") && report_text.contains("--adopt-existing"),
        "{report_text}"
    );
    assert_eq!(h.state().users.len(), 1, "nothing created");
    let out = h
        .run(&csv, &["--create-users", "--adopt-existing", "--json"])
        .await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert_eq!(state.users.len(), 1, "adopted, not created");
    assert_eq!(
        state.users[&app_user].external_user_id.as_deref(),
        Some("CRM-E")
    );
    assert_eq!(building_names(&state, app_user), ["Home"]);
    assert_eq!(state.count("list_users"), 1);
    assert_eq!(json_of(&out)["rows"]["users_adopted"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_held_by_a_user_with_another_crm_id_is_never_taken_over() {
    let other = Uuid::from_u128(0xF);
    let seeded = [SeedUser::new("CRM-OTHER", "fay@example.com").id(other)];
    let h = Harness::new(sandbox::Builder::new().existing_users(seeded)).await;
    let csv = h.write(
        "new.csv",
        "external_user_id,email,building_name\nCRM-F,fay@example.com,Home\n",
    );
    let report = h.path("report.csv");
    let args = [
        "--create-users",
        "--adopt-existing",
        "--report",
        report.to_str().unwrap(),
    ];
    let out = h.run(&csv, &args).await;
    h.expect_code(&out, 1);
    let report_text = std::fs::read_to_string(&report).unwrap();
    assert!(
        report_text.contains("CRM-OTHER") && report_text.contains("CRM-F"),
        "names both CRM ids: {report_text}"
    );
    let state = h.state();
    assert_eq!(
        state.users[&other].external_user_id.as_deref(),
        Some("CRM-OTHER")
    );
    assert_eq!(state.users.len(), 1);
    assert_eq!(state.count("put_user"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_users_with_one_crm_id_leave_the_customer_unresolved_and_create_nothing() {
    let seeded = [
        SeedUser::new("CRM-TWICE", "one@example.com"),
        SeedUser::new("CRM-TWICE", "two@example.com"),
    ];
    let h = Harness::new(sandbox::Builder::new().existing_users(seeded)).await;
    let csv = h.write(
        "new.csv",
        "external_user_id,email,building_name\nCRM-TWICE,three@example.com,Home\n",
    );
    let out = h.run(&csv, &["--create-users", "--json"]).await;
    h.expect_code(&out, 1);
    let state = h.state();
    assert_eq!(state.users.len(), 2, "nothing created");
    assert_eq!(state.count("create_user"), 0);
    assert_eq!(json_of(&out)["rows"]["unresolved"], json!(1));
    assert_eq!(customers_table(&h)["CRM-TWICE"].1, "unresolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_users_a_new_customer_fails_saying_how_and_the_flag_then_creates_it() {
    let h = Harness::new(sandbox::Builder::new()).await;
    let csv = h.write("new.csv", new_customers_csv(1, 0));
    let report = h.path("report.csv");
    let out = h.run(&csv, &["--report", report.to_str().unwrap()]).await;
    h.expect_code(&out, 1);
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("no Podero user has CRM id NEW-0; pass --create-users to create it"),
        "{text}"
    );
    assert_eq!(h.state().users.len(), 0);
    let out = h.run(&csv, &["--create-users"]).await;
    h.expect_code(&out, 0);
    assert_one_user_per_crm_id(&h.state(), crms(1));
    let rows = h.checkpoint_rows();
    assert!(
        rows.iter().all(|r| !r.user_id.starts_with("ext:")),
        "the failed row moved to its user: {rows:?}"
    );
}

// ---- bad input, before any call ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_conflicts_are_rejected_before_any_call() {
    let a = sandbox::generated_user_id(0);
    let b = sandbox::generated_user_id(1);
    let h = Harness::with_users(2).await;
    let csv = h.write(
        "bad.csv",
        format!(
            "user_id,external_user_id,email,first_name,building_name\n\
             {a},CRM-1,a@example.com,A,Home\n\
             {b},CRM-1,b@example.com,A,Cabin\n\
             ,CRM-2,same@example.com,X,Home\n\
             ,CRM-3,SAME@example.com,Y,Home\n\
             ,CRM-4,,Z,Home\n\
             ,CRM-5,five@example.com,Ann,Home\n\
             ,CRM-5,five@example.com,Anne,Cabin\n"
        ),
    );
    let report = h.path("report.csv");
    let out = h
        .run(
            &csv,
            &[
                "--create-users",
                "--strict",
                "--report",
                report.to_str().unwrap(),
            ],
        )
        .await;
    h.expect_code(&out, 1);
    assert_eq!(h.state().api_requests(), 0, "nothing sent");
    let text = std::fs::read_to_string(&report).unwrap();
    for expected in [
        "CRM id CRM-1 belongs to different Podero users",
        "e-mail same@example.com is given to several CRM ids",
        "needs an e-mail address",
        "CRM id CRM-5 has different user fields",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
}

// ---- everything else knows these rows ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_export_status_and_dry_run_know_crm_keyed_rows() {
    let h = Harness::new(sandbox::Builder::new()).await;
    let csv = h.write("new.csv", new_customers_csv(3, 1));
    let dry = h
        .run(&csv, &["--create-users", "--dry-run", "--json"])
        .await;
    h.expect_code(&dry, 0);
    let plan = &json_of(&dry)["plan"];
    assert_eq!(plan["look_up"], json!(3), "{plan}");
    assert_eq!(h.state().api_requests(), 0, "a dry run sends nothing");
    let out = h.run(&csv, &["--create-users"]).await;
    h.expect_code(&out, 0);
    let export = h.export(&["--format", "json"]).await;
    let lines: Vec<Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let state = h.state();
    for line in &lines {
        let crm = line["external_user_id"].as_str().unwrap();
        assert_eq!(line["user_id"], json!(user_of(&state, crm).to_string()));
        assert_eq!(line["state"], json!("done"));
        assert!(line["building_id"].is_string());
    }
    let checkpoint = h.checkpoint();
    let args = [
        "links",
        csv.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--language",
        "de",
        "--price-zone",
        "AT",
        "--success-url",
        "https://partner.example/ok",
        "--cancel-url",
        "https://partner.example/cancel",
    ];
    let links = h.exec_with(h.command(&args)).await;
    h.expect_code(&links, 0);
    assert_eq!(
        h.state().count("create_session"),
        4,
        "a link per building of the CRM-keyed rows"
    );
    let status = h
        .exec_with(h.command(&["status", "--checkpoint", checkpoint.to_str().unwrap()]))
        .await;
    h.expect_code(&status, 0);
    assert!(
        status
            .stdout
            .contains("customers by CRM id (rows without user_id):\n         3  known (created)"),
        "{}",
        status.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_email_is_recognised_whether_podero_answers_400_409_or_422() {
    for status in [400, 409, 422] {
        let seeded = [SeedUser {
            email: Some("gus@example.com".into()),
            ..SeedUser::default()
        }];
        let faults = Faults {
            email_taken_status: status,
            ..Faults::default()
        };
        let builder = sandbox::Builder::new()
            .existing_users(seeded)
            .faults(faults);
        let h = Harness::new(builder).await;
        let csv = h.write(
            "new.csv",
            "external_user_id,email,building_name\nCRM-G,gus@example.com,Home\n",
        );
        let out = h
            .run(&csv, &["--create-users", "--adopt-existing", "--json"])
            .await;
        h.expect_code(&out, 0);
        assert_eq!(
            json_of(&out)["rows"]["users_adopted"],
            json!(1),
            "HTTP {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_id_with_slashes_spaces_and_umlauts_is_found_as_one_path_segment() {
    let id = Uuid::from_u128(0x51);
    let crm = "Kunde 7/ä#1?x=..";
    let seeded = [SeedUser::new(crm, "k7@example.com").id(id)];
    let h = Harness::new(sandbox::Builder::new().existing_users(seeded)).await;
    let csv = h.write(
        "crm.csv",
        format!("external_user_id,email,building_name\n\"{crm}\",k7@example.com,Home\n"),
    );
    let out = h.run(&csv, &["--create-users"]).await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert_eq!(state.count("create_user"), 0, "found, not created");
    assert_eq!(building_names(&state, id), ["Home"]);
}

// ---- one user list instead of a lookup per new customer (issue 20) ----

/// `users` users of the organization unrelated to the file (CRM ids `OTHER-<i>`).
fn others(users: usize) -> Vec<SeedUser> {
    (0..users)
        .map(|i| SeedUser::new(&format!("OTHER-{i}"), &format!("other{i}@example.com")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_of_new_customers_costs_two_requests_each_and_the_next_one_nothing() {
    const NEW: u64 = 200;
    let h = Harness::new(sandbox::Builder::new().existing_users(others(300))).await;
    let csv = h.write("new.csv", new_customers_csv(NEW as usize, 0));
    let out = h.run(&csv, &["--create-users", "--json", "-v"]).await;
    h.expect_code(&out, 0);
    let sent = delta(&h, &BTreeMap::new());
    assert_eq!(
        sent,
        counts(&[
            ("token", 1),
            ("list_users", 1),
            ("create_user", NEW),
            ("create_building", NEW)
        ]),
        "one list, then a user POST and a building POST per customer: no lookup"
    );
    let total: u64 = sent.values().sum();
    assert!(total <= 2 * NEW + 2, "{total} requests for {NEW} customers");
    assert_eq!(json_of(&out)["new_customers_checked_by"], "user_list");
    assert!(
        out.stderr
            .contains("one user list instead of a lookup per new customer"),
        "-v does not say which way:\n{}",
        out.stderr
    );
    let state = h.state();
    assert_eq!(state.users.len(), 300 + NEW as usize);
    assert_one_user_per_crm_id(&state, crms(NEW as usize));
    let before = state.requests;
    let again = h.run(&csv, &["--create-users", "--json"]).await;
    h.expect_code(&again, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1)]),
        "a re-run: nothing"
    );
    assert_eq!(json_of(&again)["new_customers_checked_by"], "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_list_read_a_crm_id_held_by_two_users_is_unresolved_and_nothing_created() {
    let mut seeded = others(3);
    seeded.push(SeedUser::new("CRM-TWICE", "one@example.com"));
    seeded.push(SeedUser::new("CRM-TWICE", "two@example.com"));
    let h = Harness::new(sandbox::Builder::new().existing_users(seeded)).await;
    let mut csv = new_customers_csv(5, 0);
    csv.push_str("CRM-TWICE,three@example.com,Kim,Twice,01099,Dresden,DE,P-T,Home\n");
    // One attempt: the lookup's 5xx is not retried, so lookups count CRM ids.
    let out = h
        .run(
            &h.write("new.csv", csv),
            &["--create-users", "--json", "--max-attempts", "1"],
        )
        .await;
    h.expect_code(&out, 1);
    let state = h.state();
    assert_eq!(json_of(&out)["new_customers_checked_by"], "user_list");
    assert_eq!(state.count("list_users"), 1);
    assert_eq!(
        state.count("get_user_by_ext_id"),
        1,
        "only the CRM id the list shows is looked up"
    );
    assert_eq!(state.count("create_user"), 5, "the five new ones only");
    assert_eq!(state.users_with_external_id("CRM-TWICE").len(), 2);
    assert_eq!(json_of(&out)["rows"]["unresolved"], json!(1));
    assert_eq!(customers_table(&h)["CRM-TWICE"].1, "unresolved");
    for crm in crms(5) {
        user_of(&state, &crm);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_left_creating_or_unknown_is_looked_up_even_when_the_list_does_not_show_it() {
    let h = Harness::new(sandbox::Builder::new().existing_users(others(3))).await;
    // A first run makes the checkpoint; then, as a killed run would leave them: NEW-0's
    // create happened (`creating`, the user exists), NEW-1's never arrived (`unknown`).
    let first = h.write(
        "first.csv",
        "external_user_id,email,building_name\nOTHER-0,other0@example.com,Home\n",
    );
    h.expect_code(&h.run(&first, &["--create-users"]).await, 0);
    let conn = rusqlite::Connection::open(h.checkpoint()).expect("open checkpoint");
    conn.execute_batch(
        "INSERT INTO customers (external_user_id, state, updated_at)
         VALUES ('NEW-0', 'creating', 0), ('NEW-1', 'unknown', 0)",
    )
    .expect("intents");
    drop(conn);
    let created = h
        .sandbox
        .add_users([SeedUser::new("NEW-0", "new0@example.com")])
        .expect("seed");
    let before = h.state().requests;
    let out = h
        .run(
            &h.write("new.csv", new_customers_csv(10, 0)),
            &["--create-users", "--json", "--max-vanished", "1"],
        )
        .await;
    h.expect_code(&out, 0);
    let sent = delta(&h, &before);
    assert_eq!(json_of(&out)["new_customers_checked_by"], "user_list");
    assert_eq!(
        sent.get("get_user_by_ext_id"),
        Some(&2),
        "NEW-0 and NEW-1 have records: both looked up, whatever the list shows: {sent:?}"
    );
    assert_eq!(
        sent.get("create_user"),
        Some(&9),
        "NEW-0 was found: {sent:?}"
    );
    let state = h.state();
    assert_eq!(
        user_of(&state, "NEW-0"),
        created[0],
        "found, not created again"
    );
    assert_one_user_per_crm_id(&state, crms(10));
    assert_no_second_create(&state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_user_list_falls_back_to_a_lookup_per_new_customer_with_the_same_result() {
    let h = Harness::new(sandbox::Builder::new().existing_users(others(3))).await;
    h.sandbox.set_faults(Faults {
        list_users_status: Some(504),
        ..Faults::default()
    });
    let csv = h.write("new.csv", new_customers_csv(20, 0));
    let out = h
        .run(&csv, &["--create-users", "--json", "--max-attempts", "1"])
        .await;
    h.expect_code(&out, 0);
    assert_eq!(
        json_of(&out)["new_customers_checked_by"],
        "per_customer_after_list_failed"
    );
    assert_eq!(
        delta(&h, &BTreeMap::new()),
        counts(&[
            ("token", 1),
            ("list_users", 1),
            ("get_user_by_ext_id", 20),
            ("create_user", 20),
            ("create_building", 20)
        ]),
        "the list failed: a lookup per customer, as before the list"
    );
    assert!(
        out.stderr
            .contains("looking up each new customer by CRM id instead"),
        "the fallback is not said:\n{}",
        out.stderr
    );
    assert_one_user_per_crm_id(&h.state(), crms(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_new_customers_in_a_large_checkpoint_are_looked_up_one_by_one() {
    // Two new customers in a checkpoint that knows 3,000 users: one list of the
    // organization would cost more than two lookups.
    let h = Harness::with_users(3000).await;
    let all = h.write("all.csv", generated_csv(3000, 1));
    h.expect_code(&h.run(&all, &[]).await, 0);
    let before = h.state().requests;
    let out = h
        .run(
            &h.write("new.csv", new_customers_csv(2, 0)),
            &["--create-users", "--json", "-v", "--max-vanished", "3000"],
        )
        .await;
    h.expect_code(&out, 0);
    assert_eq!(json_of(&out)["new_customers_checked_by"], "per_customer");
    let sent = delta(&h, &before);
    assert_eq!(sent.get("list_users"), None, "{sent:?}");
    assert_eq!(sent.get("get_user_by_ext_id"), Some(&2), "{sent:?}");
    assert!(
        out.stderr
            .contains("looking up each new customer by CRM id"),
        "{}",
        out.stderr
    );
}
