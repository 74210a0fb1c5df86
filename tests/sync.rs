//! The nightly sync against the simulator (issue 11): building changes are read, overlaid
//! and written back; `property_id` keeps a renamed building the same; user-only rows;
//! `--adopt-existing`; and a checkpoint written by the schema-1 release syncs on top.

use crate::common;

use std::collections::BTreeMap;

use common::{Harness, Output};
use podero_onboard::sandbox::{self, Building, ListBuildings};
use serde_json::{Value, json};
use uuid::Uuid;

fn user(i: u64) -> Uuid {
    sandbox::generated_user_id(i)
}

fn summary(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", out.stdout))
}

/// Requests per endpoint since `before` (a copy of the simulator's counters).
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

/// The only building of `user`, as the simulator holds it.
fn only_building(h: &Harness, user: Uuid) -> Building {
    let state = h.state();
    let buildings = &state.buildings[&user];
    assert_eq!(buildings.len(), 1, "{buildings:?}");
    buildings[0].clone()
}

/// `users` users with one building each: `Home`, Detached, 2 occupants, in Wien.
fn building_csv(users: u64, changed: impl Fn(u64) -> bool) -> String {
    let mut csv = String::from(
        "user_id,external_user_id,building_name,property_type,num_occupants,building_town\n",
    );
    for i in 0..users {
        let kind = if changed(i) { "Bungalow" } else { "Detached" };
        csv.push_str(&format!("{},CRM-{i},Home,{kind},2,Wien\n", user(i)));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_buildings_cost_one_get_and_one_put_each_and_keep_fields_set_in_the_app() {
    let h = Harness::with_users(8).await;
    let first = h.write("night1.csv", building_csv(8, |_| false));
    h.expect_code(&h.run(&first, &[]).await, 0);
    // The customer of each changed row set the heating in the app; the CSV has no such column.
    let changed = |i: u64| i.is_multiple_of(3); // users 0, 3, 6
    for i in (0..8).filter(|i| changed(*i)) {
        let id = only_building(&h, user(i)).id;
        assert!(
            h.sandbox
                .edit_building(user(i), id, "space_heating", json!("Heat pump"))
        );
    }
    let ids: Vec<Uuid> = (0..8).map(|i| only_building(&h, user(i)).id).collect();
    let before = h.state().requests;

    let second = h.write("night2.csv", building_csv(8, changed));
    let out = h.run(&second, &["--json"]).await;
    h.expect_code(&out, 0);

    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1), ("get_building", 3), ("update_building", 3)]),
        "exactly one GET and one PUT per changed building, nothing else"
    );
    let rows = &summary(&out)["rows"];
    assert_eq!(rows["buildings_updated"], 3, "{rows}");
    assert_eq!(rows["skipped_done"], 5, "{rows}");
    assert_eq!(rows["created"], 0, "{rows}");
    for i in 0..8 {
        let building = only_building(&h, user(i));
        assert_eq!(
            building.id, ids[i as usize],
            "same building, never a new one"
        );
        let kind = if changed(i) { "Bungalow" } else { "Detached" };
        assert_eq!(building.fields["property_type"], json!(kind));
        assert_eq!(building.fields["num_occupants"], json!(2));
        assert_eq!(building.fields["town"], json!("Wien"));
        if changed(i) {
            assert_eq!(
                building.fields["space_heating"],
                json!("Heat pump"),
                "a field set in the app that the CSV lacks survives the full-replace PUT"
            );
        }
    }
    assert!(h.state().anomalies.is_empty(), "{:?}", h.state().anomalies);

    let before = h.state().requests;
    h.expect_code(&h.run(&second, &[]).await, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1)]),
        "an unchanged night costs only the token request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_building_deleted_in_podero_fails_its_row_and_is_not_recreated() {
    let h = Harness::with_users(2).await;
    h.expect_code(
        &h.run(&h.write("a.csv", building_csv(2, |_| false)), &[])
            .await,
        0,
    );
    let gone = only_building(&h, user(1)).id;
    assert!(h.sandbox.delete_building(user(1), gone));
    let out = h
        .run(&h.write("b.csv", building_csv(2, |_| true)), &["--json"])
        .await;
    h.expect_code(&out, 1);
    assert_eq!(h.state().count("create_building"), 2, "nothing re-created");
    let rows = h.checkpoint_rows();
    let row = rows
        .iter()
        .find(|r| r.user_id == user(1).to_string())
        .unwrap();
    assert_eq!((row.state.as_str(), row.http_status), ("failed", Some(404)));
    assert!(
        row.error
            .as_deref()
            .unwrap()
            .contains("no longer exists in Podero"),
        "{row:?}"
    );
    assert_eq!(summary(&out)["rows"]["buildings_updated"], 1);

    // The dry run plans with the run's options: --retry-failed tries the row again.
    let again = h.path("b.csv");
    let dry = h.run(&again, &["--dry-run", "--json"]).await;
    h.expect_code(&dry, 0);
    assert_eq!(summary(&dry)["plan"]["skip_failed"], 1, "{}", dry.stderr);
    let dry = h
        .run(&again, &["--dry-run", "--json", "--retry-failed"])
        .await;
    h.expect_code(&dry, 0);
    let plan = &summary(&dry)["plan"];
    assert_eq!(
        (plan["skip_failed"].clone(), plan["update_building"].clone()),
        (json!(0), json!(1)),
        "{plan}"
    );
}

