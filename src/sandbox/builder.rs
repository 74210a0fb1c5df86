//! [`Builder`] (how a test or the `sandbox` command configures the simulator)
//! and [`Sandbox`] (the running server).
//!
//! The accept task owns every connection task in a `JoinSet`, so aborting it
//! (dropping the [`Sandbox`]) also ends stalled responses and idle keep-alive
//! connections.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use super::call::{Config, ListBuildings, Shared};
use super::clock;
use super::faults::{FaultState, Faults};
use super::service;
use super::state::{SeedUser, Snapshot, State};
use super::tls::ServerTls;
use super::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ORG_ID, generated_user_id};

/// Configures and starts a [`Sandbox`].
#[derive(Clone, Debug)]
pub struct Builder {
    config: Config,
    users: Vec<Uuid>,
    faults: Faults,
    seed: u64,
    request_log: bool,
    /// Buildings the users have before any client call (created in the app, say).
    existing: Vec<(Uuid, serde_json::Map<String, serde_json::Value>)>,
    /// Users with a CRM id, e-mail or names that exist before any client call.
    seeded: Vec<SeedUser>,
    tls: Option<ServerTls>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// The demo organization and credentials, no users, 10 h tokens, 201 on
    /// create, the list endpoint enabled, no faults, seed 0, request log on.
    pub fn new() -> Self {
        let config = Config {
            org_id: DEMO_ORG_ID,
            client_id: DEMO_CLIENT_ID.to_owned(),
            client_secret: DEMO_CLIENT_SECRET.to_owned(),
            token_lifetime: Duration::from_secs(36_000),
            create_status: 201,
            list_buildings: ListBuildings::Enabled,
            admin_token: None,
        };
        Builder {
            config,
            users: Vec::new(),
            faults: Faults::default(),
            seed: 0,
            request_log: true,
            existing: Vec::new(),
            seeded: Vec::new(),
            tls: None,
        }
    }

    /// Gives `user` (added if needed) a building it had before any client call, as if the
    /// customer created it in the Podero app: `fields` must hold `name`; the id is random.
    /// Call it twice with one name for two same-named buildings.
    pub fn existing_building(
        mut self,
        user: Uuid,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        self.existing.push((user, fields));
        self
    }

    /// Adds users that exist before any client call, with a CRM id, e-mail, names or role
    /// (see [`SeedUser`]; a few or 100k). Several may share one CRM id; e-mails must be
    /// unique (case-insensitively) and ids new, else [`Builder::start`] fails with
    /// `InvalidInput`.
    pub fn existing_users(mut self, users: impl IntoIterator<Item = SeedUser>) -> Self {
        self.seeded.extend(users);
        self
    }

    /// The organization the server serves (other org ids get 403).
    pub fn org_id(mut self, id: Uuid) -> Self {
        self.config.org_id = id;
        self
    }

    /// The client credentials the token endpoint accepts.
    pub fn credentials(mut self, client_id: &str, client_secret: &str) -> Self {
        self.config.client_id = client_id.to_owned();
        self.config.client_secret = client_secret.to_owned();
        self
    }

