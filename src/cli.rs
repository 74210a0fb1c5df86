//! What the user typed: clap derive only. Doc comments are the help text. Secrets are
//! never flags (flags show in `ps`); they come from the environment, read in `config`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use uuid::Uuid;

use crate::input;
use crate::sandbox::{DEMO_CLIENT_ID, DEMO_ORG_ID, ListBuildings};

/// Onboard an existing customer base into Podero: set each user's external id, create a
/// building per property, and keep every user → building id in a resumable checkpoint.
#[derive(Debug, Parser)]
#[command(name = "podero-onboard", version, propagate_version = true)]
#[command(after_help = "Try it with no credentials: `podero-onboard demo`.\n\
Exit codes: 0 all rows done · 1 some rows failed/unresolved/invalid · 2 usage or configuration \
error (nothing sent) · 3 aborted (credentials, 403, API down, checkpoint locked/unusable) · \
130 interrupted.")]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Onboard the rows of a CSV: PUT each user's external id, POST each building.
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Create Connect links (device onboarding sessions) for onboarded buildings: one live
    /// link per building, renewed when expired, none once the customer connected.
    #[command(after_help = LINKS_EXAMPLES)]
    Links(Box<LinksArgs>),
    /// Show what a checkpoint holds: rows per state, the last runs.
    #[command(
        after_help = "Examples:\n  podero-onboard status --checkpoint onboard.sqlite\n  \
                            podero-onboard status --checkpoint onboard.sqlite --json"
    )]
    Status(StatusArgs),
    /// Print the user → building map (or the failed rows) from a checkpoint.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Run the whole job on the built-in simulator with a built-in sample CSV (from any folder).
    #[command(after_help = "Examples:\n  \
                            podero-onboard demo\n  \
                            podero-onboard demo --rate 5 --dir /tmp/podero-demo")]
    Demo(DemoArgs),
    /// Serve the Podero simulator, to point `run` at it and try every flag.
    #[command(
        after_help = "Example:\n  podero-onboard sandbox --port 8080 --users samples/users.csv --random-5xx 0.05"
    )]
    Sandbox(Box<SandboxArgs>),
    /// Print shell completions.
    #[command(
        after_help = "Example:\n  podero-onboard completions bash > ~/.local/share/bash-completion/completions/podero-onboard"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

const RUN_EXAMPLES: &str = "\
Credentials come from the environment, never from flags:
  PODERO_CLIENT_ID + PODERO_CLIENT_SECRET   (OAuth2 client credentials), or
  PODERO_TOKEN                              (a bearer token; cannot be renewed)

Examples:
  # see the plan first (sends nothing, needs no credentials)
  podero-onboard run customers.csv --org-id $ORG --checkpoint onboard.sqlite --dry-run
  # against the sandbox first
  podero-onboard run customers.csv --org-id $ORG --checkpoint sandbox.sqlite \\
      --base-url https://sandbox-app.podero.com --report report.csv
  # nightly from cron: quiet, JSON summary on stdout, report for failures
  podero-onboard run export.csv --checkpoint /var/lib/podero/onboard.sqlite \\
      -q --json --report failures.csv
  # after fixing the data of rows that failed permanently
  podero-onboard run fixed.csv --checkpoint onboard.sqlite --only-failed";

