//! The users of the organization as the API shows them: create, read, PUT, find by
//! external id, list; and `POST /__sandbox/users`, which seeds users that existed before.
//!
//! * `POST .../users` validates like django-ninja (422 for a missing or mistyped field,
//!   a `role` outside `user`/`admin`/`staff`, `zip_code` not a string) and answers **200**
//!   with the user (the guide's example is a 200; buildings default to 201, so a client
//!   that hard-codes one status for every POST fails one of them). An e-mail another user
//!   holds (case-insensitively) answers `{"detail": "..."}` with the status of
//!   [`super::Faults::email_taken_status`] (400 by default: the real one is undocumented).
//!   `external_user_id` is **not** unique: a second create with the same CRM id makes a
//!   second user, as the real server is assumed to. After the commit, the same faults as
//!   a POST building apply (drop, stall, 500).
//! * `GET .../users/by-ext-id/{id}` (percent-decoded): one holder → 200; none → 404
//!   `{"detail": "Not Found"}`; several → Django's plain HTML 500 (`get()` raising
//!   `MultipleObjectsReturned`), every time.
//! * `GET .../users` streams a bare JSON array, [`LIST_CHUNK`] users per chunk, taking the
//!   state lock once per chunk: 100k users never become one string, and other requests
//!   go on while it is sent. It is not a snapshot: a user created while the list is sent
//!   appears if its id sorts after the last one sent. `num_heat_pumps` counts the heat
//!   pumps the simulator holds for the user.

use std::convert::Infallible;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{Value, json};
use uuid::Uuid;

use super::call::{Answer, Call, Shared, Streamed, not_found, percent_decode, validated};
use super::faults::AfterCommit;
use super::state::{SeedUser, State, User, UserError};
use super::validate::{self, Problem};

/// Users serialized per chunk of the list (one state lock each).
pub(crate) const LIST_CHUNK: usize = 500;

/// The message of a taken e-mail.
const EMAIL_TAKEN: &str = "A user with this email already exists in this organization.";

/// `POST .../users`.
pub(crate) fn create_user(shared: &Shared, call: &Call) -> Result<Answer, Answer> {
    let fields = validated(shared, call, validate::user_create)?;
    let created = shared.state().create_user(fields);
    let user = created.map_err(|_| {
        let status = shared.faults().email_taken_status();
        Answer::detail(status, EMAIL_TAKEN)
    })?;
    let after = shared.faults().after_commit();
    let mut answer = match after {
        AfterCommit::Fail500 => Answer::html(500),
        _ => Answer::json(200, &user_json(shared.config.org_id, &user, 0)),
    };
    answer.after = after;
    answer.created_user = Some(user.id);
    Ok(answer)
}

/// `GET .../users/by-ext-id/{external_id}`.
pub(crate) fn user_by_ext_id(shared: &Shared, raw: &str) -> Answer {
    let external_id = percent_decode(raw);
    let state = shared.state();
    match state.users_by_external_id(&external_id) {
        [] => not_found(),
        [id] => state
            .snap
            .users
            .get(id)
            .map_or_else(not_found, |u| ok_user(shared, &state, u)),
        _ => Answer::django_500(),
    }
}

/// `GET .../users/{user_id}`.
pub(crate) fn get_user(shared: &Shared, user: Uuid) -> Answer {
    let state = shared.state();
    let found = state.snap.users.get(&user);
    found.map_or_else(not_found, |u| ok_user(shared, &state, u))
}

/// `PUT .../users/{user_id}` (partial). A taken e-mail is a 422, as it has always been
/// here (the create's status knob does not apply).
pub(crate) fn put_user(shared: &Shared, call: &Call, id: Uuid) -> Result<Answer, Answer> {
    let fields = validated(shared, call, validate::user_update)?;
    let mut state = shared.state();
    let pumps = state.heat_pump_count(id);
    match state.update_user(id, fields) {
        Ok(user) => Ok(Answer::json(
            200,
            &user_json(shared.config.org_id, user, pumps),
        )),
        Err(UserError::NotFound) => Err(not_found()),
        Err(UserError::EmailTaken) => {
            let problem = Problem::body(
                "value_error",
                "email",
                "A user with this email already exists",
            );
            Err(Answer::json(422, &validate::detail(&[problem])))
        }
    }
}

