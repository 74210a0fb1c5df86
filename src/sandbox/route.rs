//! A hand-written router: method + path segments → [`Endpoint`] and its path
//! parameters (still raw text: validating them is the endpoint's job, because
//! a non-UUID segment is a 422, not a 404).

use hyper::Method;

/// The API prefix every partner path starts with.
const API_PREFIX: &str = "/api/partners/v2.0/org/";
/// The admin path that seeds users (its bodies may be large: see `service`).
pub(crate) const ADMIN_USERS_PATH: &str = "/__sandbox/users";
/// The session path (it has no `/org/{org_id}`).
const SESSION_PATH: &str = "/api/partners/v2.0/device-onboarding";

/// Every endpoint the simulator knows, named as in [`super::Snapshot::requests`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /oauth2/token/`
    Token,
    /// `GET .../users`
    ListUsers,
    /// `POST .../users`
    CreateUser,
    /// `GET .../users/by-ext-id/{external_id}`
    GetUserByExtId,
    /// `GET .../users/{user_id}`
    GetUser,
    /// `PUT .../users/{user_id}`
    PutUser,
    /// `POST .../users/{user_id}/buildings`
    CreateBuilding,
    /// `GET .../users/{user_id}/buildings` (undocumented; see [`super::ListBuildings`])
    ListBuildings,
    /// `GET .../users/{user_id}/buildings/{building_id}`
    GetBuilding,
    /// `PUT .../users/{user_id}/buildings/{building_id}`
    UpdateBuilding,
    /// `POST /api/partners/v2.0/device-onboarding` (no org in the path)
    CreateSession,
    /// `GET /api/partners/v2.0/device-onboarding/{session_id}`
    GetSession,
    /// `GET .../users/{user_id}/heat-pumps`
    ListHeatPumps,
    /// `PUT .../users/{user_id}/heat-pumps/{heat_pump_id}`
    UpdateHeatPump,
    /// `GET /__sandbox/state` (`?counts=1`: counters only), `PUT /__sandbox/faults`,
    /// `PUT /__sandbox/clock`, `POST /__sandbox/heat-pumps`, `POST /__sandbox/users`
    Admin,
    /// Anything else (404 or 405).
    Unknown,
}

impl Endpoint {
    /// The name used in counters and the log.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::ListUsers => "list_users",
            Endpoint::CreateUser => "create_user",
            Endpoint::GetUserByExtId => "get_user_by_ext_id",
            Endpoint::GetUser => "get_user",
            Endpoint::PutUser => "put_user",
            Endpoint::CreateBuilding => "create_building",
            Endpoint::ListBuildings => "list_buildings",
            Endpoint::GetBuilding => "get_building",
            Endpoint::UpdateBuilding => "update_building",
            Endpoint::CreateSession => "create_session",
            Endpoint::GetSession => "get_session",
            Endpoint::ListHeatPumps => "list_heat_pumps",
            Endpoint::UpdateHeatPump => "update_heat_pump",
            Endpoint::Admin => "admin",
            Endpoint::Unknown => "unknown",
        }
    }
}

/// A routed request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Route<'a> {
    /// The token endpoint.
    Token,
    /// `GET /__sandbox/state`
    AdminState,
    /// `PUT /__sandbox/faults`
    AdminFaults,
    /// `PUT /__sandbox/clock` `{"advance_days": n}`
    AdminClock,
    /// `POST /__sandbox/heat-pumps` `{"user_id": ..., "building_id": ...|null}`: a customer connected
    AdminConnect,
    /// `POST /__sandbox/users`: users that existed before (one or an array)
    AdminUsers,
    /// An API endpoint with its raw path parameters.
    Api {
        endpoint: Endpoint,
        params: Params<'a>,
    },
    /// A known path with the wrong method; carries the allowed methods.
    MethodNotAllowed { allow: &'static str },
    /// No such path; `trailing_slash` says an API path was right but for a final `/`.
    NotFound { trailing_slash: bool },
}