    /// Requires `Authorization: Bearer <token>` on the `/__sandbox/*` endpoints (state,
    /// faults, clock, heat pumps); without one they are open.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.config.admin_token = Some(token.into());
        self
    }

    /// Adds users (without an external id).
    pub fn users(mut self, ids: impl IntoIterator<Item = Uuid>) -> Self {
        self.users.extend(ids);
        self
    }

    /// Adds the users of a CSV's `user_id` column (header matched
    /// case-insensitively, trimmed, BOM tolerated); rows whose `user_id` is not
    /// a UUID are skipped (the onboarding job must report them itself).
    pub fn users_from_csv(mut self, path: &Path) -> std::io::Result<Self> {
        self.users.extend(read_csv_users(path)?);
        Ok(self)
    }

    /// Adds `n` users with ids [`generated_user_id`]`(0..n)`.
    pub fn generated_users(mut self, n: usize) -> Self {
        self.users.extend((0..n as u64).map(generated_user_id));
        self
    }

    /// How long tokens live (millisecond precision; `expires_in` reports whole
    /// seconds, rounded down, but the token expires at the exact instant).
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.config.token_lifetime = d;
        self
    }

    /// The status of a successful POST building (the docs allow 200 or 201).
    pub fn create_status(mut self, status: u16) -> Self {
        self.config.create_status = status;
        self
    }

    /// How the undocumented list-buildings endpoint behaves.
    pub fn list_buildings(mut self, mode: ListBuildings) -> Self {
        self.config.list_buildings = mode;
        self
    }

    /// The faults to inject (changeable later with [`Sandbox::set_faults`]).
    pub fn faults(mut self, f: Faults) -> Self {
        self.faults = f;
        self
    }

    /// The seed of the fault generator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Whether to keep a [`super::LogEntry`] per request (counters work either way).
    pub fn request_log(mut self, on: bool) -> Self {
        self.request_log = on;
        self
    }

    /// Serves HTTPS with this certificate instead of plain HTTP.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(self) -> std::io::Result<Sandbox> {
        self.start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
    }

    /// Starts on `addr`.
    pub async fn start_on(self, addr: SocketAddr) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut state = State::default();
        state.log_on = self.request_log;
        for id in self.users {
            state.add_user(id);
        }
        state
            .seed_users(self.seeded)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        for (user, fields) in self.existing {
            state.add_user(user);
            state.add_building(user, fields, 0);
        }
        let shared = Arc::new(Shared {
            config: self.config,
            state: Mutex::new(state),
            faults: Mutex::new(FaultState::new(self.faults, self.seed)),
            started: Instant::now(),
            changed: Notify::new(),
            connections: AtomicU64::new(0),
        });
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), self.tls));
        Ok(Sandbox {
            addr,
            shared,
            task,
            scheme,
        })
    }
}

