//! One user's links: list the heat pumps once, then per building: connected (nothing to
//! send, ever), assign an unassigned connected heat pump, keep a still valid link, or
//! record the intent and create a session. Workers never touch SQLite: they tell the
//! writer (waiting for the intent's commit) and return outcomes to the engine.

use serde_json::{Value, json};
use uuid::Uuid;

use super::config::SessionDefaults;
use crate::api::connect::{HeatPump, Session, redact_links};
use crate::api::{CallError, Client, Directory, Failure};
use crate::checkpoint::links::{LinkHistory, NewLink, NotCreated, Target};
use crate::checkpoint::writer::Sender;
use crate::engine::{Halt, JobResult};

/// All of one user's buildings in the file (adjacent in the staged pages).
#[derive(Debug)]
pub struct LinkJob {
    /// The user.
    pub user_id: Uuid,
    /// The buildings.
    pub targets: Vec<Target>,
}

impl From<Vec<Target>> for LinkJob {
    fn from(targets: Vec<Target>) -> Self {
        LinkJob {
            user_id: targets[0].user_id,
            targets,
        }
    }
}

/// What became of one building.
#[derive(Debug)]
pub enum LinkResult {
    /// A session was created; `renewed` when it replaces an expired link.
    Created {
        /// The session (its id and link go only to `--out` and the checkpoint).
        session: Session,
        /// It replaces an expired link.
        renewed: bool,
    },
    /// The live link is still valid: not re-sent.
    StillValid,
    /// The customer connected a heat pump to this building.
    Connected {
        /// First seen in this run.
        newly: bool,
        /// This run assigned the user's unassigned heat pump to the building.
        assigned: bool,
    },
    /// No link could be created.
    Failed {
        /// The HTTP status, if any.
        status: Option<u16>,
        /// Why, and what to do.
        message: String,
    },
}

/// One building's outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The building.
    pub target: Target,
    /// What happened.
    pub result: LinkResult,
}

/// What every worker shares.
pub struct Context<'a> {
    /// The API client.
    pub client: &'a Client,
    /// The writer.
    pub writer: &'a Sender,
    /// The shared session fields.
    pub defaults: &'a SessionDefaults,
    /// `YYYY-MM-DD` (UTC).
    pub today: &'a str,
    /// Users with heat pumps, from the user list; `None`: ask each customer.
    pub owners: Option<&'a Directory>,
}

/// Processes one user's buildings.
pub async fn process(ctx: &Context<'_>, job: LinkJob) -> JobResult<Outcome> {
    let mut result = JobResult::default();
    if job
        .targets
        .iter()
        .all(|t| t.history == LinkHistory::Connected)
    {
        result.outcomes = job
            .targets
            .into_iter()
            .map(|t| connected(t, false, false))
            .collect();
        return result;
    }
    let pumps = match ctx.owners {
        // The list showed no heat pump: nothing to ask, and nothing to assign.
        Some(owners) if !owners.has_heat_pumps(job.user_id) => Ok(Vec::new()),
        _ => ctx.client.list_heat_pumps(job.user_id).await,
    };
    let pumps = match pumps {
        Ok(pumps) => pumps,
        Err(error) if error.failure == Failure::Fatal => {
            return JobResult::halted(Halt::Fatal(error));
        }
        Err(error) => {
            result.outcomes = job
                .targets
                .into_iter()
                .map(|t| unlisted(ctx, t, &error))
                .collect();
            return result;
        }
    };
    let single = job.targets.len() == 1;
    for target in job.targets {
        match building(ctx, target, &pumps, single).await {
            Ok(outcome) => result.outcomes.push(outcome),
            Err(halt) => {
                result.halt = Some(halt);
                break;
            }
        }
    }
    result
}

fn connected(target: Target, newly: bool, assigned: bool) -> Outcome {
    Outcome {
        target,
        result: LinkResult::Connected { newly, assigned },
    }
}

/// The heat pumps could not be listed: a valid link stays valid, nothing new is created
/// (the customer may have connected already).
fn unlisted(ctx: &Context<'_>, target: Target, error: &CallError) -> Outcome {
    let result = match &target.history {
        LinkHistory::Connected => LinkResult::Connected {
            newly: false,
            assigned: false,
        },
        LinkHistory::Live(expires) if still_valid(expires, ctx.today) => LinkResult::StillValid,
        _ => LinkResult::Failed {
            status: error.status,
            message: format!(
                "listing the user's heat pumps failed ({error}), so whether the customer \
                 connected is unknown; no link created. Run again later"
            ),
        },
    };
    Outcome { target, result }
}