/// `GET .../users`: streamed by [`UserList`].
pub(crate) fn list_users() -> Answer {
    Answer::streamed_json(200, Streamed::Users)
}

fn ok_user(shared: &Shared, state: &State, user: &User) -> Answer {
    let pumps = state.heat_pump_count(user.id);
    Answer::json(200, &user_json(shared.config.org_id, user, pumps))
}

/// A user as the API returns it.
pub(crate) fn user_json(org: Uuid, user: &User, num_heat_pumps: usize) -> Value {
    let field = |name: &str| user.fields.get(name).cloned().unwrap_or(Value::Null);
    let country = if user.fields.contains_key("country_iso2") {
        field("country_iso2")
    } else {
        field("country")
    };
    json!({
        "id": user.id,
        "organization_id": org,
        "external_user_id": user.external_user_id,
        "role": user.role,
        "email": user.email,
        "first_name": field("first_name"),
        "last_name": field("last_name"),
        "street_and_number": field("street_and_number"),
        "street_add_info": field("street_add_info"),
        "zip_code": field("zip_code"),
        "town": field("town"),
        "country": country,
        "latitude": field("latitude"),
        "longitude": field("longitude"),
        "location_last_updated": null,
        "is_onboarded": false,
        "num_inverters": 0,
        "num_heat_pumps": num_heat_pumps,
        "num_electric_vehicles": 0,
        "num_wallboxes": 0,
    })
}

/// The body of `GET .../users`: `[`, the users in id order [`LIST_CHUNK`] at a time
/// (one state lock per chunk, resuming after the last id sent), `]`.
#[derive(Debug)]
pub(crate) struct UserList {
    shared: Arc<Shared>,
    /// The last user sent (`None`: none yet).
    after: Option<Uuid>,
    /// Whether `[` has been sent.
    opened: bool,
    /// Whether `]` has been sent.
    done: bool,
}

impl UserList {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        UserList {
            shared,
            after: None,
            opened: false,
            done: false,
        }
    }

    /// The next chunk of JSON text, `None` after the closing `]`.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let org = self.shared.config.org_id;
        let state = self.shared.state();
        let from = self.after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::with_capacity(LIST_CHUNK * 512);
        if !self.opened {
            out.push(b'[');
        }
        let mut sent = 0;
        for user in state
            .snap
            .users
            .range((from, Bound::Unbounded))
            .map(|(_, u)| u)
        {
            if sent == LIST_CHUNK {
                break;
            }
            if self.opened || sent > 0 {
                out.push(b',');
            }
            let value = user_json(org, user, state.heat_pump_count(user.id));
            // Writing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, &value);
            self.after = Some(user.id);
            sent += 1;
        }
        self.opened = true;
        if sent < LIST_CHUNK {
            out.push(b']');
            self.done = true;
        }
        Some(Bytes::from(out))
    }
}

impl Body for UserList {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().next_chunk().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// `POST /__sandbox/users`: one [`SeedUser`] object or an array of them, all or none;
/// answers `{"ids": [...]}` in the order given.
pub(crate) fn admin_users(shared: &Shared, call: &Call) -> Answer {
    let seeds = match serde_json::from_slice::<Value>(&call.body) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<SeedUser>, _>>(),
        Ok(item) => serde_json::from_value(item).map(|one| vec![one]),
        Err(e) => Err(e),
    };
    let seeds = match seeds {
        Ok(seeds) => seeds,
        Err(e) => return Answer::detail(400, &format!("invalid users JSON: {e}")),
    };
    match shared.state().seed_users(seeds) {
        Ok(ids) => Answer::json(200, &json!({ "ids": ids })),
        Err(e) => Answer::detail(400, &e),
    }
}
