//! The simulator's data (users, buildings, tokens, counters, request log) and
//! the [`Snapshot`] tests read it through.
//!
//! Everything lives in one `State` behind one `std::sync::Mutex`; every critical
//! section is a few map operations, never an `.await`.
//!
//! Users are indexed by external id and by e-mail (lower-cased), so a lookup by CRM id
//! or an e-mail check costs one hash lookup with 100k users too. Every change to a user
//! goes through a `State` method that keeps both indexes right.

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
    /// The partner's id for this user (CRM id), as created, seeded or set by a PUT.
    /// Not unique: the server lets two users carry one (see [`Snapshot::external_id_duplicates`]).
    pub external_user_id: Option<String>,
    /// The e-mail address as given (unique in the organization, compared
    /// case-insensitively); a user added by id alone has the placeholder
    /// `{id}@users.sandbox.invalid` (the real API requires every user to have one).
    #[serde(default)]
    pub email: String,
    /// `user`, `admin` or `staff`: `user` unless created, seeded or PUT otherwise.
    #[serde(default = "default_role")]
    pub role: String,
    /// Every writable field a create or PUT has set (including `external_user_id`,
    /// `email` and `role`); a field set to `null` is stored as `null`.
    pub fields: Map<String, Value>,
}

fn default_role() -> String {
    "user".to_owned()
}

impl User {
    /// A user with no fields set and the placeholder e-mail.
    pub(crate) fn new(id: Uuid) -> Self {
        User {
            id,
            external_user_id: None,
            email: format!("{id}@users.sandbox.invalid"),
            role: default_role(),
            fields: Map::new(),
        }
    }

    /// Sets `fields` (already validated) on the user, keeping the typed copies in step.
    fn apply(&mut self, fields: Map<String, Value>) {
        for (key, value) in fields {
            match (key.as_str(), &value) {
                ("external_user_id", _) => self.external_user_id = value.as_str().map(String::from),
                ("email", Value::String(email)) => self.email.clone_from(email),
                ("role", Value::String(role)) => self.role.clone_from(role),
                _ => {}
            }
            self.fields.insert(key, value);
        }
    }
}

/// A user that exists before any client call (created in the Podero app, or by an
/// earlier tool), for [`crate::sandbox::Builder::existing_users`],
/// [`crate::sandbox::Sandbox::add_users`] and `POST /__sandbox/users` (same JSON fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedUser {
    /// Its id; `None`: a random one.
    pub id: Option<Uuid>,
    /// Its CRM id; several seeded users may share one (the server allows it).
    pub external_user_id: Option<String>,
    /// Its e-mail (must be free in the organization); `None`: the placeholder.
    pub email: Option<String>,
    /// `first_name`.
    pub first_name: Option<String>,
    /// `last_name`.
    pub last_name: Option<String>,
    /// `user` (the default), `admin` or `staff`.
    pub role: Option<String>,
}

impl SeedUser {
    /// A customer with this CRM id and e-mail, a random id and role `user`.
    pub fn new(external_user_id: &str, email: &str) -> Self {
        SeedUser {
            external_user_id: Some(external_user_id.to_owned()),
            email: Some(email.to_owned()),
            ..SeedUser::default()
        }
    }

    /// The same with this id.
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// The same with these names.
    pub fn names(mut self, first: &str, last: &str) -> Self {
        self.first_name = Some(first.to_owned());
        self.last_name = Some(last.to_owned());
        self
    }

    /// The same with this role (`user`, `admin` or `staff`).
    pub fn role(mut self, role: &str) -> Self {
        self.role = Some(role.to_owned());
        self
    }

    /// The user it describes, or why it is not a valid seed.
    fn into_user(self) -> Result<User, String> {
        let mut user = User::new(self.id.unwrap_or_else(Uuid::new_v4));
        let mut fields = Map::new();
        if let Some(role) = self.role {
            if !ROLES.contains(&role.as_str()) {
                return Err(format!("role {role:?} is not one of {}", ROLES.join(", ")));
            }
            fields.insert("role".into(), role.into());
        }
        if let Some(email) = self.email {
            if !email.contains('@') {
                return Err(format!("email {email:?} is not an e-mail address"));
            }
            fields.insert("email".into(), email.into());
        }
        let texts = [
            ("external_user_id", self.external_user_id),
            ("first_name", self.first_name),
            ("last_name", self.last_name),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                fields.insert(name.into(), value.into());
            }
        }
        user.apply(fields);
        Ok(user)
    }
}

/// The roles a user may have.
const ROLES: &[&str] = &["user", "admin", "staff"];

/// Why a create or update of a user was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UserError {
    /// No such user.
    NotFound,
    /// Another user has this e-mail (case-insensitively).
    EmailTaken,
}

/// The key e-mails are unique by: case-insensitive.
fn email_key(email: &str) -> String {
    email.to_lowercase()
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
    /// The user id in the path, when there is a valid one; for a POST user that
    /// created one (answered or not), the new user's id.
    pub user_id: Option<Uuid>,
}

