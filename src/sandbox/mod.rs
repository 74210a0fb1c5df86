//! The Podero simulator: an in-process HTTP server that behaves like the Podero
//! Partner API v2.0 as far as the onboarding job can tell.
//!
//! # Why it exists
//! Every integration test, crash test, benchmark and the `demo` command talk to
//! this server on a loopback port. It shares **no code** with the client
//! (`crate::api`): its own types, its own routing, its own validation. A client
//! mistake (a trailing slash, a missing `Content-Type`, a misspelled field, a
//! retried POST that duplicates a building) therefore shows up here, in the
//! [`Snapshot`], instead of being hidden by shared assumptions.
//!
//! # Design
//! * `builder` — [`Builder`] (configuration) and [`Sandbox`] (the running server:
//!   an accept task that owns every connection task, so dropping the `Sandbox`
//!   closes everything).
//! * `service` — one request, start to end: read the body, route, apply faults,
//!   authenticate, call the endpoint, record the outcome, answer (or drop the
//!   connection: in hyper 1 a service error closes the connection without a
//!   response, which is exactly the "commit then drop" fault).
//! * `call` — what every endpoint works with: the request (`Call`), the
//!   answer, the shared state and configuration, and the small helpers.
//! * `route` — a hand-written router: method + path segments → [`Endpoint`] (the
//!   session paths too).
//! * `endpoints` — the API behaviour (token, the dispatch of API paths, buildings)
//!   over the state.
//! * `users` — the users: create (e-mail unique, external id not), by-ext-id, the
//!   streamed list, PUT, and the seeding of users that existed before.
//! * `connect` — device onboarding sessions (Connect links), heat pumps and
//!   "mark connected".
//! * `clock` — the simulator's calendar (movable, for link expiry).
//! * `validate` — django-ninja style request validation (422 bodies).
//! * `faults` — [`Faults`]: rate limit (token bucket), random 429/5xx, latency,
//!   and the ambiguous POST outcomes (commit then drop / stall / 500).
//! * `state` — the data behind one `std::sync::Mutex` and its [`Snapshot`].
//!
//! The files import each other one way only (state, route, clock, faults, validate at
//! the bottom; call; the endpoints; service; builder on top). The `sandbox` command
//! (`commands/sandbox.rs`) runs it as a separate process.
//! * `tls` — [`ServerTls`]: HTTPS with a caller-supplied certificate.
//!
//! # Where the docs are silent
//! The real API's behaviour is only partly documented (see
//! `podero-api.md`). The simulator picks the strict side: unknown body fields are
//! rejected with 422 (a real django-ninja schema may ignore them), `Content-Type`
//! is checked, and trailing slashes on API paths are 404s.

mod builder;
mod call;
mod clock;
mod connect;
mod endpoints;
mod faults;
mod route;
mod service;
mod state;
mod tls;
mod users;
mod validate;

use uuid::Uuid;

pub use builder::{Builder, Sandbox};
pub use call::ListBuildings;
pub use faults::{DEFAULT_EMAIL_TAKEN_STATUS, Faults, RateLimit};
pub use route::Endpoint;
pub use state::{Building, Counts, HeatPump, LogEntry, SeedUser, Session, Snapshot, User};
pub use tls::ServerTls;

/// The organization id a default [`Builder`] serves.
pub const DEMO_ORG_ID: Uuid = Uuid::from_u128(0x6f72_6700_0000_4000_8000_0000_0000_0001);

/// The client id a default [`Builder`] accepts on the token endpoint.
pub const DEMO_CLIENT_ID: &str = "demo-client";

/// The client secret a default [`Builder`] accepts on the token endpoint.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

/// The `i`-th generated user id: `5eed0000-0000-4000-8000-{i as 12 hex digits}`.
///
/// Deterministic, so a test can write a CSV of the same ids that
/// [`Builder::generated_users`] registers.
pub fn generated_user_id(i: u64) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 + u128::from(i))
}