const EXPORT_EXAMPLES: &str = "\
Examples:
  podero-onboard export --checkpoint onboard.sqlite > buildings.csv
  podero-onboard export --checkpoint onboard.sqlite --state failed > to-fix.csv
  podero-onboard export --checkpoint onboard.sqlite --format json";

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The CSV of users to onboard, or `-` for standard input. Required columns: user_id
    /// (the Podero user id), external_user_id (your CRM id). Optional: building_name (empty:
    /// update the user only), property_id (your CRM's property id: a renamed building is
    /// updated, not created twice); user fields first_name, last_name, email,
    /// street_and_number, street_add_info, zip_code, town, country (ISO code such as AT),
    /// latitude, longitude; building fields property_type, occupant_type, space_heating,
    /// water_heating, property_size_m2, property_age, num_occupants, photovoltaic,
    /// building_street_and_number, building_street_add_info, building_zip_code,
    /// building_town, building_country. Other headers: map them with --column or --mapping.
    pub input: String,

    /// The checkpoint file (SQLite). Created if missing; re-use it to resume and for nightly syncs.
    #[arg(long)]
    pub checkpoint: PathBuf,

    /// Where the API is and how to talk to it.
    #[command(flatten)]
    pub api: ApiArgs,

    /// Write every row's result as CSV to this file (owner-only permissions).
    #[arg(long)]
    pub report: Option<PathBuf>,

    /// Print a machine-readable summary (JSON) on stdout.
    #[arg(long)]
    pub json: bool,

    /// Write the run's figures in the Prometheus text format to this file (replaced
    /// atomically), e.g. in node_exporter's textfile directory. Written on failure too.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Read a column under another header, e.g. `--column building_name=property`. Repeatable.
    #[arg(long = "column", value_name = "COLUMN=HEADER", value_parser = input::parse_rename)]
    pub columns: Vec<(String, String)>,

    /// How the CSV is written (separator, encoding).
    #[command(flatten)]
    pub format: FormatArgs,

    /// Read the input and the checkpoint, print the plan, send nothing. Exit 0 only if the input is clean.
    #[arg(long)]
    pub dry_run: bool,

    /// Send nothing if any row is invalid.
    #[arg(long)]
    pub strict: bool,

    /// Stop before any call (exit 2) when the input lacks more of the checkpoint's rows
    /// than this: a number of rows (`50`) or a share of them (`10%`). A CRM export cut
    /// short must not pass as a good night; `100%` turns the guard off.
    #[arg(long, value_name = "N|P%", default_value = DEFAULT_MAX_VANISHED,
          value_parser = parse_max_vanished)]
    pub max_vanished: MaxVanished,

    /// Also retry rows that failed permanently (404, 422) although their input did not change.
    #[arg(long)]
    pub retry_failed: bool,

    /// Work only on rows that failed or are unresolved (implies --retry-failed).
    #[arg(long)]
    pub only_failed: bool,

    /// What to do with a building POST whose outcome is unknown (timeout, dropped
    /// connection, 5xx, crash) when the server cannot list buildings to check:
    /// `verify` marks the row unresolved and never re-sends; `repost` sends it again and
    /// risks a duplicate building if the first POST did succeed.
    #[arg(long, value_enum, default_value_t = ResolveUnknown::Verify)]
    pub resolve_unknown: ResolveUnknown,

    /// Rows without user_id: create the Podero user (role "user", the row's e-mail, names
    /// and address, the CRM id as external_user_id) of a CRM id that Podero does not know.
    /// Without it such a row fails. Each CRM id is looked up before it is created, and an
    /// unknown outcome is looked up again before anything is re-sent: one user per CRM id.
    #[arg(long)]
    pub create_users: bool,

    /// Adopt what exists instead of creating a second one. Buildings: before a user's first
    /// building POST, list the user's buildings and adopt one with the row's name (created
    /// in the Podero app, say): one match is adopted and updated with the row's fields,
    /// several are left `unresolved` for a human; needs the list-buildings endpoint, without
    /// it the run stops (exit 3) before any POST. Users (with --create-users): when a new
    /// customer's e-mail is taken, list the organization's users once and give the CRM id
    /// to the user with that e-mail if it has no CRM id (never one that has another).
    #[arg(long)]
    pub adopt_existing: bool,

    /// Progress, logging and output.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The `--resolve-unknown` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ResolveUnknown {
    /// Never re-send without proof that the building does not exist.
    Verify,
    /// Re-send when existence cannot be checked (may create a duplicate).
    Repost,
}

/// Progress and logging.
#[derive(Clone, Debug, Args)]
pub struct OutputArgs {
    /// No progress and no summary on stderr (errors still print).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More logs on stderr: -v one line per row, -vv every request.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds between plain progress lines when stderr is not a terminal (cron, pipes).
    #[arg(long, default_value_t = 60)]
    pub progress_interval: u64,
}

