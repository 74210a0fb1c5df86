//! The API's behaviour: the token endpoint, the dispatch of the partner endpoints
//! (users in `users`, sessions and heat pumps in `connect`) and the buildings. Each function turns a [`Call`] into an [`Answer`]; none
//! awaits, so the state lock is only ever held for a few map operations.
//!
//! Check order on API paths (django-ninja's): auth (401) → `org_id` is a UUID
//! (422) → it is ours (403) → other path parameters (422) → body (422) →
//! the user / building exists (404).

use std::time::Instant;

use base64::Engine;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::call::{
    Answer, Call, ListBuildings, Shared, media_type_is, not_found, parse_uuid, percent_decode,
    validated,
};
use super::faults::AfterCommit;
use super::route::{Endpoint, Params};
use super::state::Building;
use super::users;
use super::validate;

/// Purge expired tokens once this many are stored.
const TOKEN_PURGE_AT: usize = 1024;

/// `POST /oauth2/token/`: client credentials → bearer token.
pub(crate) fn token(shared: &Shared, call: &Call) -> Answer {
    let Some((id, secret)) = basic_credentials(call.authorization.as_deref()) else {
        shared.anomaly(call, "token request without HTTP Basic auth");
        return oauth_error(401, "invalid_client");
    };
    let config = &shared.config;
    if id != config.client_id || secret != config.client_secret {
        return oauth_error(401, "invalid_client");
    }
    match grant_type(shared, call).as_deref() {
        Some("client_credentials") => issue_token(shared),
        Some(_) => oauth_error(400, "unsupported_grant_type"),
        None => oauth_error(400, "invalid_request"),
    }
}

fn oauth_error(status: u16, error: &str) -> Answer {
    Answer::json(status, &json!({ "error": error }))
}

/// `id:secret` from an `Authorization: Basic ...` header.
fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let (scheme, encoded) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `grant_type` from a JSON or form body (anomaly if the content type is neither).
fn grant_type(shared: &Shared, call: &Call) -> Option<String> {
    let ct = call.content_type.as_deref().unwrap_or("");
    let form = || form_field(&call.body, "grant_type");
    let json = || {
        let value: Value = serde_json::from_slice(&call.body).ok()?;
        value.get("grant_type")?.as_str().map(String::from)
    };
    if media_type_is(ct, "application/x-www-form-urlencoded") {
        form()
    } else if media_type_is(ct, "application/json") {
        json()
    } else {
        shared.anomaly(call, "token request without a JSON or form Content-Type");
        json().or_else(form)
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(&value.replace('+', " ")))
}

fn issue_token(shared: &Shared) -> Answer {
    let lifetime = shared.config.token_lifetime;
    let token = format!("sbx{}", Uuid::new_v4().simple());
    let now = Instant::now();
    let mut state = shared.state();
    if state.tokens.len() >= TOKEN_PURGE_AT {
        state.tokens.retain(|_, expiry| *expiry > now);
    }
    state.tokens.insert(token.clone(), now + lifetime);
    state.snap.tokens_issued += 1;
    drop(state);
    let body = json!({
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "token_type": "Bearer",
        "scope": "read write",
    });
    Answer::json(200, &body).with_header(hyper::header::CACHE_CONTROL, "no-store")
}

/// A partner API endpoint.
pub(crate) fn api(shared: &Shared, call: &Call, endpoint: Endpoint, params: &Params) -> Answer {
    if matches!(endpoint, Endpoint::CreateSession | Endpoint::GetSession) {
        return authenticate(shared, call)
            .map(|()| super::connect::session(shared, call, endpoint, params))
            .unwrap_or_else(|answer| answer);
    }
    if endpoint == Endpoint::ListBuildings && shared.config.list_buildings != ListBuildings::Enabled
    {
        return list_disabled(shared.config.list_buildings);
    }
    if let Err(answer) =
        authenticate(shared, call).and_then(|()| check_org(shared, call, params.org))
    {
        return answer;
    }
    let result = match endpoint {
        Endpoint::ListUsers => Ok(match shared.faults().list_users_status() {
            Some(status) => {
                Answer::json(status, &json!({"detail": "the user list is not available"}))
            }
            None => users::list_users(),
        }),
        Endpoint::CreateUser => users::create_user(shared, call),
        Endpoint::GetUserByExtId => Ok(users::user_by_ext_id(
            shared,
            params.external_id.unwrap_or(""),
        )),
        Endpoint::GetUser => path_user(shared, call, params).map(|u| users::get_user(shared, u)),
        Endpoint::PutUser => {
            path_user(shared, call, params).and_then(|u| users::put_user(shared, call, u))
        }
        Endpoint::CreateBuilding => {
            path_user(shared, call, params).and_then(|u| create_building(shared, call, u))
        }
        Endpoint::ListBuildings => {
            path_user(shared, call, params).map(|u| list_buildings(shared, u))
        }
        Endpoint::GetBuilding => {
            path_building(shared, call, params).map(|(u, b)| get_building(shared, u, b))
        }
        Endpoint::UpdateBuilding => path_building(shared, call, params)
            .and_then(|(u, b)| update_building(shared, call, u, b)),
        Endpoint::ListHeatPumps => {
            path_user(shared, call, params).map(|u| super::connect::list_heat_pumps(shared, u))
        }
        Endpoint::UpdateHeatPump => path_user(shared, call, params)
            .and_then(|u| super::connect::update_heat_pump(shared, call, u, params)),
        Endpoint::Token
        | Endpoint::Admin
        | Endpoint::Unknown
        | Endpoint::CreateSession
        | Endpoint::GetSession => Ok(Answer::detail(404, "Not Found")),
    };
    result.unwrap_or_else(|answer| answer)
}