/// Two users with two properties each, keyed by the CRM's property id.
fn property_csv(renamed: &[(u64, &str, &str)]) -> String {
    let mut csv =
        String::from("user_id,external_user_id,property_id,building_name,num_occupants\n");
    for i in 0..2u64 {
        for (p, name) in [("A", "Main House"), ("B", "Cottage")] {
            let pid = format!("P-{i}-{p}");
            let name = renamed
                .iter()
                .find(|(u, old, _)| *u == i && *old == name)
                .map_or(name, |(_, _, new)| *new);
            csv.push_str(&format!("{},CRM-{i},{pid},{name},3\n", user(i)));
        }
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_keyed_by_property_id_update_the_same_buildings() {
    let h = Harness::with_users(2).await;
    h.expect_code(&h.run(&h.write("a.csv", property_csv(&[])), &[]).await, 0);
    let ids_before = h.state().buildings.clone();
    let before = h.state().requests;

    let renamed = [(0, "Main House", "Home"), (1, "Cottage", "Garden House")];
    let out = h
        .run(&h.write("b.csv", property_csv(&renamed)), &["--json"])
        .await;
    h.expect_code(&out, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1), ("get_building", 2), ("update_building", 2)])
    );
    let state = h.state();
    for i in 0..2u64 {
        let ids: Vec<Uuid> = state.buildings[&user(i)].iter().map(|b| b.id).collect();
        let old: Vec<Uuid> = ids_before[&user(i)].iter().map(|b| b.id).collect();
        assert_eq!(ids, old, "same building ids, no new building");
    }
    let names: Vec<&str> = state.buildings[&user(0)]
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(names, ["Home", "Cottage"]);
    assert_eq!(
        summary(&out)["rows"]["vanished"],
        0,
        "a rename is not a vanished row"
    );
    let names: Vec<String> = h
        .checkpoint_rows()
        .into_iter()
        .map(|r| r.building_name)
        .collect();
    assert!(names.contains(&"Garden House".to_owned()), "{names:?}");
    let export = h.export(&[]).await;
    assert!(
        export
            .stdout
            .lines()
            .next()
            .unwrap()
            .ends_with(",property_id")
            && export.stdout.contains(",P-1-B"),
        "{}",
        export.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_only_rows_and_building_rows_mix_in_one_file() {
    let h = Harness::with_users(3).await;
    let csv = format!(
        "user_id,external_user_id,building_name\n\
         {u0},CRM-0,\n\
         {u1},CRM-1,\n\
         {u1},CRM-1,Home\n\
         {u2},CRM-2,Home\n",
        u0 = user(0),
        u1 = user(1),
        u2 = user(2)
    );
    let csv = h.write("mixed.csv", csv);
    let out = h.run(&csv, &["--json"]).await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert_eq!(
        state.requests.get("put_user"),
        Some(&3),
        "each user once: {:?}",
        state.requests
    );
    assert_eq!(state.count("create_building"), 2);
    assert!(!state.buildings.contains_key(&user(0)));
    for i in 0..3 {
        assert_eq!(
            state.users[&user(i)].external_user_id.as_deref(),
            Some(format!("CRM-{i}").as_str())
        );
    }
    let rows = &summary(&out)["rows"];
    assert_eq!(
        (rows["user_only"].clone(), rows["created"].clone()),
        (json!(2), json!(2))
    );
    let user_only: Vec<_> = h
        .checkpoint_rows()
        .into_iter()
        .filter(|r| r.building_name.is_empty())
        .collect();
    assert_eq!(user_only.len(), 2);
    assert!(
        user_only
            .iter()
            .all(|r| r.state == "done" && r.building_id.is_none())
    );
    h.assert_no_duplicates_and_map_matches();

    // A file without the building_name column at all: every row is user-only.
    let users_only = h.write(
        "users-only.csv",
        format!("user_id,external_user_id\n{},CRM-0-new\n", user(0)),
    );
    let before = h.state().requests;
    // One user of four: the other rows are left out on purpose, not a cut export.
    let out = h.run(&users_only, &["--max-vanished", "100%"]).await;
    h.expect_code(&out, 0);
    assert!(
        out.stderr.contains("no building_name column"),
        "{}",
        out.stderr
    );
    assert_eq!(delta(&h, &before), counts(&[("token", 1), ("put_user", 1)]));
    assert_eq!(
        h.state().users[&user(0)].external_user_id.as_deref(),
        Some("CRM-0-new")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_existing_adopts_one_creates_none_and_leaves_several_to_a_human() {
    let home = |app_field: bool| {
        let mut fields = serde_json::Map::new();
        fields.insert("name".into(), json!("Home"));
        if app_field {
            fields.insert("space_heating".into(), json!("Heat pump"));
        }
        fields
    };
    let builder = sandbox::Builder::new()
        .generated_users(3)
        .existing_building(user(1), home(true))
        .existing_building(user(2), home(false))
        .existing_building(user(2), home(false));
    let h = Harness::new(builder).await;
    let adopted = only_building(&h, user(1)).id;
    let csv = h.write("users.csv", building_csv(3, |_| false));
    let out = h.run(&csv, &["--adopt-existing", "--json"]).await;
    h.expect_code(&out, 1);

    let state = h.state();
    assert_eq!(
        state.count("create_building"),
        1,
        "only the user with none gets a POST"
    );
    assert_eq!(state.buildings[&user(0)].len(), 1);
    assert_eq!(
        state.buildings[&user(2)].len(),
        2,
        "nothing added to the ambiguous user"
    );
    let kept = only_building(&h, user(1));
    assert_eq!(kept.id, adopted);
    assert_eq!(
        kept.fields["property_type"],
        json!("Detached"),
        "row fields applied"
    );
    assert_eq!(
        kept.fields["space_heating"],
        json!("Heat pump"),
        "app field kept"
    );

    let rows = h.checkpoint_rows();
    let by_user = |i: u64| {
        rows.iter()
            .find(|r| r.user_id == user(i).to_string())
            .unwrap()
    };
    assert_eq!(by_user(0).state, "done");
    assert_eq!(by_user(1).state, "done");
    assert_eq!(by_user(1).building_id, Some(adopted.to_string()));
    assert_eq!(by_user(2).state, "unresolved");
    assert!(
        by_user(2)
            .error
            .as_deref()
            .unwrap()
            .contains("2 buildings named")
    );
    let counted = &summary(&out)["rows"];
    assert_eq!(
        (
            counted["created"].clone(),
            counted["adopted_existing"].clone(),
            counted["unresolved"].clone()
        ),
        (json!(1), json!(1), json!(1)),
        "{counted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_existing_stops_before_any_write_when_buildings_cannot_be_listed() {
    for mode in [ListBuildings::NotFound, ListBuildings::MethodNotAllowed] {
        let h = Harness::new(
            sandbox::Builder::new()
                .generated_users(4)
                .list_buildings(mode),
        )
        .await;
        let csv = h.write("users.csv", building_csv(4, |_| false));
        let out = h.run(&csv, &["--adopt-existing"]).await;
        h.expect_code(&out, 3);
        assert!(
            out.stderr
                .contains("--adopt-existing cannot be honoured by this server"),
            "{}",
            out.stderr
        );
        let state = h.state();
        assert_eq!(state.count("create_building"), 0, "{mode:?}");
        assert_eq!(state.count("put_user"), 0, "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_plans_exactly_what_the_run_then_does() {
    let h = Harness::with_users(6).await;
    let night1 = format!(
        "user_id,external_user_id,building_name,property_type\n\
         {},CRM-0,Home,Detached\n{},CRM-1,Home,Detached\n{},CRM-2,Home,Detached\n",
        user(0),
        user(1),
        user(2)
    );
    h.expect_code(&h.run(&h.write("n1.csv", night1), &[]).await, 0);
    // user 0 unchanged, user 1's building changed, user 2's user changed,
    // user 3 new, users 4 and 5 user-only.
    let night2 = format!(
        "user_id,external_user_id,building_name,property_type\n\
         {},CRM-0,Home,Detached\n{},CRM-1,Home,Flat\n{},CRM-2b,Home,Detached\n\
         {},CRM-3,Home,Flat\n{},CRM-4,,\n{},CRM-5,,\n",
        user(0),
        user(1),
        user(2),
        user(3),
        user(4),
        user(5)
    );
    let night2 = h.write("n2.csv", night2);
    let before = h.checkpoint_rows();
    let dry = h.run(&night2, &["--dry-run", "--json"]).await;
    h.expect_code(&dry, 0);
    assert_eq!(h.checkpoint_rows(), before, "a dry run changes no row");
    let plan = summary(&dry)["plan"].clone();
    assert_eq!(
        plan,
        json!({"onboard": 1, "update": 1, "retry": 0, "verify": 0, "update_building": 1,
               "user_only": 2, "skip_done": 1, "skip_failed": 0, "look_up": 0,
               "create_users": false}),
        "{}",
        dry.stderr
    );
    let report = h.path("report.csv");
    let real = h
        .run(&night2, &["--json", "--report", report.to_str().unwrap()])
        .await;
    h.expect_code(&real, 0);
    let outcomes: Vec<String> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.rsplit(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        [
            "no_call",
            "building_updated",
            "user_updated",
            "created",
            "user_only",
            "user_only"
        ],
        "the report names each row's outcome, in line order"
    );
    let rows = summary(&real)["rows"].clone();
    let did = json!({
        "onboard": rows["created"], "update": rows["updated"], "update_building": rows["buildings_updated"],
        "user_only": rows["user_only"], "skip_done": rows["skipped_done"],
    });
    let planned = json!({
        "onboard": plan["onboard"], "update": plan["update"], "update_building": plan["update_building"],
        "user_only": plan["user_only"], "skip_done": plan["skip_done"],
    });
    assert_eq!(did, planned, "{}", real.stderr);
}

// ---- a checkpoint written by the schema-1 release (tests/fixtures/schema1/make.sh) ----

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema1");

/// The fixture's rows: (user, building name, building id), as the schema-1 release wrote them.
fn fixture_rows(checkpoint: &std::path::Path) -> Vec<(Uuid, String, Uuid)> {
    let conn = rusqlite::Connection::open(checkpoint).unwrap();
    let mut stmt = conn
        .prepare("SELECT user_id, building_name, building_id FROM rows ORDER BY 1, 2")
        .unwrap();
    stmt.query_map([], |r| {
        let parse = |s: String| Uuid::parse_str(&s).unwrap();
        Ok((parse(r.get(0)?), r.get(1)?, parse(r.get(2)?)))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// A harness whose checkpoint is a copy of the schema-1 fixture, pointed at this
/// simulator, and whose simulator holds the fixture's users and buildings as the
/// schema-1 run left them (same ids, the fields of `users.csv`).
async fn from_schema1() -> (Harness, String) {
    let csv = std::fs::read_to_string(format!("{FIXTURE}/users.csv")).unwrap();
    let h = Harness::new(sandbox::Builder::new()).await;
    std::fs::copy(format!("{FIXTURE}/checkpoint.sqlite"), h.checkpoint()).unwrap();
    {
        let conn = rusqlite::Connection::open(h.checkpoint()).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1, "the fixture is a schema-1 checkpoint");
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'base_url'",
            [h.sandbox.base_url()],
        )
        .unwrap();
    }
    for (user, name, id) in fixture_rows(&h.checkpoint()) {
        let line = csv
            .lines()
            .find(|l| l.starts_with(&user.to_string()) && l.contains(&format!(",{name},")))
            .unwrap();
        let cells: Vec<&str> = line.split(',').collect();
        let fields = json!({"name": name, "property_type": cells[4],
            "num_occupants": cells[5].parse::<u64>().unwrap(), "town": cells[6], "zip_code": cells[7]});
        let Value::Object(fields) = fields else {
            unreachable!()
        };
        let building = Building {
            id,
            name,
            fields,
            created_at_ms: 0,
        };
        h.sandbox.insert_building(user, building);
    }
    (h, csv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_checkpoint_is_migrated_and_synced_without_a_single_post() {
    let (h, csv) = from_schema1().await;
    let rows_before = fixture_rows(&h.checkpoint());
    // The CRM changed one building: Lukas's Main House is now a Detached.
    let changed = csv.replace("Main House,Lukas,Bungalow", "Main House,Lukas,Detached");
    assert_ne!(changed, csv);
    let path = h.write("night.csv", changed);
    let before = h.state().requests;
    let out = h.run(&path, &["--json"]).await;
    h.expect_code(&out, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1), ("get_building", 1), ("update_building", 1)]),
        "unchanged schema-1 rows cost nothing; the changed one a GET and a PUT; no POST"
    );
    let lukas = Uuid::parse_str("11111111-1111-4111-8111-000000000002").unwrap();
    assert_eq!(
        only_building(&h, lukas).fields["property_type"],
        json!("Detached")
    );
    let conn = rusqlite::Connection::open(h.checkpoint()).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 2, "migrated");
    assert_eq!(
        fixture_rows(&h.checkpoint()),
        rows_before,
        "no row lost or changed"
    );
    let runs: i64 = conn
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 2, "the schema-1 run is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_property_id_run_over_an_old_checkpoint_attaches_keys_and_creates_nothing() {
    let (h, csv) = from_schema1().await;
    let keyed = |rename: bool| {
        let mut lines = csv.lines();
        let mut out = format!("{},property_id\n", lines.next().unwrap());
        for (n, line) in lines.enumerate() {
            let line = if rename {
                line.replace("Holiday Flat", "Ski Flat")
            } else {
                line.to_owned()
            };
            out.push_str(&format!("{line},PROP-{n}\n"));
        }
        out
    };
    let before = h.state().requests;
    let out = h
        .run(&h.write("keyed.csv", keyed(false)), &["--json"])
        .await;
    h.expect_code(&out, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1)]),
        "nothing created, nothing sent"
    );
    let keys: Vec<String> = rusqlite::Connection::open(h.checkpoint())
        .unwrap()
        .prepare("SELECT row_key FROM rows ORDER BY row_key")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        keys,
        [
            "property:PROP-0",
            "property:PROP-1",
            "property:PROP-2",
            "property:PROP-3"
        ]
    );

    // The key now carries the identity: a rename is an update of the same building.
    let anna = Uuid::parse_str("11111111-1111-4111-8111-000000000001").unwrap();
    let ids: Vec<Uuid> = h.state().buildings[&anna].iter().map(|b| b.id).collect();
    let before = h.state().requests;
    h.expect_code(&h.run(&h.write("renamed.csv", keyed(true)), &[]).await, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1), ("get_building", 1), ("update_building", 1)])
    );
    let state = h.state();
    assert_eq!(
        state.buildings[&anna]
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        ids
    );
    assert!(state.buildings[&anna].iter().any(|b| b.name == "Ski Flat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_property_id_column_later_creates_no_duplicates() {
    let h = Harness::with_users(2).await;
    h.expect_code(&h.run(&h.write("a.csv", property_csv(&[])), &[]).await, 0);
    let without: String = property_csv(&[])
        .lines()
        .map(|line| {
            let mut cells: Vec<&str> = line.split(',').collect();
            cells.remove(2);
            format!("{}\n", cells.join(","))
        })
        .collect();
    let before = h.state().requests;
    let out = h.run(&h.write("b.csv", without), &["--json"]).await;
    h.expect_code(&out, 0);
    assert_eq!(
        delta(&h, &before),
        counts(&[("token", 1)]),
        "matched by name"
    );
    assert_eq!(summary(&out)["rows"]["vanished"], 0);
    h.assert_no_duplicates_and_map_matches();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_existing_never_adopts_a_building_another_row_owns() {
    let h = Harness::with_users(1).await;
    let one = format!(
        "user_id,external_user_id,property_id,building_name\n{},CRM-0,P-1,Home\n",
        user(0)
    );
    h.expect_code(&h.run(&h.write("one.csv", &one), &[]).await, 0);
    // A second property of the same name: the existing "Home" belongs to P-1.
    let two = format!("{one}{},CRM-0,P-2,Home\n", user(0));
    let out = h
        .run(&h.write("two.csv", two), &["--adopt-existing", "--json"])
        .await;
    h.expect_code(&out, 0);
    assert_eq!(summary(&out)["rows"]["created"], 1, "{}", out.stderr);
    assert_eq!(summary(&out)["rows"]["adopted_existing"], 0);
    let ids: std::collections::BTreeSet<Option<String>> = h
        .checkpoint_rows()
        .into_iter()
        .map(|r| r.building_id)
        .collect();
    assert_eq!(ids.len(), 2, "two rows, two buildings: {ids:?}");
}

/// The schema-1 fixture with a row in each unfinished state, written in schema 1's own
/// columns and states as the schema-1 release left them: Anna's Holiday Flat `posting` (the
/// release was killed while its POST was in flight; the building exists), Lukas's Main
/// House `unresolved` (its one building exists), Maria's Home `failed` permanently with
/// an unchanged input (no building). Returns the harness, the CSV and the buildings' ids.
async fn from_schema1_with_unfinished_rows() -> (Harness, String, BTreeMap<String, Uuid>) {
    let (h, csv) = from_schema1().await;
    let ids: BTreeMap<String, Uuid> = fixture_rows(&h.checkpoint())
        .into_iter()
        .map(|(user, name, id)| (format!("{user} {name}"), id))
        .collect();
    let conn = rusqlite::Connection::open(h.checkpoint()).unwrap();
    let unfinished = [
        ("1", "Holiday Flat", "posting", None, None, 0),
        (
            "2",
            "Main House",
            "unresolved",
            None,
            Some("2 buildings named Main House"),
            0,
        ),
        (
            "3",
            "Home",
            "failed",
            Some(404),
            Some("user does not exist (HTTP 404)"),
            1,
        ),
    ];
    for (user, name, state, status, error, permanent) in unfinished {
        let user = format!("11111111-1111-4111-8111-00000000000{user}");
        let changed = conn
            .execute(
                "UPDATE rows SET state = ?3, building_id = NULL, http_status = ?4, error = ?5, \
                 permanent = ?6 WHERE user_id = ?1 AND building_name = ?2",
                rusqlite::params![user, name, state, status, error, permanent],
            )
            .unwrap();
        assert_eq!(changed, 1, "{user} {name}");
    }
    drop(conn);
    let maria = Uuid::parse_str("11111111-1111-4111-8111-000000000003").unwrap();
    let home = ids[&format!("{maria} Home")];
    assert!(
        h.sandbox.delete_building(maria, home),
        "a failed row has no building"
    );
    (h, csv, ids)
}

/// `(state, building_id)` of every row, keyed `"<user> <building name>"`.
fn row_states(h: &Harness) -> BTreeMap<String, (String, Option<String>)> {
    h.checkpoint_rows()
        .into_iter()
        .map(|r| {
            let key = format!("{} {}", r.user_id, r.building_name);
            (key, (r.state, r.building_id))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_checkpoint_with_posting_unresolved_and_failed_rows_is_migrated_and_resumed() {
    let (h, csv, ids) = from_schema1_with_unfinished_rows().await;
    let path = h.write("night.csv", &csv);
    let before = h.state().requests;
    let out = h.run(&path, &["--json"]).await;
    // The failed row is not retried while its input is unchanged: exit 1.
    h.expect_code(&out, 1);
    let sent = delta(&h, &before);
    assert_eq!(
        sent.get("create_building"),
        None,
        "nothing re-posted: {sent:?}"
    );
    assert!(sent.contains_key("list_buildings"), "verified: {sent:?}");
    let rows = row_states(&h);
    let done = |key: &str| ("done".to_owned(), Some(ids[key].to_string()));
    for key in [
        "11111111-1111-4111-8111-000000000001 Main House",
        "11111111-1111-4111-8111-000000000001 Holiday Flat",
        "11111111-1111-4111-8111-000000000002 Main House",
    ] {
        assert_eq!(rows[key], done(key), "{key}: {rows:?}");
    }
    let maria = "11111111-1111-4111-8111-000000000003 Home";
    assert_eq!(rows[maria], ("failed".to_owned(), None), "{rows:?}");
    let version: i64 = rusqlite::Connection::open(h.checkpoint())
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 2, "migrated");

    // Asked to, the failed row is retried, and only it gets a building.
    let before = h.state().requests;
    h.expect_code(&h.run(&path, &["--retry-failed"]).await, 0);
    assert_eq!(delta(&h, &before).get("create_building"), Some(&1));
    assert_eq!(row_states(&h)[maria].0, "done");
    h.assert_no_duplicates_and_map_matches();
}