/// A copy of the simulator's state, for assertions and for `GET /__sandbox/state`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// All users of the organization.
    pub users: BTreeMap<Uuid, User>,
    /// Buildings per user id, in creation order (users without buildings are absent).
    pub buildings: BTreeMap<Uuid, Vec<Building>>,
    /// Requests per endpoint name: `token`, `create_user`, `put_user`, `get_user`,
    /// `get_user_by_ext_id`, `list_users`, `create_building`, `update_building`,
    /// `list_buildings`, `get_building`, `create_session`, `get_session`,
    /// `list_heat_pumps`, `update_heat_pump`, `admin`, `unknown` (see [`super::Endpoint::name`]).
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

    /// The users whose `external_user_id` is `external_id`, in id order.
    pub fn users_with_external_id(&self, external_id: &str) -> Vec<&User> {
        self.users
            .values()
            .filter(|u| u.external_user_id.as_deref() == Some(external_id))
            .collect()
    }

    /// `(external id, how many users carry it)` for every external id held by more
    /// than one user: empty means one user per CRM id.
    pub fn external_id_duplicates(&self) -> Vec<(String, usize)> {
        let mut holders: BTreeMap<&str, usize> = BTreeMap::new();
        for id in self
            .users
            .values()
            .filter_map(|u| u.external_user_id.as_deref())
        {
            *holders.entry(id).or_default() += 1;
        }
        holders
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, n)| (id.to_owned(), n))
            .collect()
    }

    /// The user with this e-mail, compared case-insensitively.
    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        let key = email_key(email);
        self.users.values().find(|u| email_key(&u.email) == key)
    }
}