/// Raw path parameters of an API path.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Params<'a> {
    pub org: &'a str,
    pub user: Option<&'a str>,
    pub external_id: Option<&'a str>,
    pub building: Option<&'a str>,
    /// The heat pump id (heat-pump paths) or the session id (device-onboarding paths).
    pub device: Option<&'a str>,
}

/// Routes `method path` (path without the query string).
pub(crate) fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    match path {
        "/oauth2/token/" => return by_method(method, &[(Method::POST, Route::Token)], "POST"),
        "/__sandbox/state" => return by_method(method, &[(Method::GET, Route::AdminState)], "GET"),
        "/__sandbox/faults" => {
            return by_method(method, &[(Method::PUT, Route::AdminFaults)], "PUT");
        }
        "/__sandbox/clock" => return by_method(method, &[(Method::PUT, Route::AdminClock)], "PUT"),
        "/__sandbox/heat-pumps" => {
            return by_method(method, &[(Method::POST, Route::AdminConnect)], "POST");
        }
        ADMIN_USERS_PATH => {
            return by_method(method, &[(Method::POST, Route::AdminUsers)], "POST");
        }
        _ => {}
    }
    if let Some(route) = route_session(method, path) {
        return route;
    }
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return Route::NotFound {
            trailing_slash: false,
        };
    };
    if let Some(trimmed) = rest.strip_suffix('/')
        && api_shape(trimmed).is_some()
    {
        return Route::NotFound {
            trailing_slash: true,
        };
    }
    match api_shape(rest) {
        Some((shape, params)) => api_route(method, shape, params),
        None => Route::NotFound {
            trailing_slash: false,
        },
    }
}

/// The API path shapes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Users,
    ByExtId,
    User,
    Buildings,
    Building,
    HeatPumps,
    HeatPump,
}

/// Splits `{org}/users/...` into a shape and its parameters.
fn api_shape(rest: &str) -> Option<(Shape, Params<'_>)> {
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let mut p = Params {
        org: segments[0],
        ..Params::default()
    };
    let shape = match segments[1..] {
        ["users"] => Shape::Users,
        ["users", "by-ext-id", ext] => {
            p.external_id = Some(ext);
            Shape::ByExtId
        }
        ["users", user] => {
            p.user = Some(user);
            Shape::User
        }
        ["users", user, "buildings"] => {
            p.user = Some(user);
            Shape::Buildings
        }
        ["users", user, "buildings", building] => {
            p.user = Some(user);
            p.building = Some(building);
            Shape::Building
        }
        ["users", user, "heat-pumps"] => {
            p.user = Some(user);
            Shape::HeatPumps
        }
        ["users", user, "heat-pumps", device] => {
            p.user = Some(user);
            p.device = Some(device);
            Shape::HeatPump
        }
        _ => return None,
    };
    Some((shape, p))
}

fn api_route<'a>(method: &Method, shape: Shape, params: Params<'a>) -> Route<'a> {
    use Endpoint as E;
    let (allowed, allow): (&[(Method, Endpoint)], &'static str) = match shape {
        Shape::Users => (
            &[(Method::GET, E::ListUsers), (Method::POST, E::CreateUser)],
            "GET, POST",
        ),
        Shape::ByExtId => (&[(Method::GET, E::GetUserByExtId)], "GET"),
        Shape::User => (
            &[(Method::GET, E::GetUser), (Method::PUT, E::PutUser)],
            "GET, PUT",
        ),
        Shape::Buildings => (
            &[
                (Method::GET, E::ListBuildings),
                (Method::POST, E::CreateBuilding),
            ],
            "GET, POST",
        ),
        Shape::Building => (
            &[
                (Method::GET, E::GetBuilding),
                (Method::PUT, E::UpdateBuilding),
            ],
            "GET, PUT",
        ),
        Shape::HeatPumps => (&[(Method::GET, E::ListHeatPumps)], "GET"),
        Shape::HeatPump => (&[(Method::PUT, E::UpdateHeatPump)], "PUT"),
    };
    match allowed.iter().find(|(m, _)| m == method) {
        Some((_, endpoint)) => Route::Api {
            endpoint: *endpoint,
            params,
        },
        None => Route::MethodNotAllowed { allow },
    }
}

