//! What to do with each input row, decided from the row and its checkpoint history.
//!
//! Pure functions: the dry run and the real run share them, so the plan a dry run prints
//! is exactly what the run then does.
//!
//! Sync: a done row costs nothing unless its user payload differs from the one applied
//! (`users.payload`) or its building payload differs from the one applied
//! (`rows.building_payload`, see `applied_building`); both are in the plan row, so the
//! skip path needs no query of its own.
//!
//! The bodies a row is sent as are built here too (`user_payload`, `building_payload`):
//! staging stores them (see [`Planner`]), so the checkpoint never builds an API body.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::checkpoint::outcome::Skip;
use crate::checkpoint::row::{PlannedRow, State, fingerprint};
use crate::checkpoint::stage::Planner;
use crate::input::Row;

/// Operator choices that change the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Retry rows that failed permanently even if their input did not change.
    pub retry_failed: bool,
    /// Work only on rows that failed or are unresolved.
    pub only_failed: bool,
    /// `--create-users`: create the Podero user of a CRM id that is not found.
    pub create_users: bool,
}

impl Planner for Options {
    fn payloads(&self, row: &Row) -> (String, String) {
        (user_payload(row), building_payload(row))
    }

    fn skip(&self, row: &PlannedRow) -> Option<Skip> {
        match decide(row, *self) {
            Action::Skip(skip) => Some(skip),
            Action::Work { .. } => None,
        }
    }

    fn create_users(&self) -> bool {
        self.create_users
    }
}

/// The PUT body: `external_user_id` plus the optional user columns.
pub(crate) fn user_payload(row: &Row) -> String {
    let mut body: Map<String, Value> = row.user_fields.clone();
    body.insert(
        "external_user_id".into(),
        Value::String(row.external_user_id.clone()),
    );
    Value::Object(body).to_string()
}

/// The POST body: `name` plus the optional building columns; empty for a user-only row.
pub(crate) fn building_payload(row: &Row) -> String {
    if row.building_name.is_empty() {
        return String::new();
    }
    let mut body: Map<String, Value> = row.building_fields.clone();
    body.insert("name".into(), Value::String(row.building_name.clone()));
    Value::Object(body).to_string()
}

/// The building payload last applied to the row's building, if known. Schema 1 did not
/// record it: then the fingerprint of the input last worked on decides. If it equals the
/// fingerprint of (the applied user payload, or this run's) with this run's building
/// payload, the building input did not change since, so this run's payload counts as
/// applied (see `migrations/002_sync.sql`).
pub(crate) fn applied_building(row: &PlannedRow) -> Option<String> {
    let prior = row.prior.as_ref()?;
    if let Some(applied) = &prior.building_payload {
        return Some(applied.clone());
    }
    let user = row.user_applied.as_deref().unwrap_or(&row.user_payload);
    let unchanged = prior.fingerprint == row.fingerprint
        || prior.fingerprint == fingerprint(user, &row.building_payload);
    unchanged.then(|| row.building_payload.clone())
}

/// What happens to a building for a row that is worked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BuildingStep {
    /// The building exists already.
    Keep,
    /// POST it.
    Create,
    /// A previous POST's outcome is unknown: look before re-sending.
    Resolve,
    /// The building exists and its fields changed: GET it, overlay the row's fields, PUT.
    Update,
    /// A user-only row: no building.
    NoBuilding,
}

/// The decision for one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// No call in this run, for this reason.
    Skip(Skip),
    /// Worked on: `put` when the user payload differs from the one applied.
    Work {
        /// PUT the user first.
        put: bool,
        /// What to do about the building.
        building: BuildingStep,
    },
}

/// The building step of a row the checkpoint does not know.
fn initial_step(row: &PlannedRow) -> BuildingStep {
    if row.building_name.is_empty() {
        BuildingStep::NoBuilding
    } else {
        BuildingStep::Create
    }
}

