//! Validated settings that `run` and `links` share (each command's own are in its folder:
//! `commands/run/config.rs`, `commands/links/config.rs`). The clap structs of those two
//! stop at their configs; every error names the flag or variable and what to do (exit
//! code 2). The small commands read their few flags directly.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;

use crate::api::{ClientConfig, Credentials, RetryPolicy};
use crate::checkpoint::Identity;
use crate::cli::{ApiArgs, FormatArgs, LogFormat, OutputArgs};
use crate::input::{DEFAULT_MAX_RECORD_BYTES, InputOptions, Source};
use crate::secret::Secret;

/// A configuration problem; the message says which flag or variable and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

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

/// How many jobs run at once, and how long they may finish after a stop request.
#[derive(Clone, Copy, Debug)]
pub struct Workers {
    /// `--concurrency`: users in flight.
    pub concurrency: usize,
    /// `--grace`: after SIGINT/SIGTERM, how long calls in flight may take.
    pub grace: Duration,
}

/// Refuses an output that is one of the files the command reads or keeps, or another
/// output: `--report` and `--out` are emptied when they are opened and `--metrics-file` is
/// renamed over, so `--report onboard.sqlite` destroyed the checkpoint (and with it the
/// record of which buildings exist: the next run would create them again) and `--report
/// export.csv` the input. Checked before any file is opened.
pub fn distinct_outputs(kept: &[Kept], outputs: &[(&str, &Path)]) -> Result<(), ConfigError> {
    for (i, (flag, output)) in outputs.iter().enumerate() {
        let earlier = outputs[..i]
            .iter()
            .map(|(f, p)| (format!("the {f} file"), p.to_path_buf()));
        for (what, other) in kept.iter().cloned().chain(earlier) {
            if same_file(output, &other) {
                return Err(ConfigError(format!(
                    "{flag} {} is {what} ({}): writing {flag} would destroy it. Give {flag} a \
                     path of its own; nothing was written or sent",
                    output.display(),
                    other.display()
                )));
            }
        }
    }
    Ok(())
}

/// A file a command reads or keeps, with what it is (for a message).
pub type Kept = (String, PathBuf);

/// The files `run` and `links` read or keep, for [`distinct_outputs`].
pub fn kept_files(
    input: &InputOptions,
    checkpoint: &Path,
    format: &FormatArgs,
    api: &ApiArgs,
) -> Vec<Kept> {
    let mut kept = vec![("the checkpoint".to_owned(), checkpoint.to_owned())];
    if let Source::Path(path) = &input.source {
        kept.push(("the input CSV".to_owned(), path.clone()));
    }
    let companions = crate::checkpoint::companions(checkpoint);
    kept.extend(companions.map(|(what, path)| (what.to_owned(), path)));
    let named = |what: &str, path: &Option<PathBuf>| path.clone().map(|p| (what.to_owned(), p));
    kept.extend(named("the --mapping file", &format.mapping));
    kept.extend(named("the --ca-cert bundle", &api.ca_cert));
    kept
}

/// Whether two paths name one file: the same inode when both exist (a symlink or another
/// spelling of the path included), the same resolved path when neither does yet.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        (Err(_), Err(_)) => resolved(a) == resolved(b),
        _ => false,
    }
}

/// `path` with its directory made absolute and canonical (when it exists).
fn resolved(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_owned(),
    }
}

/// The CSV to read and how (`INPUT`, `--column`, `--delimiter`, `--encoding`, `--mapping`,
/// `--building-name`). A flag overrides the mapping file's entry for the same column.
pub fn input_options(
    input: &str,
    columns: Vec<(String, String)>,
    format: &FormatArgs,
) -> Result<InputOptions, ConfigError> {
    let mapping = match &format.mapping {
        Some(path) => crate::input::read_mapping(path).map_err(ConfigError)?,
        None => crate::input::Mapping::default(),
    };
    let mut renames: Vec<(String, String)> = mapping
        .renames
        .into_iter()
        .filter(|(column, _)| !columns.iter().any(|(c, _)| c == column))
        .collect();
    renames.extend(columns);
    let default_building_name = match format.building_name.clone().or(mapping.building_name) {
        Some(name) => Some(crate::input::check_building_name(&name).map_err(|why| {
            ConfigError(format!("--building-name \"{}\" {why}", name.escape_debug()))
        })?),
        None => None,
    };
    Ok(InputOptions {
        source: Source::parse(input),
        renames,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        format: format.format(),
        default_building_name,
    })
}

/// Reads an environment variable; injectable for tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, ignoring empty values.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
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
    /// Jobs in flight and the grace period.
    pub workers: Workers,
}

impl Api {
    /// Validates the shared flags and reads the credentials (a dry run may have none).
    pub fn new(args: &ApiArgs, env: Env<'_>, dry_run: bool) -> Result<Self, ConfigError> {
        let org_id = parse_org(&args.org_id)?;
        let base_url = parse_base_url(&args.base_url)?;
        check_positive("--rate", args.rate)?;
        check_positive("--timeout", args.timeout)?;
        check_positive("--connect-timeout", args.connect_timeout)?;
        check_positive("--max-wait", args.max_wait)?;
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
                max_wait: Duration::from_secs_f64(args.max_wait),
                ..RetryPolicy::default()
            },
            pool_size: args.concurrency,
            ca_certs,
        });
        Ok(Api {
            identity: Identity { org_id, base_url },
            client,
            workers: Workers {
                concurrency: args.concurrency,
                grace: Duration::from_secs(args.grace),
            },
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

/// Whether `host` (a URL's host) is this machine.
pub fn is_loopback(host: &str) -> bool {
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
