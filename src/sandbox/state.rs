//! The simulator's data (users, buildings, tokens, counters, request log) and
//! the [`Snapshot`] tests read it through.
//!
//! Everything lives in one `State` behind one `std::sync::Mutex`; every critical
//! section is a few map operations, never an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// At most this many anomalies are kept; one more line says how many were dropped.
const MAX_ANOMALIES: usize = 1000;

/// One device onboarding session, as created.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// The session id (the capability in the link).
    pub id: Uuid,
    /// The user it belongs to.
    pub user: Uuid,
    /// The building it links the device to, if given.
    pub building: Option<Uuid>,
    /// `language`.
    pub language: String,
    /// `price_zone_default`.
    pub price_zone_default: String,
    /// `is_smart_optimization_active_default`, if sent.
    pub smart_optimization: Option<bool>,
    /// `expiration_date` (`YYYY-MM-DD`).
    pub expiration_date: String,
    /// Body fields the docs do not name (kept, not rejected).
    pub extra: Map<String, Value>,
}

/// A user's heat pump.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HeatPump {
    /// Its id.
    pub id: Uuid,
    /// The building it is assigned to.
    pub building: Option<Uuid>,
    /// Whether the customer completed the connection.
    pub is_authenticated: bool,
}

/// A user of the organization.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// The Podero user id.
    pub id: Uuid,
    /// The partner's id for this user, once a PUT set it.
    pub external_user_id: Option<String>,
    /// Every writable field a PUT has set (including `external_user_id`);
    /// a field set to `null` is stored as `null`.
    pub fields: Map<String, Value>,
}

impl User {
    /// A user with no fields set.
    pub(crate) fn new(id: Uuid) -> Self {
        User {
            id,
            external_user_id: None,
            fields: Map::new(),
        }
    }

    /// The user's email: the one set by a PUT, else a unique placeholder
    /// (the real API requires every user to have one).
    pub(crate) fn email(&self) -> String {
        match self.fields.get("email") {
            Some(Value::String(email)) => email.clone(),
            _ => format!("{}@users.sandbox.invalid", self.id),
        }
    }
}

/// A building of one user.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Building {
    /// The id the server assigned (UUID v4).
    pub id: Uuid,
    /// The building's name (not unique: duplicates are what tests look for).
    pub name: String,
    /// Every field the client sent (including `name`), as stored.
    pub fields: Map<String, Value>,
    /// When it was created, in milliseconds since the server started.
    pub created_at_ms: u64,
}

/// One answered (or dropped) request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    /// When the request arrived, in milliseconds since the server started.
    pub at_ms: u64,
    /// The HTTP method.
    pub method: String,
    /// The endpoint name (see [`Snapshot::requests`]).
    pub endpoint: String,
    /// The request path (without the query string).
    pub path: String,
    /// The status sent; `0` when the connection was dropped without a response.
    pub status: u16,
    /// The user id in the path, when there is a valid one.
    pub user_id: Option<Uuid>,
}

/// A copy of the simulator's state, for assertions and for `GET /__sandbox/state`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// All users of the organization.
    pub users: BTreeMap<Uuid, User>,
    /// Buildings per user id, in creation order (users without buildings are absent).
    pub buildings: BTreeMap<Uuid, Vec<Building>>,
    /// Requests per endpoint name: `token`, `put_user`, `get_user`,
    /// `create_building`, `update_building`, `list_buildings`, `get_building`,
    /// `get_user_by_ext_id`, `list_users`, `admin`, `unknown`.
    pub requests: BTreeMap<String, u64>,
    /// Responses per status sent (admin requests and dropped connections excluded).
    pub statuses: BTreeMap<u16, u64>,
    /// Every request except admin ones, in completion order (empty when the
    /// request log is off).
    pub log: Vec<LogEntry>,
    /// Client mistakes: unknown path, trailing slash, bad JSON, missing
    /// `Content-Type`, non-UUID path segment, missing auth, unknown or mistyped
    /// field... Empty means the client behaved. Data errors (a name too long, an
    /// unknown user) are not anomalies.
    pub anomalies: Vec<String>,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Device onboarding sessions (Connect links), in creation order.
    #[serde(default)]
    pub sessions: Vec<Session>,
    /// Heat pumps per user id (users without heat pumps are absent).
    #[serde(default)]
    pub heat_pumps: BTreeMap<Uuid, Vec<HeatPump>>,
}

