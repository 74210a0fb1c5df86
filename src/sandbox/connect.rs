//! The next onboarding step as the simulator sees it: device onboarding sessions
//! (Connect links) and heat pumps.
//!
//! * `POST /api/partners/v2.0/device-onboarding` (no org in the path) validates the
//!   documented enums strictly (the guides' `"fr"` and `"DE"` are 422s), requires the
//!   building to be the user's, and answers a session whose `expiration_date` is the
//!   simulator's today + 1 ("valid until the end of the next day"). Unknown body
//!   fields are *accepted* and kept in [`super::Session::extra`]: the device-type field's name
//!   is not published, so a client must be able to send fields nobody documented.
//! * The simulator's calendar is the real UTC date plus `day_offset`, which tests move
//!   ([`super::Sandbox::advance_days`]) to make links expire without waiting.
//! * Heat pumps appear only when a test says a customer connected
//!   ([`super::Sandbox::connect_heat_pump`]): there is no Connect UI here.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::call::{Answer, Call, Shared, json_body, not_found, parse_uuid};
use super::clock::{date_string, today_days};
use super::route::{Endpoint, Params};
use super::state::{HeatPump, Session};
use super::validate::{self, Problem};

/// Languages the session accepts.
pub const LANGUAGES: &[&str] = &["sv", "de", "en", "hu", "it", "et", "pl", "ro"];
/// Price zones the session accepts.
pub const PRICE_ZONES: &[&str] = &[
    "AT",
    "AT_HOURLY",
    "BE",
    "CH",
    "EE",
    "DE_LU",
    "HU",
    "IT_CNOR",
    "IT_CSUD",
    "IT_NORD",
    "IT_PUN",
    "IT_SARD",
    "IT_SICI",
    "IT_SUD",
    "PT",
    "RO",
    "SE_1",
    "SE_2",
    "SE_3",
    "SE_4",
    "UK",
];
/// Longest URL accepted.
const MAX_URL_CHARS: usize = 8000;

/// The session endpoints (already authenticated).
pub(crate) fn session(shared: &Shared, call: &Call, endpoint: Endpoint, params: &Params) -> Answer {
    let result = match endpoint {
        Endpoint::CreateSession => create_session(shared, call),
        _ => parse_uuid(shared, call, params.device.unwrap_or(""), "session_id")
            .and_then(|id| get_session(shared, id)),
    };
    result.unwrap_or_else(|answer| answer)
}

fn create_session(shared: &Shared, call: &Call) -> Result<Answer, Answer> {
    let body = json_body(shared, call)?;
    let mut session = check_session(&body).map_err(|problems| {
        for p in problems.iter().filter(|p| p.is_client_bug()) {
            shared.anomaly(
                call,
                &format!("{} at {}: {}", p.kind, p.loc.join("."), p.msg),
            );
        }
        Answer::json(422, &validate::detail(&problems))
    })?;
    let mut state = shared.state();
    if !state.snap.users.contains_key(&session.user) {
        return Err(not_found());
    }
    if let Some(building) = session.building
        && state.building_mut(session.user, building).is_none()
    {
        let problem = Problem::body(
            "value_error",
            "building_id",
            "The building does not belong to this user",
        );
        return Err(Answer::json(422, &validate::detail(&[problem])));
    }
    session.expiration_date = date_string(today_days(state.day_offset) + 1);
    state.snap.sessions.push(session.clone());
    drop(state);
    Ok(Answer::json(200, &session_json(&session)))
}

fn get_session(shared: &Shared, id: Uuid) -> Result<Answer, Answer> {
    let state = shared.state();
    let session = state.snap.sessions.iter().find(|s| s.id == id);
    session
        .map(|s| Answer::json(200, &session_json(s)))
        .ok_or_else(not_found)
}

/// Validates a session body; collects every problem, like django-ninja.
fn check_session(body: &Value) -> Result<Session, Vec<Problem>> {
    let Some(object) = body.as_object() else {
        return Err(vec![Problem::body(
            "model_attributes_type",
            "payload",
            "Input should be an object",
        )]);
    };
    let mut problems = Vec::new();
    let mut text = |name: &str, allowed: Option<&[&str]>| -> String {
        match object.get(name) {
            None => problems.push(Problem::body("missing", name, "Field required")),
            Some(Value::String(s)) => match allowed {
                Some(allowed) if !allowed.contains(&s.as_str()) => problems.push(Problem::body(
                    "enum",
                    name,
                    format!("Input should be one of {}", allowed.join(", ")),
                )),
                None if s.is_empty() || s.chars().count() > MAX_URL_CHARS => {
                    problems.push(Problem::body(
                        "string_too_long",
                        name,
                        format!("String should have 1 to {MAX_URL_CHARS} characters"),
                    ));
                }
                _ => return s.clone(),
            },
            Some(_) => problems.push(Problem::body(
                "string_type",
                name,
                "Input should be a string",
            )),
        }
        String::new()
    };
    let language = text("language", Some(LANGUAGES));
    let price_zone_default = text("price_zone_default", Some(PRICE_ZONES));
    let _ = (text("success_url", None), text("cancel_url", None));
    let user = uuid_field(object, "user_id", &mut problems).flatten();
    if user.is_none() && !object.contains_key("user_id") {
        problems.push(Problem::body("missing", "user_id", "Field required"));
    }
    let building = uuid_field(object, "building_id", &mut problems).flatten();
    let smart = match object.get("is_smart_optimization_active_default") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            let msg = "Input should be a valid boolean";
            problems.push(Problem::body(
                "bool_type",
                "is_smart_optimization_active_default",
                msg,
            ));
            None
        }
    };
    let (Some(user), true) = (user, problems.is_empty()) else {
        return Err(problems);
    };
    let known = [
        "language",
        "price_zone_default",
        "success_url",
        "cancel_url",
        "user_id",
        "building_id",
        "is_smart_optimization_active_default",
    ];
    let extra = object
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Session {
        id: Uuid::new_v4(),
        user,
        building,
        language,
        price_zone_default,
        smart_optimization: smart,
        expiration_date: String::new(),
        extra,
    })
}