async fn building(
    ctx: &Context<'_>,
    target: Target,
    pumps: &[HeatPump],
    single: bool,
) -> Result<Outcome, Halt> {
    if target.history == LinkHistory::Connected {
        return Ok(connected(target, false, false));
    }
    let authenticated = || pumps.iter().filter(|p| p.is_authenticated);
    if let Some(pump) = authenticated().find(|p| p.building == Some(target.building_id)) {
        record_connected(ctx, &target, pump.id, false);
        return Ok(connected(target, true, false));
    }
    if single && let Some(pump) = authenticated().find(|p| p.building.is_none()) {
        return assign(ctx, target, pump.id).await;
    }
    match &target.history {
        LinkHistory::Live(expires) if still_valid(expires, ctx.today) => Ok(Outcome {
            target,
            result: LinkResult::StillValid,
        }),
        LinkHistory::Live(_) => create(ctx, target, true).await,
        _ => create(ctx, target, false).await,
    }
}

fn record_connected(ctx: &Context<'_>, target: &Target, heat_pump: Uuid, assigned: bool) {
    ctx.writer.connected(target, heat_pump, assigned);
}

/// The user's only building gets the user's connected, unassigned heat pump.
async fn assign(ctx: &Context<'_>, target: Target, pump: Uuid) -> Result<Outcome, Halt> {
    match ctx
        .client
        .assign_heat_pump(target.user_id, pump, target.building_id)
        .await
    {
        Ok(()) => {
            record_connected(ctx, &target, pump, true);
            Ok(connected(target, true, true))
        }
        Err(error) if error.failure == Failure::Fatal => Err(Halt::Fatal(error)),
        Err(error) => Ok(Outcome {
            result: LinkResult::Failed {
                status: error.status,
                message: format!(
                    "the customer connected a heat pump without a building, and assigning it \
                     to this building failed ({error}); no link created. Run again later"
                ),
            },
            target,
        }),
    }
}

/// Intent (committed), then the session POST, then its outcome to the writer.
async fn create(ctx: &Context<'_>, target: Target, renewed: bool) -> Result<Outcome, Halt> {
    let id = ctx.writer.link_intent(&target).await?;
    match ctx
        .client
        .create_session(&body(ctx.defaults, &target))
        .await
    {
        Ok(session) => {
            let link = NewLink {
                session_id: session.id,
                link: session.authentication_url.clone(),
                expiration_date: session.expiration_date.clone(),
            };
            ctx.writer.link_created(id, target.building_id, link);
            Ok(Outcome {
                target,
                result: LinkResult::Created { session, renewed },
            })
        }
        Err(error) if error.failure == Failure::Fatal => Err(Halt::Fatal(error)),
        Err(error) => {
            let how = if error.failure == Failure::Ambiguous {
                NotCreated::Unknown
            } else {
                NotCreated::Failed
            };
            let message = redact_links(&format!("creating the Connect link: {error}"));
            ctx.writer
                .link_not_created(id, how, error.status, message.clone());
            Ok(Outcome {
                target,
                result: LinkResult::Failed {
                    status: error.status,
                    message,
                },
            })
        }
    }
}

/// Whether a link expiring on `expiration` (the server's text) still works on `today`.
/// A value that is not a date counts as expired: renewing costs one extra link, trusting
/// it could leave a customer with a dead one.
pub fn still_valid(expiration: &str, today: &str) -> bool {
    let day = expiration.get(..10).unwrap_or_default();
    crate::date::parse_date(day).is_some_and(|day| day.as_str() >= today)
}

/// The session body: the documented fields, then `--session-field`s.
pub fn body(defaults: &SessionDefaults, target: &Target) -> Value {
    let mut body = json!({
        "language": target.language,
        "price_zone_default": target.price_zone,
        "success_url": defaults.success_url,
        "cancel_url": defaults.cancel_url,
        "user_id": target.user_id,
        "building_id": target.building_id,
    });
    let object = body.as_object_mut().expect("an object");
    if defaults.smart_optimization {
        object.insert(
            "is_smart_optimization_active_default".into(),
            Value::Bool(true),
        );
    }
    for (key, value) in &defaults.extra {
        object.insert(key.clone(), value.clone());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_valid_through_its_expiration_date() {
        assert!(still_valid("2026-11-29", "2026-11-28"));
        assert!(still_valid("2026-11-28", "2026-11-28"));
        assert!(!still_valid("2026-11-27", "2026-11-28"));
        assert!(!still_valid("tomorrow", "2026-11-28"));
    }

    #[test]
    fn links_in_error_bodies_are_removed() {
        let text = "creating the Connect link: HTTP 409: exists: \
                    https://connect.podero.com?onboarding_session_id=5f0e (id onboarding_session_id=5f0e)";
        let redacted = redact_links(text);
        assert!(!redacted.contains("5f0e"), "{redacted}");
        assert!(redacted.starts_with("creating the Connect link: HTTP 409: exists:"));
        assert_eq!(
            redact_links("HTTP 422: language: bad"),
            "HTTP 422: language: bad"
        );
    }
}