impl Snapshot {
    /// All requests except `token` and `admin` ones.
    pub fn api_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "token" | "admin"))
            .map(|(_, n)| n)
            .sum()
    }

    /// `(user, building name, count)` for every name a user has more than once.
    pub fn duplicates(&self) -> Vec<(Uuid, String, usize)> {
        self.building_map()
            .into_iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|((user, name), ids)| (user, name, ids.len()))
            .collect()
    }

    /// `(user, building name)` → the ids of the buildings with that name.
    pub fn building_map(&self) -> BTreeMap<(Uuid, String), Vec<Uuid>> {
        let mut map: BTreeMap<(Uuid, String), Vec<Uuid>> = BTreeMap::new();
        for (user, buildings) in &self.buildings {
            for building in buildings {
                map.entry((*user, building.name.clone()))
                    .or_default()
                    .push(building.id);
            }
        }
        map
    }

    /// How many requests of endpoint `name` were made.
    pub fn count(&self, name: &str) -> u64 {
        self.requests.get(name).copied().unwrap_or(0)
    }
}

/// The counters of a [`Snapshot`] without its data: `GET /__sandbox/state?counts=1`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    /// Users of the organization.
    pub users: u64,
    /// Users with an `external_user_id`.
    pub users_with_external_id: u64,
    /// Buildings, all users together.
    pub buildings: u64,
    /// Buildings beyond the first with the same name for the same user (0: no duplicate).
    pub duplicate_buildings: u64,
    /// As [`Snapshot::requests`].
    pub requests: BTreeMap<String, u64>,
    /// As [`Snapshot::statuses`].
    pub statuses: BTreeMap<u16, u64>,
    /// Anomalies recorded (kept and dropped).
    pub anomalies: u64,
    /// As [`Snapshot::tokens_issued`].
    pub tokens_issued: u64,
}

/// The mutable state of a running simulator.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The data and counters, in the shape tests see.
    pub snap: Snapshot,
    /// Access token → expiry instant.
    pub tokens: HashMap<String, Instant>,
    /// Whether to append to `snap.log`.
    pub log_on: bool,
    /// Anomalies not kept because of [`MAX_ANOMALIES`].
    pub anomalies_dropped: u64,
    /// Days the simulator's calendar is ahead of the real UTC date (session expiry).
    pub day_offset: i64,
    /// Requests per endpoint name that have arrived and are not yet answered.
    pub in_flight: BTreeMap<&'static str, u64>,
}

impl State {
    /// Records a client mistake (bounded).
    pub fn anomaly(&mut self, text: String) {
        if self.snap.anomalies.len() < MAX_ANOMALIES {
            self.snap.anomalies.push(text);
        } else {
            self.anomalies_dropped += 1;
        }
    }

    /// Counts a request and logs it; `status == 0` means dropped.
    pub fn record(&mut self, entry: LogEntry) {
        *self
            .snap
            .requests
            .entry(entry.endpoint.clone())
            .or_default() += 1;
        if entry.endpoint == "admin" {
            return;
        }
        if entry.status != 0 {
            *self.snap.statuses.entry(entry.status).or_default() += 1;
        }
        if self.log_on {
            self.snap.log.push(entry);
        }
    }

    /// Adds a user (no-op when it exists).
    pub fn add_user(&mut self, id: Uuid) {
        self.snap.users.entry(id).or_insert_with(|| User::new(id));
    }

    /// Stores a new building for `user` and returns a copy of it.
    pub fn add_building(&mut self, user: Uuid, fields: Map<String, Value>, at_ms: u64) -> Building {
        let name = match fields.get("name") {
            Some(Value::String(name)) => name.clone(),
            _ => String::new(),
        };
        let building = Building {
            id: Uuid::new_v4(),
            name,
            fields,
            created_at_ms: at_ms,
        };
        self.snap
            .buildings
            .entry(user)
            .or_default()
            .push(building.clone());
        building
    }

    /// The building `id` of `user`, if it is that user's.
    pub fn building_mut(&mut self, user: Uuid, id: Uuid) -> Option<&mut Building> {
        self.snap
            .buildings
            .get_mut(&user)?
            .iter_mut()
            .find(|b| b.id == id)
    }

    /// The counters, computed without copying the data.
    pub fn counts(&self) -> Counts {
        let snap = &self.snap;
        let mut duplicates = 0;
        for buildings in snap.buildings.values() {
            let mut names: Vec<&str> = buildings.iter().map(|b| b.name.as_str()).collect();
            names.sort_unstable();
            duplicates += names.windows(2).filter(|w| w[0] == w[1]).count() as u64;
        }
        Counts {
            users: snap.users.len() as u64,
            users_with_external_id: snap
                .users
                .values()
                .filter(|u| u.external_user_id.is_some())
                .count() as u64,
            buildings: snap.buildings.values().map(|b| b.len() as u64).sum(),
            duplicate_buildings: duplicates,
            requests: snap.requests.clone(),
            statuses: snap.statuses.clone(),
            anomalies: snap.anomalies.len() as u64 + self.anomalies_dropped,
            tokens_issued: snap.tokens_issued,
        }
    }

    /// A copy for tests, with the anomaly overflow noted.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = self.snap.clone();
        if self.anomalies_dropped > 0 {
            snap.anomalies
                .push(format!("... and {} more anomalies", self.anomalies_dropped));
        }
        snap
    }
}
