//! Validated settings: what the program uses. Nothing past `lib.rs` sees the clap structs,
//! and every error here names the flag or variable and what to do (exit code 2).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

use crate::api::{ClientConfig, Credentials, RetryPolicy};
use crate::checkpoint::Identity;
use crate::cli::{ApiArgs, LogFormat, OutputArgs, ResolveUnknown, RunArgs};
use crate::commands::run::plan;
use crate::engine::Settings;
use crate::input::{DEFAULT_MAX_RECORD_BYTES, InputOptions, Source};
use crate::secret::Secret;

/// A configuration problem; the message says which flag or variable and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Everything `run` needs, validated.
#[derive(Debug)]
pub struct RunConfig {
    /// The CSV.
    pub input: InputOptions,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Where the checkpoint belongs.
    pub identity: Identity,
    /// The API client (credentials are `None` only for a dry run without them).
    pub client: Option<ClientConfig>,
    /// The pipeline.
    pub settings: Settings,
    /// `--report`.
    pub report: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// `--metrics-file`.
    pub metrics_file: Option<PathBuf>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--strict`.
    pub strict: bool,
    /// Progress and logs.
    pub output: Output,
}

/// How much to say on stderr.
#[derive(Clone, Debug)]
pub struct Output {
    /// `-q`.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// Plain progress line period when stderr is not a terminal.
    pub progress_interval: Duration,
}

impl From<&OutputArgs> for Output {
    fn from(args: &OutputArgs) -> Self {
        Output {
            quiet: args.quiet,
            verbose: args.verbose,
            log_format: args.log_format,
            progress_interval: Duration::from_secs(args.progress_interval.max(1)),
        }
    }
}

/// Reads an environment variable; injectable for tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, ignoring empty values.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl RunConfig {
    /// Validates `run`'s arguments and the environment.
    pub fn new(args: RunArgs, env: Env<'_>) -> Result<Self, ConfigError> {
        let api = Api::new(&args.api, env, args.dry_run)?;
        Ok(RunConfig {
            input: InputOptions {
                source: Source::parse(&args.input),
                renames: args.columns,
                max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
                format: args.format.format(),
            },
            checkpoint: args.checkpoint,
            identity: api.identity,
            client: api.client,
            settings: Settings {
                concurrency: args.api.concurrency,
                plan: plan::Options {
                    retry_failed: args.retry_failed,
                    only_failed: args.only_failed,
                },
                repost_unknown: args.resolve_unknown == ResolveUnknown::Repost,
                settle: Duration::from_secs(1),
                max_posts: args.api.max_attempts,
                grace: Duration::from_secs(args.grace),
                adopt_existing: args.adopt_existing,
            },
            report: args.report,
            json: args.json,
            metrics_file: args.metrics_file,
            dry_run: args.dry_run,
            strict: args.strict,
            output: Output::from(&args.output),
        })
    }
}

/// The message for a run without credentials.
pub const MISSING_CREDENTIALS: &str = "no credentials: set PODERO_CLIENT_ID and PODERO_CLIENT_SECRET \
(OAuth2 client credentials of your Podero organization), or PODERO_TOKEN (a bearer token), in \
the environment. They are never accepted as flags, so they do not show in `ps`.";

/// The credentials in the environment (`None`: none set); shared by `run` and `links`.
pub fn credentials(env: Env<'_>) -> Result<Option<Credentials>, ConfigError> {
    match (
        env("PODERO_CLIENT_ID"),
        env("PODERO_CLIENT_SECRET"),
        env("PODERO_TOKEN"),
    ) {
        (Some(id), Some(secret), _) => Ok(Some(Credentials::Client {
            id,
            secret: Secret::new(secret),
        })),
        (Some(_), None, None) => Err(ConfigError(
            "PODERO_CLIENT_ID is set but PODERO_CLIENT_SECRET is not: set both".into(),
        )),
        (None, Some(_), None) => Err(ConfigError(
            "PODERO_CLIENT_SECRET is set but PODERO_CLIENT_ID is not: set both".into(),
        )),
        (_, _, Some(token)) => Ok(Some(Credentials::Token(Secret::new(token)))),
        (None, None, None) => Ok(None),
    }
}

/// What `run` and `links` share, validated: the environment a checkpoint belongs to and
/// the client to reach it (`None` for a dry run without credentials).
pub struct Api {
    /// The organization and host.
    pub identity: Identity,
    /// The HTTP client's settings.
    pub client: Option<ClientConfig>,
}

impl Api {
    /// Validates the shared flags and reads the credentials (a dry run may have none).
    pub fn new(args: &ApiArgs, env: Env<'_>, dry_run: bool) -> Result<Self, ConfigError> {
        let org_id = parse_org(&args.org_id)?;
        let base_url = parse_base_url(&args.base_url)?;
        check_positive("--rate", args.rate)?;
        check_positive("--timeout", args.timeout)?;
        check_positive("--connect-timeout", args.connect_timeout)?;
        if !(1..=1024).contains(&args.concurrency) {
            return Err(ConfigError(
                "--concurrency must be between 1 and 1024".into(),
            ));
        }
        if args.max_attempts == 0 {
            return Err(ConfigError("--max-attempts must be at least 1".into()));
        }
        let credentials = match credentials(env)? {
            Some(credentials) => Some(credentials),
            None if dry_run => None,
            None => return Err(ConfigError(MISSING_CREDENTIALS.into())),
        };
        let ca_certs = ca_certs(args.ca_cert.as_deref())?;
        let client = credentials.map(|credentials| ClientConfig {
            base_url: base_url.clone(),
            org_id,
            credentials,
            rate: args.rate,
            timeout: Duration::from_secs_f64(args.timeout),
            connect_timeout: Duration::from_secs_f64(args.connect_timeout),
            retry: RetryPolicy {
                max_attempts: args.max_attempts,
                ..RetryPolicy::default()
            },
            pool_size: args.concurrency,
            ca_certs,
        });
        Ok(Api {
            identity: Identity { org_id, base_url },
            client,
        })
    }
}

/// The extra CAs of `--ca-cert`, read and checked now so a bad bundle stops the start.
pub fn ca_certs(path: Option<&std::path::Path>) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    path.map_or(Ok(Vec::new()), |path| {
        crate::api::tls::load_ca_bundle(path).map_err(ConfigError)
    })
}

/// `--org-id` as a UUID, or the message saying what to use.
pub fn parse_org(value: &str) -> Result<Uuid, ConfigError> {
    Uuid::try_parse(value.trim()).map_err(|_| {
        ConfigError(format!(
            "--org-id {value:?} is not a UUID: use your Podero organization id (PODERO_ORG_ID), \
             e.g. 3fa85f64-5717-4562-b3fc-2c963f66afa6"
        ))
    })
}

/// Scheme and host only. `https://` is required except on loopback (the simulator), so
/// the token never crosses a network in clear text.
pub fn parse_base_url(value: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError(format!("--base-url {value:?} {why}"));
    let url = reqwest::Url::parse(value.trim()).map_err(|_| {
        bad("is not a URL: use https://app.podero.com or https://sandbox-app.podero.com")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "contains credentials: put them in the environment instead",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err(bad(
            "must be scheme and host only, e.g. https://app.podero.com",
        ));
    }
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(bad(
                "uses http://: only https:// is allowed, except for localhost",
            ));
        }
        _ => return Err(bad("must start with https://")),
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_positive(flag: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "{flag} must be a positive number, got {value}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_requires_https_except_on_loopback() {
        assert_eq!(
            parse_base_url("https://app.podero.com/").unwrap(),
            "https://app.podero.com"
        );
        assert!(parse_base_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_base_url("http://localhost:1").is_ok());
        assert!(parse_base_url("http://[::1]:1").is_ok());
        assert!(parse_base_url("http://app.podero.com").is_err());
        assert!(parse_base_url("http://10.0.0.1").is_err());
        assert!(parse_base_url("https://app.podero.com/api").is_err());
        assert!(parse_base_url("https://u:p@app.podero.com").is_err());
        assert!(parse_base_url("ftp://app.podero.com").is_err());
    }

    #[test]
    fn credentials_come_in_pairs() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(credentials(&env(&[("PODERO_CLIENT_ID", "a")])).is_err());
        assert!(matches!(
            credentials(&env(&[("PODERO_TOKEN", "t")])),
            Ok(Some(Credentials::Token(_)))
        ));
        assert!(matches!(credentials(&env(&[])), Ok(None)));
        let both = credentials(&env(&[
            ("PODERO_CLIENT_ID", "a"),
            ("PODERO_CLIENT_SECRET", "s"),
        ]));
        assert!(format!("{both:?}").contains("[redacted]"));
        assert!(!format!("{both:?}").contains("\"s\""));
    }
}