/// Decides one row.
pub(crate) fn decide(row: &PlannedRow, options: Options) -> Action {
    let put = row.user_applied.as_deref() != Some(row.user_payload.as_str());
    let Some(prior) = &row.prior else {
        return if options.only_failed {
            Action::Skip(Skip::NotSelected)
        } else {
            Action::Work {
                put,
                building: initial_step(row),
            }
        };
    };
    let troubled = matches!(prior.state, State::Failed | State::Unresolved);
    if options.only_failed && !troubled {
        return Action::Skip(Skip::NotSelected);
    }
    if row.lookup {
        // Its customer is not known yet: it is looked up whatever happened before (an
        // earlier "not found" may be found now, or created with --create-users), and the
        // row is decided again under the user's id (`worker::customer`).
        return Action::Work {
            put,
            building: initial_step(row),
        };
    }
    let building = match (prior.state, prior.building_id) {
        _ if row.building_name.is_empty() => BuildingStep::NoBuilding,
        (State::Posting | State::Unresolved, _) => BuildingStep::Resolve,
        (_, Some(_)) if applied_building(row).as_ref() != Some(&row.building_payload) => {
            BuildingStep::Update
        }
        (_, Some(_)) => BuildingStep::Keep,
        (_, None) => BuildingStep::Create,
    };
    let retry_requested = options.retry_failed || options.only_failed;
    let changed = prior.fingerprint != row.fingerprint;
    if prior.state == State::Failed && prior.permanent && !changed && !retry_requested {
        return Action::Skip(Skip::Failed);
    }
    let user_only_done = building == BuildingStep::NoBuilding && prior.state == State::Done;
    if (building == BuildingStep::Keep || user_only_done) && !put {
        return Action::Skip(Skip::Done);
    }
    Action::Work { put, building }
}

/// All rows of one user that need work: the user is updated once, then each building.
#[derive(Clone, Debug)]
pub(crate) struct UserJob {
    /// The user (nil while `lookup` is set).
    pub user_id: Uuid,
    /// The CRM id of a customer the checkpoint does not know yet: found or created first
    /// (`customer`).
    pub lookup: Option<String>,
    /// The checkpoint has no record of that CRM id (see `PlannedRow::new_customer`).
    pub new_customer: bool,
    /// The PUT body.
    pub user_payload: String,
    /// Whether the PUT is needed (the payload differs from the one applied).
    pub put: bool,
    /// The rows and what to do about each one's building.
    pub rows: Vec<(PlannedRow, BuildingStep)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::row::Prior;
    use uuid::Uuid;

    fn row(prior: Option<Prior>, applied: Option<&str>) -> PlannedRow {
        PlannedRow {
            line: 2,
            user_id: Uuid::nil(),
            lookup: false,
            new_customer: false,
            building_name: "Home".into(),
            property_id: None,
            row_key: "name:Home".into(),
            match_key: "name:Home".into(),
            external_user_id: "c1".into(),
            user_payload: r#"{"external_user_id":"c1"}"#.into(),
            building_payload: r#"{"name":"Home"}"#.into(),
            fingerprint: 7,
            prior,
            user_applied: applied.map(str::to_owned),
        }
    }