/// The configured answer when `GET .../buildings` does not exist.
fn list_disabled(mode: ListBuildings) -> Answer {
    match mode {
        ListBuildings::MethodNotAllowed => {
            Answer::detail(405, "Method Not Allowed").with_header(hyper::header::ALLOW, "POST")
        }
        ListBuildings::NotFound | ListBuildings::Enabled => Answer::detail(404, "Not Found"),
    }
}

/// Checks `Authorization: Bearer <token>` against issued, unexpired tokens.
pub(crate) fn authenticate(shared: &Shared, call: &Call) -> Result<(), Answer> {
    let token = call.authorization.as_deref().and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let Some(token) = token else {
        shared.anomaly(call, "missing or non-Bearer Authorization header");
        return Err(Answer::detail(401, "Unauthorized"));
    };
    match shared.state().tokens.get(token) {
        Some(expiry) if *expiry > Instant::now() => Ok(()),
        Some(_) => Err(Answer::detail(401, "Unauthorized: token expired")),
        None => Err(Answer::detail(401, "Unauthorized: invalid token")),
    }
}

fn check_org(shared: &Shared, call: &Call, raw: &str) -> Result<(), Answer> {
    let org = parse_uuid(shared, call, raw, "org_id")?;
    if org == shared.config.org_id {
        Ok(())
    } else {
        Err(Answer::detail(
            403,
            "You do not have permission to access this organization",
        ))
    }
}

fn path_user(shared: &Shared, call: &Call, params: &Params) -> Result<Uuid, Answer> {
    parse_uuid(shared, call, params.user.unwrap_or(""), "user_id")
}

fn path_building(shared: &Shared, call: &Call, params: &Params) -> Result<(Uuid, Uuid), Answer> {
    let user = path_user(shared, call, params)?;
    let building = parse_uuid(shared, call, params.building.unwrap_or(""), "building_id")?;
    Ok((user, building))
}

fn create_building(shared: &Shared, call: &Call, user: Uuid) -> Result<Answer, Answer> {
    let fields = validated(shared, call, validate::building)?;
    let mut state = shared.state();
    if !state.snap.users.contains_key(&user) {
        return Err(not_found());
    }
    let building = state.add_building(user, fields, call.at_ms);
    drop(state);
    let after = shared.faults().after_commit();
    let mut answer = match after {
        AfterCommit::Fail500 => Answer::html(500),
        _ => Answer::json(shared.config.create_status, &building_json(&building)),
    };
    answer.after = after;
    Ok(answer)
}

fn list_buildings(shared: &Shared, user: Uuid) -> Answer {
    let state = shared.state();
    if !state.snap.users.contains_key(&user) {
        return not_found();
    }
    let buildings = state
        .snap
        .buildings
        .get(&user)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Answer::json(
        200,
        &Value::Array(buildings.iter().map(building_json).collect()),
    )
}

fn get_building(shared: &Shared, user: Uuid, id: Uuid) -> Answer {
    let mut state = shared.state();
    state
        .building_mut(user, id)
        .map_or_else(not_found, |b| Answer::json(200, &building_json(b)))
}

fn update_building(shared: &Shared, call: &Call, user: Uuid, id: Uuid) -> Result<Answer, Answer> {
    let fields = validated(shared, call, validate::building)?;
    let mut state = shared.state();
    let building = state.building_mut(user, id).ok_or_else(not_found)?;
    building.name = fields
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    building.fields = fields;
    Ok(Answer::json(200, &building_json(building)))
}

/// A building as the API returns it: every field, `null` when unset.
fn building_json(building: &Building) -> Value {
    let mut out = Map::new();
    for name in validate::building_field_names() {
        let value = building.fields.get(name).cloned().unwrap_or(Value::Null);
        out.insert(name.to_owned(), value);
    }
    if out.get("photovoltaic").is_none_or(Value::is_null) {
        out.insert("photovoltaic".into(), Value::Bool(false));
    }
    out.insert("id".into(), json!(building.id));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_parameters_are_ignored() {
        assert!(media_type_is(
            "application/json; charset=utf-8",
            "application/json"
        ));
        assert!(!media_type_is("text/plain", "application/json"));
    }
}