/// The counters of a [`Snapshot`] without its data: `GET /__sandbox/state?counts=1`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    /// Users of the organization.
    pub users: u64,
    /// Users with an `external_user_id`.
    pub users_with_external_id: u64,
    /// Users beyond the first with the same `external_user_id` (0: one user per CRM id).
    #[serde(default)]
    pub duplicate_external_ids: u64,
    /// Users whose role is not `user` (`admin` or `staff`).
    #[serde(default)]
    pub privileged_users: u64,
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
    /// User ids per external id, in the order the users were added.
    by_external_id: HashMap<String, Vec<Uuid>>,
    /// The user holding each e-mail, by [`email_key`].
    by_email: HashMap<String, Uuid>,
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

    /// Adds a user by id alone (no-op when it exists).
    pub fn add_user(&mut self, id: Uuid) {
        if !self.snap.users.contains_key(&id) {
            self.insert_user(User::new(id));
        }
    }

    /// Stores a new user and indexes it (the caller checked its id and e-mail are free).
    fn insert_user(&mut self, user: User) {
        if let Some(external_id) = &user.external_user_id {
            self.index_external_id(external_id.clone(), user.id);
        }
        self.by_email.insert(email_key(&user.email), user.id);
        self.snap.users.insert(user.id, user);
    }

    fn index_external_id(&mut self, external_id: String, id: Uuid) {
        self.by_external_id.entry(external_id).or_default().push(id);
    }

    fn unindex_external_id(&mut self, external_id: &str, id: Uuid) {
        if let Some(ids) = self.by_external_id.get_mut(external_id) {
            ids.retain(|u| *u != id);
            if ids.is_empty() {
                self.by_external_id.remove(external_id);
            }
        }
    }

    /// The user holding `email` (case-insensitively), if any.
    pub fn email_owner(&self, email: &str) -> Option<Uuid> {
        self.by_email.get(&email_key(email)).copied()
    }

    /// The users whose external id is exactly `external_id`.
    pub fn users_by_external_id(&self, external_id: &str) -> &[Uuid] {
        self.by_external_id
            .get(external_id)
            .map_or(&[], Vec::as_slice)
    }

    /// How many heat pumps `user` has (the users list's `num_heat_pumps`).
    pub fn heat_pump_count(&self, user: Uuid) -> usize {
        self.snap.heat_pumps.get(&user).map_or(0, Vec::len)
    }

    /// Creates a user from validated create fields (`email` required); a taken
    /// e-mail is refused. Returns a copy.
    pub fn create_user(&mut self, fields: Map<String, Value>) -> Result<User, UserError> {
        let email = fields.get("email").and_then(Value::as_str).unwrap_or("");
        if self.email_owner(email).is_some() {
            return Err(UserError::EmailTaken);
        }
        let mut user = User::new(Uuid::new_v4());
        user.apply(fields);
        self.insert_user(user.clone());
        Ok(user)
    }

    /// Applies validated PUT fields to user `id`; an e-mail another user holds is refused.
    pub fn update_user(
        &mut self,
        id: Uuid,
        fields: Map<String, Value>,
    ) -> Result<&User, UserError> {
        let Some(user) = self.snap.users.get(&id) else {
            return Err(UserError::NotFound);
        };
        let (old_external, old_email) = (user.external_user_id.clone(), user.email.clone());
        if let Some(Value::String(email)) = fields.get("email")
            && self.email_owner(email).is_some_and(|owner| owner != id)
        {
            return Err(UserError::EmailTaken);
        }
        let user = self.snap.users.get_mut(&id).ok_or(UserError::NotFound)?;
        user.apply(fields);
        let (new_external, new_email) = (user.external_user_id.clone(), user.email.clone());
        if old_external != new_external {
            if let Some(old) = &old_external {
                self.unindex_external_id(old, id);
            }
            if let Some(new) = new_external {
                self.index_external_id(new, id);
            }
        }
        if email_key(&old_email) != email_key(&new_email) {
            self.by_email.remove(&email_key(&old_email));
            self.by_email.insert(email_key(&new_email), id);
        }
        self.snap.users.get(&id).ok_or(UserError::NotFound)
    }

    /// Adds seeded users, all or none: an invalid role, a taken e-mail (also within the
    /// batch) or an existing id refuses the whole batch. Returns their ids in order.
    pub fn seed_users(&mut self, seeds: Vec<SeedUser>) -> Result<Vec<Uuid>, String> {
        let mut users = Vec::with_capacity(seeds.len());
        let mut ids = std::collections::HashSet::new();
        let mut emails = std::collections::HashSet::new();
        for (i, seed) in seeds.into_iter().enumerate() {
            let user = seed.into_user().map_err(|e| format!("user {i}: {e}"))?;
            if self.snap.users.contains_key(&user.id) || !ids.insert(user.id) {
                return Err(format!("user {i}: id {} exists already", user.id));
            }
            let key = email_key(&user.email);
            if self.by_email.contains_key(&key) || !emails.insert(key) {
                return Err(format!("user {i}: email {:?} is taken", user.email));
            }
            users.push(user);
        }
        let ids = users.iter().map(|u| u.id).collect();
        for user in users {
            self.insert_user(user);
        }
        Ok(ids)
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
            duplicate_external_ids: self
                .by_external_id
                .values()
                .map(|ids| ids.len().saturating_sub(1) as u64)
                .sum(),
            privileged_users: snap.users.values().filter(|u| u.role != "user").count() as u64,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_indexes_follow_every_change_of_a_user() {
        let mut state = State::default();
        let created = state
            .create_user(fields(
                json!({"role": "user", "email": "A@x.de", "external_user_id": "C1"}),
            ))
            .expect("created");
        let id = created.id;
        assert_eq!(state.users_by_external_id("C1"), [id]);
        assert_eq!(state.email_owner("a@X.DE"), Some(id));
        let taken = state.create_user(fields(json!({"role": "user", "email": "a@x.de"})));
        assert_eq!(taken.err(), Some(UserError::EmailTaken));
        let changed = fields(json!({"external_user_id": "C2", "email": "b@x.de", "role": "staff"}));
        let user = state.update_user(id, changed).expect("updated");
        assert_eq!(
            (user.email.as_str(), user.role.as_str()),
            ("b@x.de", "staff")
        );
        assert!(state.users_by_external_id("C1").is_empty());
        assert_eq!(state.users_by_external_id("C2"), [id]);
        assert_eq!(
            state.email_owner("a@x.de"),
            None,
            "the old address is free again"
        );
        let same_case = fields(json!({"email": "B@X.de"}));
        assert!(state.update_user(id, same_case).is_ok(), "its own address");
        let cleared = fields(json!({"external_user_id": null}));
        assert!(state.update_user(id, cleared).is_ok());
        assert!(state.users_by_external_id("C2").is_empty());
        let other = state
            .create_user(fields(json!({"role": "user", "email": "c@x.de"})))
            .expect("created");
        let steal = fields(json!({"email": "b@x.de"}));
        assert_eq!(
            state.update_user(other.id, steal).err(),
            Some(UserError::EmailTaken)
        );
        assert_eq!(
            state.update_user(Uuid::nil(), Map::new()).err(),
            Some(UserError::NotFound)
        );
        assert_eq!(state.counts().privileged_users, 1);
    }

    #[test]
    fn a_seed_batch_is_all_or_none_and_may_share_crm_ids() {
        let mut state = State::default();
        let ids = state
            .seed_users(vec![
                SeedUser::new("C1", "a@x.de"),
                SeedUser::new("C1", "b@x.de"),
            ])
            .expect("seeded");
        assert_eq!(state.users_by_external_id("C1"), ids.as_slice());
        assert_eq!(state.counts().duplicate_external_ids, 1);
        let clash = vec![SeedUser::new("C2", "c@x.de"), SeedUser::new("C3", "A@X.DE")];
        assert!(state.seed_users(clash).is_err());
        assert!(
            state.email_owner("c@x.de").is_none(),
            "nothing of the batch was added"
        );
        let bad_role = vec![SeedUser::new("C4", "d@x.de").role("owner")];
        assert!(state.seed_users(bad_role).is_err());
        assert_eq!(state.snap.users.len(), 2);
    }
}