/// A UUID body field: `None` absent, `Some(None)` null or invalid (problem noted).
fn uuid_field(
    object: &Map<String, Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<Option<Uuid>> {
    match object.get(name)? {
        Value::Null => Some(None),
        Value::String(s) if Uuid::parse_str(s).is_ok() => Some(Uuid::parse_str(s).ok()),
        _ => {
            problems.push(Problem::body(
                "uuid_parsing",
                name,
                "Input should be a valid UUID",
            ));
            Some(None)
        }
    }
}

fn session_json(session: &Session) -> Value {
    json!({
        "id": session.id,
        "authentication_url": format!("https://connect.podero.com?onboarding_session_id={}", session.id),
        "user": session.user,
        "expiration_date": session.expiration_date,
        "object_id": null,
        "external_metadata": {},
    })
}

/// `GET .../users/{user_id}/heat-pumps`: a bare array.
pub(crate) fn list_heat_pumps(shared: &Shared, user: Uuid) -> Answer {
    let state = shared.state();
    if !state.snap.users.contains_key(&user) {
        return not_found();
    }
    let pumps = state
        .snap
        .heat_pumps
        .get(&user)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Answer::json(
        200,
        &Value::Array(pumps.iter().map(heat_pump_json).collect()),
    )
}

fn heat_pump_json(pump: &HeatPump) -> Value {
    json!({
        "id": pump.id,
        "building": pump.building,
        "is_authenticated": pump.is_authenticated,
        "authorization_url": null,
    })
}

/// `PUT .../users/{user_id}/heat-pumps/{id}` with `{"building_id": ...}` (partial).
pub(crate) fn update_heat_pump(
    shared: &Shared,
    call: &Call,
    user: Uuid,
    params: &Params,
) -> Result<Answer, Answer> {
    let id = parse_uuid(shared, call, params.device.unwrap_or(""), "heat_pump_id")?;
    let body = json_body(shared, call)?;
    let mut problems = Vec::new();
    let object = body.as_object().cloned().unwrap_or_default();
    for key in object.keys().filter(|k| *k != "building_id") {
        shared.anomaly(call, &format!("extra_forbidden at body.payload.{key}"));
        problems.push(Problem::body(
            "extra_forbidden",
            key,
            "Extra inputs are not permitted",
        ));
    }
    let building = uuid_field(&object, "building_id", &mut problems).flatten();
    if !problems.is_empty() {
        return Err(Answer::json(422, &validate::detail(&problems)));
    }
    let mut state = shared.state();
    if let Some(b) = building
        && state.building_mut(user, b).is_none()
    {
        let problem = Problem::body(
            "value_error",
            "building_id",
            "The building does not belong to this user",
        );
        return Err(Answer::json(422, &validate::detail(&[problem])));
    }
    let pump = state
        .snap
        .heat_pumps
        .get_mut(&user)
        .and_then(|pumps| pumps.iter_mut().find(|p| p.id == id))
        .ok_or_else(not_found)?;
    pump.building = building;
    Ok(Answer::json(200, &heat_pump_json(pump)))
}

/// `PUT /__sandbox/clock` `{"advance_days": n}`: moves the calendar; answers the new today.
pub(crate) fn admin_clock(shared: &Shared, call: &Call) -> Answer {
    let days = serde_json::from_slice::<Value>(&call.body)
        .ok()
        .and_then(|v| v.get("advance_days").and_then(Value::as_i64));
    let Some(days) = days else {
        return Answer::detail(400, "expected {\"advance_days\": <integer>}");
    };
    let mut state = shared.state();
    state.day_offset += days;
    let today = date_string(today_days(state.day_offset));
    Answer::json(200, &json!({ "today": today }))
}

/// `POST /__sandbox/heat-pumps` `{"user_id", "building_id"}`: the customer connected a heat
/// pump (`building_id` null or absent: not assigned to a building).
pub(crate) fn admin_connect(shared: &Shared, call: &Call) -> Answer {
    let body = serde_json::from_slice::<Value>(&call.body).unwrap_or(Value::Null);
    let id = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    let Some(user) = id("user_id") else {
        return Answer::detail(
            400,
            "expected {\"user_id\": <uuid>, \"building_id\": <uuid or null>}",
        );
    };
    let pump = HeatPump {
        id: Uuid::new_v4(),
        building: id("building_id"),
        is_authenticated: true,
    };
    let answer = heat_pump_json(&pump);
    let mut state = shared.state();
    state.add_user(user);
    state.snap.heat_pumps.entry(user).or_default().push(pump);
    Answer::json(200, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_reject_the_guides_examples_and_keep_unknown_fields() {
        let user = Uuid::new_v4();
        let mut body = json!({"language": "fr", "price_zone_default": "DE",
            "success_url": "https://a", "cancel_url": "https://b", "user_id": user});
        let problems = check_session(&body).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        body["language"] = json!("de");
        body["price_zone_default"] = json!("DE_LU");
        body["device_type"] = json!("hp");
        let session = check_session(&body).unwrap();
        assert_eq!(session.extra.get("device_type"), Some(&json!("hp")));
        assert_eq!(session.user, user);
    }
}