    fn prior(state: State, building: bool, permanent: bool, fingerprint: i64) -> Option<Prior> {
        Some(Prior {
            state,
            building_id: building.then(Uuid::nil),
            permanent,
            fingerprint,
            building_payload: Some(r#"{"name":"Home"}"#.into()),
        })
    }

    const APPLIED: Option<&str> = Some(r#"{"external_user_id":"c1"}"#);
    const NONE: Options = Options {
        retry_failed: false,
        only_failed: false,
        create_users: false,
    };

    #[test]
    fn new_rows_get_put_and_post() {
        let action = decide(&row(None, None), NONE);
        assert_eq!(
            action,
            Action::Work {
                put: true,
                building: BuildingStep::Create
            }
        );
    }

    #[test]
    fn done_rows_cost_nothing_unless_the_user_changed() {
        let done = prior(State::Done, true, false, 7);
        assert_eq!(
            decide(&row(done.clone(), APPLIED), NONE),
            Action::Skip(Skip::Done)
        );
        let changed = decide(&row(done, Some(r#"{"external_user_id":"old"}"#)), NONE);
        assert_eq!(
            changed,
            Action::Work {
                put: true,
                building: BuildingStep::Keep
            }
        );
    }

    #[test]
    fn unknown_outcomes_are_resolved_never_blindly_reposted() {
        for state in [State::Posting, State::Unresolved] {
            let action = decide(&row(prior(state, false, false, 7), APPLIED), NONE);
            assert_eq!(
                action,
                Action::Work {
                    put: false,
                    building: BuildingStep::Resolve
                }
            );
        }
    }

    #[test]
    fn permanent_failures_wait_for_changed_input_or_retry_failed() {
        let failed = prior(State::Failed, false, true, 7);
        assert_eq!(
            decide(&row(failed.clone(), None), NONE),
            Action::Skip(Skip::Failed)
        );
        let retry = Options {
            retry_failed: true,
            ..NONE
        };
        assert!(matches!(
            decide(&row(failed, None), retry),
            Action::Work { .. }
        ));
        let changed = prior(State::Failed, false, true, 8);
        assert!(matches!(
            decide(&row(changed, None), NONE),
            Action::Work { .. }
        ));
        let transient = prior(State::Failed, false, false, 7);
        assert!(matches!(
            decide(&row(transient, None), NONE),
            Action::Work { .. }
        ));
    }

    #[test]
    fn only_failed_selects_failed_and_unresolved_rows() {
        let only = Options {
            only_failed: true,
            ..NONE
        };
        assert_eq!(
            decide(&row(None, None), only),
            Action::Skip(Skip::NotSelected)
        );
        let done = prior(State::Done, true, false, 7);
        assert_eq!(
            decide(&row(done, None), only),
            Action::Skip(Skip::NotSelected)
        );
        let failed = prior(State::Failed, false, true, 7);
        assert!(matches!(
            decide(&row(failed, None), only),
            Action::Work { .. }
        ));
    }

    #[test]
    fn a_changed_building_is_updated_and_an_unchanged_one_costs_nothing() {
        let mut changed = row(prior(State::Done, true, false, 7), APPLIED);
        changed.building_payload = r#"{"name":"Home","property_type":"Bungalow"}"#.into();
        assert_eq!(
            decide(&changed, NONE),
            Action::Work {
                put: false,
                building: BuildingStep::Update
            }
        );
        let same = row(prior(State::Done, true, false, 7), APPLIED);
        assert_eq!(decide(&same, NONE), Action::Skip(Skip::Done));
    }

    #[test]
    fn schema_1_rows_infer_the_applied_building_from_the_fingerprint() {
        let legacy = |fingerprint: i64, building: &str| {
            let mut r = row(prior(State::Done, true, false, fingerprint), APPLIED);
            r.building_payload = building.into();
            r.fingerprint = super::fingerprint(&r.user_payload, building);
            if let Some(p) = r.prior.as_mut() {
                p.building_payload = None;
            }
            r
        };
        let home = r#"{"name":"Home"}"#;
        let unchanged = legacy(fingerprint(r#"{"external_user_id":"c1"}"#, home), home);
        assert_eq!(decide(&unchanged, NONE), Action::Skip(Skip::Done));
        let changed = legacy(
            fingerprint(r#"{"external_user_id":"c1"}"#, home),
            r#"{"name":"Home","num_occupants":3}"#,
        );
        assert!(matches!(
            decide(&changed, NONE),
            Action::Work {
                building: BuildingStep::Update,
                ..
            }
        ));
    }

    #[test]
    fn a_lookup_row_is_always_looked_up_even_after_a_permanent_failure() {
        let mut failed = row(prior(State::Failed, false, true, 7), None);
        failed.lookup = true;
        assert_eq!(
            decide(&failed, NONE),
            Action::Work {
                put: true,
                building: BuildingStep::Create
            }
        );
        let only = Options {
            only_failed: true,
            ..NONE
        };
        let mut fresh = row(None, None);
        fresh.lookup = true;
        assert_eq!(decide(&fresh, only), Action::Skip(Skip::NotSelected));
    }

    #[test]
    fn user_only_rows_put_the_user_and_never_touch_a_building() {
        let mut fresh = row(None, None);
        fresh.building_name = String::new();
        fresh.building_payload = String::new();
        assert_eq!(
            decide(&fresh, NONE),
            Action::Work {
                put: true,
                building: BuildingStep::NoBuilding
            }
        );
        let mut done = row(prior(State::Done, false, false, 7), APPLIED);
        done.building_name = String::new();
        assert_eq!(decide(&done, NONE), Action::Skip(Skip::Done));
    }
}