/// Log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The checkpoint file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The checkpoint file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Only rows in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateFilter>,
    /// Print the live Connect links instead (user, building, link, expiry): capabilities,
    /// handle the output like a password.
    #[arg(long, conflicts_with = "state")]
    pub links: bool,
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// CSV with a header.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Row states to filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    /// Building created and user updated.
    Done,
    /// Failed (see the error column).
    Failed,
    /// POST outcome unknown, not verifiable.
    Unresolved,
    /// Not finished yet.
    Pending,
    /// A POST was in flight when a run stopped.
    Posting,
    /// In the checkpoint but not in the last run's input (left untouched on the server).
    Vanished,
}

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its checkpoint and report (recreated on each demo).
    #[arg(long, default_value = "demo-out")]
    pub dir: PathBuf,
    /// The CSV to onboard (default: the built-in export of new customers, written into
    /// --dir as new-customers.csv and onboarded with --create-users).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Requests per second (slow enough to watch).
    #[arg(long, default_value_t = 25.0)]
    pub rate: f64,
}

const LINKS_EXAMPLES: &str = "\
Credentials come from the environment, as for `run`.

Examples:
  # see what would be sent (sends nothing, needs no credentials)
  podero-onboard links customers.csv --checkpoint onboard.sqlite --language de \\
      --price-zone AT --success-url https://partner.example/ok \\
      --cancel-url https://partner.example/cancel --dry-run
  # nightly, after `run`: links created today go to the mailer
  podero-onboard links export.csv --checkpoint onboard.sqlite --language de \\
      --price-zone AT --success-url https://partner.example/ok \\
      --cancel-url https://partner.example/cancel --out links-today.csv -q --json
  # the device-type field is not published: add it without a new release
  podero-onboard links export.csv ... --session-field device_type=hp";

/// Options of `links`.
#[derive(Debug, Args)]
pub struct LinksArgs {
    /// The CSV given to `run` (or `-`): rows whose building is done get a link. Optional
    /// columns: language, price_zone (override the flags per row), email, first_name,
    /// last_name (carried to --out).
    pub input: String,

    /// The checkpoint written by `run` (SQLite); links are recorded in it too.
    #[arg(long)]
    pub checkpoint: PathBuf,

    /// The Connect UI language: sv, de, en, hu, it, et, pl or ro (a `language` column overrides it).
    #[arg(long)]
    pub language: String,

    /// The default price zone, e.g. AT, DE_LU, SE_3 (a `price_zone` column overrides it).
    #[arg(long)]
    pub price_zone: String,

    /// Where the Connect UI sends the customer after connecting (https://).
    #[arg(long)]
    pub success_url: String,

    /// Where the Connect UI sends the customer who cancels (https://).
    #[arg(long)]
    pub cancel_url: String,

    /// Write the links created in this run as a mail-merge CSV (owner-only).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Turn smart optimization on by default for connected devices.
    #[arg(long)]
    pub smart_optimization: bool,

    /// Add a field to every session body, e.g. `device_type=hp`; the value is sent as
    /// JSON if it parses as JSON, else as a string. Repeatable.
    #[arg(long = "session-field", value_name = "KEY=VALUE")]
    pub session_fields: Vec<String>,

    /// Read the CSV and the checkpoint, print what would be done, send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print a machine-readable summary (JSON) on stdout (it holds no link).
    #[arg(long)]
    pub json: bool,

    /// Read a column under another header, e.g. `--column building_name=property`. Repeatable.
    #[arg(long = "column", value_name = "COLUMN=HEADER", value_parser = input::parse_rename)]
    pub columns: Vec<(String, String)>,

    /// How the CSV is written (separator, encoding).
    #[command(flatten)]
    pub format: FormatArgs,

    /// Where the API is and how to talk to it, as for `run`.
    #[command(flatten)]
    pub api: ApiArgs,