fn by_method<'a>(method: &Method, table: &[(Method, Route<'a>)], allow: &'static str) -> Route<'a> {
    table
        .iter()
        .find(|(m, _)| m == method)
        .map_or(Route::MethodNotAllowed { allow }, |(_, r)| r.clone())
}

/// Routes the device-onboarding paths (`None`: not one of them).
fn route_session<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    let rest = path.strip_prefix(SESSION_PATH)?;
    let (endpoint, allow, device) = match rest {
        "" => (Endpoint::CreateSession, "POST", None),
        "/" => {
            return Some(Route::NotFound {
                trailing_slash: true,
            });
        }
        _ => {
            let id = rest.strip_prefix('/')?;
            if id.is_empty() || id.contains('/') {
                return Some(Route::NotFound {
                    trailing_slash: id.ends_with('/'),
                });
            }
            (Endpoint::GetSession, "GET", Some(id))
        }
    };
    let wanted = if endpoint == Endpoint::CreateSession {
        Method::POST
    } else {
        Method::GET
    };
    if *method != wanted {
        return Some(Route::MethodNotAllowed { allow });
    }
    let params = Params {
        device,
        ..Params::default()
    };
    Some(Route::Api { endpoint, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "/api/partners/v2.0/org/o";

    fn endpoint(method: Method, path: &str) -> Option<Endpoint> {
        match route(&method, path) {
            Route::Api { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    #[test]
    fn routes_every_api_shape() {
        assert_eq!(
            endpoint(Method::GET, &format!("{ORG}/users")),
            Some(Endpoint::ListUsers)
        );
        assert_eq!(
            endpoint(Method::POST, &format!("{ORG}/users")),
            Some(Endpoint::CreateUser)
        );
        assert_eq!(
            endpoint(Method::PUT, &format!("{ORG}/users/u")),
            Some(Endpoint::PutUser)
        );
        assert_eq!(
            endpoint(Method::POST, &format!("{ORG}/users/u/buildings")),
            Some(Endpoint::CreateBuilding)
        );
        assert_eq!(
            endpoint(Method::GET, &format!("{ORG}/users/by-ext-id/x")),
            Some(Endpoint::GetUserByExtId)
        );
        assert_eq!(
            endpoint(Method::GET, &format!("{ORG}/users/u/buildings/b")),
            Some(Endpoint::GetBuilding)
        );
    }

    #[test]
    fn trailing_slash_and_wrong_method_are_told_apart() {
        let path = format!("{ORG}/users/u/");
        assert_eq!(
            route(&Method::PUT, &path),
            Route::NotFound {
                trailing_slash: true
            }
        );
        let path = format!("{ORG}/users/u");
        assert_eq!(
            route(&Method::DELETE, &path),
            Route::MethodNotAllowed { allow: "GET, PUT" }
        );
        assert_eq!(
            route(&Method::POST, "/oauth2/token"),
            Route::NotFound {
                trailing_slash: false
            }
        );
    }

    #[test]
    fn session_paths_route_without_an_org() {
        let post = route_session(&Method::POST, SESSION_PATH);
        assert!(matches!(
            post,
            Some(Route::Api {
                endpoint: Endpoint::CreateSession,
                ..
            })
        ));
        let path = format!("{SESSION_PATH}/abc");
        let get = route_session(&Method::GET, &path);
        assert!(matches!(
            get,
            Some(Route::Api {
                endpoint: Endpoint::GetSession,
                ..
            })
        ));
        assert!(route_session(&Method::GET, "/api/partners/v2.0/org/x").is_none());
    }
}
