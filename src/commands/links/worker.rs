//! One user's links: list the heat pumps once, then per building: connected (nothing to
//! send, ever), assign an unassigned connected heat pump, keep a still valid link, or
//! record the intent and create a session. Workers never touch SQLite: they send
//! [`Msg`]s to the writer (waiting for the intent's commit) and return outcomes.

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::config::SessionDefaults;
use super::targets::{Target, UserJob};
use crate::api::connect::{HeatPump, Session};
use crate::api::{CallError, Client, Failure};
use crate::checkpoint::links::{Msg, Prior};

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

/// Why the run must stop.
#[derive(Debug)]
pub enum Halt {
    /// Credentials refused, 403, redirect.
    Fatal(CallError),
    /// The checkpoint could not record an intent.
    Checkpoint(String),
}

/// A job's outcomes, and a stop request if any.
#[derive(Debug, Default)]
pub struct JobResult {
    /// Outcomes of the buildings handled (the rest keep their state).
    pub outcomes: Vec<Outcome>,
    /// Set when the run must stop.
    pub halt: Option<Halt>,
}

/// What every worker shares.
pub struct Context<'a> {
    /// The API client.
    pub client: &'a Client,
    /// The writer.
    pub writer: &'a mpsc::UnboundedSender<Msg>,
    /// The shared session fields.
    pub defaults: &'a SessionDefaults,
    /// `YYYY-MM-DD` (UTC).
    pub today: &'a str,
}

/// Processes one user's buildings.
pub async fn process(ctx: &Context<'_>, job: UserJob) -> JobResult {
    let mut result = JobResult::default();
    if job.targets.iter().all(|t| t.prior == Prior::Connected) {
        result.outcomes = job
            .targets
            .into_iter()
            .map(|t| connected(t, false, false))
            .collect();
        return result;
    }
    let pumps = match ctx.client.list_heat_pumps(job.user_id).await {
        Ok(pumps) => pumps,
        Err(error) if error.failure == Failure::Fatal => {
            return JobResult {
                outcomes: Vec::new(),
                halt: Some(Halt::Fatal(error)),
            };
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
    let result = match &target.prior {
        Prior::Connected => LinkResult::Connected {
            newly: false,
            assigned: false,
        },
        Prior::Live(expires) if crate::date::still_valid(expires, ctx.today) => {
            LinkResult::StillValid
        }
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
    if target.prior == Prior::Connected {
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
    match &target.prior {
        Prior::Live(expires) if crate::date::still_valid(expires, ctx.today) => Ok(Outcome {
            target,
            result: LinkResult::StillValid,
        }),
        Prior::Live(_) => create(ctx, target, true).await,
        _ => create(ctx, target, false).await,
    }
}

fn record_connected(ctx: &Context<'_>, target: &Target, heat_pump: Uuid, assigned: bool) {
    let _ = ctx.writer.send(Msg::Connected {
        user: target.user_id,
        building: target.building_id,
        heat_pump,
        assigned,
    });
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
    let id = intent(ctx, &target).await?;
    match ctx
        .client
        .create_session(&body(ctx.defaults, &target))
        .await
    {
        Ok(session) => {
            let _ = ctx.writer.send(Msg::Created {
                id,
                building: target.building_id,
                session: session.clone(),
            });
            Ok(Outcome {
                target,
                result: LinkResult::Created { session, renewed },
            })
        }
        Err(error) if error.failure == Failure::Fatal => Err(Halt::Fatal(error)),
        Err(error) => {
            let state = if error.failure == Failure::Ambiguous {
                "unknown"
            } else {
                "failed"
            };
            let message = redact_links(&format!("creating the Connect link: {error}"));
            let _ = ctx.writer.send(Msg::NotCreated {
                id,
                state,
                status: error.status,
                error: message.clone(),
            });
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

async fn intent(ctx: &Context<'_>, target: &Target) -> Result<i64, Halt> {
    let (reply, committed) = oneshot::channel();
    let stopped = || Halt::Checkpoint("the checkpoint writer stopped".into());
    ctx.writer
        .send(Msg::Intent {
            user: target.user_id,
            building: target.building_id,
            building_name: target.building_name.clone(),
            reply,
        })
        .map_err(|_| stopped())?;
    committed
        .await
        .map_err(|_| stopped())?
        .map_err(Halt::Checkpoint)
}

/// Links and session references cut out of an error text (see
/// [`crate::api::connect::redact_links`]; every error body the client reads is redacted).
pub use crate::api::connect::redact_links;

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