    /// The date links are checked against (YYYY-MM-DD, UTC); default: today. TEST HOOK
    /// ONLY (hidden from `--help`): for tests and for rehearsing expiry against the
    /// simulator; a run that uses it warns on stderr.
    #[arg(long, env = "PODERO_ONBOARD_TODAY", hide = true)]
    pub today: Option<String>,

    /// Progress, logging and output.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How the CSV is written: shared by every command that reads the export.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Field separator: `,` `;` or `tab`. Without it, an Excel `sep=;` first line is
    /// honoured, else the one that splits the header into the required columns is used.
    #[arg(long, value_name = ",|;|tab", value_parser = input::parse_delimiter)]
    pub delimiter: Option<input::Delimiter>,

    /// Text encoding of the CSV: utf-8, windows-1252, iso-8859-1 or utf-16. A byte-order
    /// mark selects UTF-8 or UTF-16 by itself. Excel's plain "CSV" on Windows is windows-1252.
    #[arg(long, value_name = "ENCODING", default_value = "utf-8", value_parser = input::parse_encoding)]
    pub encoding: input::Encoding,

    /// A TOML file mapping your export's headers to the known columns, e.g.
    /// `[columns] external_user_id = "Kundennummer"`, `street_and_number = ["Straße",
    /// "Hausnummer"]` (joined by a space), `[defaults] building_name = "Zuhause"`.
    /// `--column` and `--building-name` override its entries.
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,

    /// The building name of rows that have none (no building_name column, or an empty
    /// cell), e.g. `Zuhause` for customers with one home.
    #[arg(long, value_name = "NAME")]
    pub building_name: Option<String>,
}

impl FormatArgs {
    /// The validated format the reader uses.
    pub fn format(&self) -> input::Format {
        input::Format {
            encoding: self.encoding,
            delimiter: self.delimiter,
        }
    }
}

/// Where the API is and how to talk to it: shared by `run` and `links`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The Podero organization (UUID).
    #[arg(long, env = "PODERO_ORG_ID")]
    pub org_id: String,

    /// The API host: https://app.podero.com (production) or https://sandbox-app.podero.com.
    // Plain URLs on purpose: this comment is the `--help` text, where `<...>` would show.
    #[allow(rustdoc::bare_urls)]
    #[arg(
        long,
        env = "PODERO_BASE_URL",
        default_value = "https://app.podero.com"
    )]
    pub base_url: String,

    /// Also trust the CAs in this PEM bundle (e.g. your company's TLS-inspecting proxy), on
    /// top of the system's trust store. Checked at start-up; verification is always on.
    #[arg(long, env = "PODERO_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,

    /// Most requests per second, all requests counted (the job slows down on 429s by itself).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,

    /// Users processed at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// Seconds before a request is given up (a POST that times out is verified, not re-sent).
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,

    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Attempts per request for transient errors (503, other 5xx, network), the first
    /// included. A 429 spends no attempt: see --max-wait.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,

    /// Seconds one request may keep being answered 429 (each Retry-After honoured, every
    /// worker paused) before the run stops, saying so; rows not done stay for the next run.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub max_wait: f64,

    /// Seconds that calls in flight may take after Ctrl-C/SIGTERM before they are abandoned.
    #[arg(long, default_value_t = 30)]
    pub grace: u64,
}