/// The `user_id` column of a CSV, as UUIDs.
fn read_csv_users(path: &Path) -> std::io::Result<Vec<Uuid>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(std::io::Error::other)?;
    let headers = reader.headers().map_err(std::io::Error::other)?.clone();
    let column = headers
        .iter()
        .position(|h| {
            h.trim_start_matches('\u{feff}')
                .trim()
                .eq_ignore_ascii_case("user_id")
        })
        .ok_or_else(|| {
            let msg = format!("{}: no user_id column in the header row", path.display());
            std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
        })?;
    let mut ids = Vec::new();
    for record in reader.records() {
        let record = record.map_err(std::io::Error::other)?;
        if let Some(id) = record
            .get(column)
            .and_then(|v| Uuid::parse_str(v.trim()).ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<ServerTls>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let shared = Arc::clone(&shared);
                    match &tls {
                        Some(tls) => connections.spawn(serve_tls(stream, shared, tls.clone())),
                        None => connections.spawn(serve_connection(stream, shared)),
                    };
                }
                // Out of file descriptors and the like: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Completes the TLS handshake, then serves HTTP over it. A client that refuses the
/// certificate never gets as far as a request.
async fn serve_tls(stream: TcpStream, shared: Arc<Shared>, tls: ServerTls) {
    let _ = stream.set_nodelay(true);
    if let Ok(stream) = tls.acceptor.accept(stream).await {
        serve_http(stream, shared).await;
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // Small responses on keep-alive connections: Nagle would add ~40 ms each.
    let _ = stream.set_nodelay(true);
    serve_http(stream, shared).await;
}

async fn serve_http<S>(stream: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| service::serve(Arc::clone(&shared), req));
    // An error here is a client hanging up or a dropped-on-purpose response.
    // No header-read timeout: hyper would also apply it to idle keep-alive
    // connections, and a client reusing one just as it closes would see a
    // spurious error. The simulator never closes a connection on its own.
    let _ = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A running simulator. Dropping it shuts the server down (all connections close).
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    scheme: &'static str,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sandbox {
    /// `http://127.0.0.1:PORT`, or `https://...` when serving TLS (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The organization it serves.
    pub fn org_id(&self) -> Uuid {
        self.shared.config.org_id
    }

    /// Replaces the faults (e.g. an outage, then recovery).
    pub fn set_faults(&self, f: Faults) {
        self.shared.faults().set(f);
    }

    /// A copy of the current state.
    pub fn state(&self) -> Snapshot {
        self.shared.state().snapshot()
    }

    /// TCP connections accepted so far (a TLS handshake that failed included): a test
    /// compares it with what a proxy tunnelled, to show every connection went through it.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` requests of `endpoint` (a [`Snapshot::requests`] name) are
    /// in flight at once: arrived, not yet answered. Tests use it to act at a known moment
    /// (kill the client while its POST is on the server) instead of after a sleep.
    pub async fn wait_in_flight(&self, endpoint: &str, n: u64) {
        self.wait(|state| state.in_flight.get(endpoint).is_some_and(|k| *k >= n))
            .await;
    }

    /// Waits until at least `n` requests of `endpoint` have been answered (or dropped).
    pub async fn wait_requests(&self, endpoint: &str, n: u64) {
        self.wait(|state| state.snap.requests.get(endpoint).is_some_and(|k| *k >= n))
            .await;
    }

    async fn wait(&self, condition: impl Fn(&State) -> bool) {
        loop {
            // Registered before the check, so a change between the two is not missed.
            let changed = self.shared.changed.notified();
            if condition(&self.shared.state()) {
                return;
            }
            changed.await;
        }
    }

    /// Adds a user.
    pub fn add_user(&self, id: Uuid) {
        self.shared.state().add_user(id);
    }

    /// Adds users that existed before (see [`Builder::existing_users`]), all or none;
    /// returns their ids in order, or why the batch was refused (a taken e-mail, an
    /// existing id, an unknown role).
    pub fn add_users(
        &self,
        users: impl IntoIterator<Item = SeedUser>,
    ) -> Result<Vec<Uuid>, String> {
        self.shared.state().seed_users(users.into_iter().collect())
    }

    /// Adds `building` (its id and fields as given) to `user`, adding the user if needed:
    /// to recreate the server side of a checkpoint written elsewhere.
    pub fn insert_building(&self, user: Uuid, building: super::Building) {
        let mut state = self.shared.state();
        state.add_user(user);
        state.snap.buildings.entry(user).or_default().push(building);
    }

    /// Sets one field of a building, as a customer editing it in the Podero app would;
    /// returns whether the building exists.
    pub fn edit_building(
        &self,
        user: Uuid,
        id: Uuid,
        field: &str,
        value: serde_json::Value,
    ) -> bool {
        let mut state = self.shared.state();
        let Some(building) = state.building_mut(user, id) else {
            return false;
        };
        if field == "name" {
            building.name = value.as_str().unwrap_or_default().to_owned();
        }
        building.fields.insert(field.to_owned(), value);
        true
    }

    /// Deletes a building, as if removed in the Podero app; returns whether it existed.
    pub fn delete_building(&self, user: Uuid, id: Uuid) -> bool {
        let mut state = self.shared.state();
        let Some(buildings) = state.snap.buildings.get_mut(&user) else {
            return false;
        };
        let before = buildings.len();
        buildings.retain(|b| b.id != id);
        before != buildings.len()
    }

    /// Adds a building named `name` to `user` (adding the user if needed), as
    /// if created earlier; returns its id.
    pub fn add_building(&self, user: Uuid, name: &str) -> Uuid {
        let at_ms = self.shared.now_ms();
        let mut state = self.shared.state();
        state.add_user(user);
        let mut fields = serde_json::Map::new();
        fields.insert("name".into(), name.into());
        state.add_building(user, fields, at_ms).id
    }

    /// Moves the simulator's calendar `days` ahead (negative: back), so Connect links
    /// expire without waiting: a session created now expires at the new today + 1.
    pub fn advance_days(&self, days: i64) {
        self.shared.state().day_offset += days;
    }

    /// The simulator's today, `YYYY-MM-DD` (UTC plus the offset of [`Sandbox::advance_days`]).
    pub fn today(&self) -> String {
        let offset = self.shared.state().day_offset;
        clock::date_string(clock::today_days(offset))
    }

    /// Marks `user` as connected: adds an authenticated heat pump assigned to `building`
    /// (`None`: connected but not assigned to a building yet); returns its id.
    pub fn connect_heat_pump(&self, user: Uuid, building: Option<Uuid>) -> Uuid {
        let pump = super::state::HeatPump {
            id: Uuid::new_v4(),
            building,
            is_authenticated: true,
        };
        let id = pump.id;
        let mut state = self.shared.state();
        state.add_user(user);
        state.snap.heat_pumps.entry(user).or_default().push(pump);
        id
    }
}