/// Flags of the standalone simulator. It is a test server: the credentials
/// default to the public demo ones. The client secret and the admin token are read from
/// PODERO_SANDBOX_CLIENT_SECRET and PODERO_SANDBOX_ADMIN_TOKEN, never from flags.
#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// CSV whose `user_id` column lists the users that exist.
    #[arg(long, value_name = "CSV")]
    pub users: Option<PathBuf>,
    /// Also create N users with generated ids (5eed0000-0000-4000-8000-000000000000 upwards).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub generate_users: usize,
    /// The organization id to serve.
    #[arg(long, default_value_t = DEMO_ORG_ID)]
    pub org_id: Uuid,
    /// Client id the token endpoint accepts.
    #[arg(long, default_value = DEMO_CLIENT_ID)]
    pub client_id: String,
    /// Token lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 36_000)]
    pub token_lifetime: u64,
    /// Status of a successful building creation (200 or 201).
    #[arg(long, default_value_t = 201, value_parser = clap::value_parser!(u16).range(200..=201))]
    pub create_status: u16,
    /// How the undocumented list-buildings endpoint behaves.
    #[arg(long, value_enum, default_value_t = ListBuildings::Enabled)]
    pub list_buildings: ListBuildings,
    /// Rate limit in requests per second (token bucket over all requests).
    #[arg(long, value_name = "RPS")]
    pub rate_limit: Option<f64>,
    /// Burst size of the rate limit.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub burst: u32,
    /// Probability of a random 429 per API request.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub random_429: f64,
    /// Answer every API request 429 (Retry-After: 1) for this long after start (a storm).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub storm_secs: u64,
    /// Probability of a random 500/502/503 per API request.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub random_5xx: f64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Up to this many more milliseconds, at random.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub jitter_ms: u64,
    /// Probability that a created building's connection is dropped unanswered.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub commit_then_drop: f64,
    /// Probability that a created building's response stalls.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub commit_then_stall: f64,
    /// How long a stalled response waits, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub stall_secs: u64,
    /// Probability that a created building is answered with a 500.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub fail_5xx_after_commit: f64,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not keep a per-request log (counters still work).
    #[arg(long)]
    pub no_request_log: bool,
    /// A building a user already has, as if created in the Podero app:
    /// `USER_ID=NAME`. Repeatable (twice for two same-named buildings); to try
    /// `run --adopt-existing`.
    #[arg(long, value_name = "USER_ID=NAME", value_parser = parse_existing_building)]
    pub existing_building: Vec<(Uuid, String)>,
    /// Serve HTTPS with this PEM certificate chain (leaf first; needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Parses `USER_ID=NAME` for `--existing-building`.
fn parse_existing_building(s: &str) -> Result<(Uuid, String), String> {
    let (user, name) = s.split_once('=').ok_or_else(|| {
        format!("expected USER_ID=NAME, e.g. {DEMO_ORG_ID}=Main House; got {s:?}")
    })?;
    let user = Uuid::parse_str(user.trim()).map_err(|e| format!("{user:?} is not a UUID: {e}"))?;
    if name.trim().is_empty() {
        return Err("no building name after USER_ID=".into());
    }
    Ok((user, name.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_building_flag_takes_user_id_equals_name() {
        let user = DEMO_ORG_ID;
        assert_eq!(
            parse_existing_building(&format!("{user}=Main House")),
            Ok((user, "Main House".to_owned()))
        );
        assert!(parse_existing_building("Main House").is_err());
        assert!(parse_existing_building("nope=Main House").is_err());
        assert!(parse_existing_building(&format!("{user}= ")).is_err());
    }
}

/// The default of `--max-vanished` (why: `commands::run::vanished`).
pub const DEFAULT_MAX_VANISHED: &str = "10%";

/// How many of the checkpoint's rows an input may lack before the run stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxVanished {
    /// At most this many rows.
    Rows(u64),
    /// At most this share of the checkpoint's rows, in percent (0 to 100).
    Percent(f64),
}

impl std::fmt::Display for MaxVanished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxVanished::Rows(n) => write!(f, "{n}"),
            MaxVanished::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Parses `N` or `P%` (clap's value parser for `--max-vanished`).
pub fn parse_max_vanished(s: &str) -> Result<MaxVanished, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "expected a number of rows (e.g. 50) or a share of the checkpoint's rows from 0% to \
             100% (e.g. 10%); got \"{}\"",
            s.escape_debug()
        )
    };
    match s.strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(MaxVanished::Percent(p)),
            _ => Err(bad()),
        },
        None => s.parse::<u64>().map(MaxVanished::Rows).map_err(|_| bad()),
    }
}
