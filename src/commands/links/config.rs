//! `links`' validated settings. Every flag is checked before anything is read or sent, so a
//! bad flag exits 2 having sent nothing; the messages name the flag and the allowed values.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::api::ClientConfig;
use crate::checkpoint::Identity;
use crate::cli::LinksArgs;
use crate::config::{self, ConfigError, Env, Output, Workers};
use crate::date::parse_date;
use crate::input::InputOptions;

/// The Connect UI languages the session accepts.
pub const LANGUAGES: &[&str] = &["sv", "de", "en", "hu", "it", "et", "pl", "ro"];
/// The price zones the session accepts (`price_zone_default`).
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
/// Longest `success_url` / `cancel_url` the API accepts.
pub const MAX_URL_CHARS: usize = 8000;
/// Body fields the job sets itself; `--session-field` may not override them.
const OWN_FIELDS: &[&str] = &[
    "language",
    "price_zone_default",
    "success_url",
    "cancel_url",
    "user_id",
    "building_id",
    "is_smart_optimization_active_default",
];

/// Everything `links` needs, validated.
#[derive(Debug)]
pub struct LinksConfig {
    /// The CSV.
    pub input: InputOptions,
    /// The checkpoint (must exist: `run` wrote it).
    pub checkpoint: PathBuf,
    /// Where the checkpoint belongs.
    pub identity: Identity,
    /// The API client (`None` only for a dry run without credentials).
    pub client: Option<ClientConfig>,
    /// The session fields every row shares (language and price zone are per row).
    pub session: SessionDefaults,
    /// Users in flight at once and the grace period.
    pub workers: Workers,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// The date links are checked against, `YYYY-MM-DD` (UTC).
    pub today: String,
    /// `today` came from the hidden test hook (`--today` / `PODERO_ONBOARD_TODAY`), not
    /// the clock.
    pub today_overridden: bool,
    /// Logs.
    pub output: Output,
}

/// What goes into every session body.
#[derive(Clone, Debug)]
pub struct SessionDefaults {
    /// `--language` (a row's `language` overrides it).
    pub language: String,
    /// `--price-zone` (a row's `price_zone` overrides it).
    pub price_zone: String,
    /// `--success-url`.
    pub success_url: String,
    /// `--cancel-url`.
    pub cancel_url: String,
    /// `--smart-optimization`.
    pub smart_optimization: bool,
    /// `--session-field` values.
    pub extra: Map<String, Value>,
}

impl LinksConfig {
    /// Validates `links`' arguments and the environment.
    pub fn new(args: LinksArgs, env: Env<'_>) -> Result<Self, ConfigError> {
        let session = SessionDefaults {
            language: language(&args.language).map_err(|why| flag("--language", why))?,
            price_zone: price_zone(&args.price_zone).map_err(|why| flag("--price-zone", why))?,
            success_url: url(&args.success_url).map_err(|why| flag("--success-url", why))?,
            cancel_url: url(&args.cancel_url).map_err(|why| flag("--cancel-url", why))?,
            smart_optimization: args.smart_optimization,
            extra: session_fields(&args.session_fields)?,
        };
        // TEST HOOK ONLY: `--today` / `PODERO_ONBOARD_TODAY` is hidden from `--help`. It
        // exists so tests and simulator rehearsals can move the job's calendar with the
        // simulator's clock; in production it would make expired links look valid (or the
        // reverse), so a run that uses it says so on stderr (`warn_if_today_overridden`).
        let today_overridden = args.today.is_some();
        let today = match &args.today {
            Some(day) => parse_date(day).ok_or_else(|| {
                ConfigError(format!("--today {day:?} is not a date: write YYYY-MM-DD"))
            })?,
            None => crate::date::today(),
        };
        let api = config::Api::new(&args.api, env, args.dry_run)?;
        let input = config::input_options(&args.input, args.columns, &args.format)?;
        let kept = config::kept_files(&input, &args.checkpoint, &args.format, &args.api);
        if let Some(out) = &args.out {
            config::distinct_outputs(&kept, &[("--out", out)])?;
        }
        Ok(LinksConfig {
            input,
            checkpoint: args.checkpoint,
            identity: api.identity,
            client: api.client,
            session,
            workers: api.workers,
            out: args.out,
            json: args.json,
            dry_run: args.dry_run,
            today,
            today_overridden,
            output: Output::from(&args.output),
        })
    }
}

/// Says on stderr (unless `-q`) that the test hook set today's date, so a forgotten
/// `PODERO_ONBOARD_TODAY` in a production environment cannot go unnoticed.
pub fn warn_if_today_overridden(config: &LinksConfig) {
    if config.today_overridden {
        tracing::warn!(
            "today is {} from --today/PODERO_ONBOARD_TODAY, a test hook (not the clock): \
             unset it outside tests and rehearsals",
            config.today
        );
    }
}

fn flag(name: &str, why: String) -> ConfigError {
    ConfigError(format!("{name} {why}"))
}

/// A language, in the documented spelling (case-insensitive match). The error is the
/// phrase after the flag or column name.
pub fn language(value: &str) -> Result<String, String> {
    choice(value, LANGUAGES, "a Connect UI language")
}

/// A price zone, in the documented spelling (case-insensitive match).
pub fn price_zone(value: &str) -> Result<String, String> {
    choice(value, PRICE_ZONES, "a Podero price zone").map_err(|why| {
        if value.trim().eq_ignore_ascii_case("DE") {
            format!("{why} (Germany is DE_LU)")
        } else {
            why
        }
    })
}

fn choice(value: &str, allowed: &[&str], what: &str) -> Result<String, String> {
    let value = value.trim();
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .map(|a| (*a).to_owned())
        .ok_or_else(|| {
            // Debug formatting escapes control characters; long values are cut.
            let shown: String = value.chars().take(40).collect();
            format!("{shown:?} is not {what}: use one of {}", allowed.join(", "))
        })
}

/// A redirect URL: `https://` (http only on loopback), at most [`MAX_URL_CHARS`].
pub fn url(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.chars().count() > MAX_URL_CHARS {
        return Err(format!(
            "is longer than {MAX_URL_CHARS} characters: use a shorter URL"
        ));
    }
    let parsed = reqwest::Url::parse(value).map_err(|_| {
        format!("{value:?} is not a URL: write e.g. https://partner.example/connected")
    })?;
    let loopback = config::is_loopback(parsed.host_str().unwrap_or_default());
    match parsed.scheme() {
        "https" => Ok(value.to_owned()),
        "http" if loopback => Ok(value.to_owned()),
        _ => Err(format!(
            "{value:?} must start with https:// (http:// only for localhost): customers open it"
        )),
    }
}

/// `KEY=VALUE` pairs: the value is JSON if it parses as JSON, else a string.
fn session_fields(pairs: &[String]) -> Result<Map<String, Value>, ConfigError> {
    let mut fields = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(ConfigError(format!(
                "--session-field {pair:?} is not KEY=VALUE: write e.g. --session-field device_type=hp"
            )));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError(format!(
                "--session-field {pair:?} has no key before '='"
            )));
        }
        if OWN_FIELDS.contains(&key) {
            return Err(ConfigError(format!(
                "--session-field {key}=... would override a field the job sets; use the \
                 matching flag (--language, --price-zone, --success-url, --cancel-url, \
                 --smart-optimization) instead"
            )));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        fields.insert(key.to_owned(), value);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_examples_are_refused_with_the_allowed_values() {
        let error = language("fr").unwrap_err();
        assert!(error.contains("sv, de, en"), "{error}");
        let error = price_zone("DE").unwrap_err();
        assert!(error.contains("DE_LU"), "{error}");
        assert_eq!(language("DE").unwrap(), "de");
        assert_eq!(price_zone("se_3").unwrap(), "SE_3");
    }

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        assert!(url("https://partner.example/ok").is_ok());
        assert!(url("http://127.0.0.1:9/ok").is_ok());
        assert!(url("http://partner.example/ok").is_err());
        assert!(url("partner.example").is_err());
        assert!(url(&format!("https://a.example/{}", "x".repeat(8000))).is_err());
    }

    #[test]
    fn session_fields_are_json_when_they_parse() {
        let fields =
            session_fields(&["device_type=hp".into(), "n=3".into(), "o={\"a\":1}".into()]).unwrap();
        assert_eq!(fields["device_type"], Value::String("hp".into()));
        assert_eq!(fields["n"], Value::from(3));
        assert!(fields["o"].is_object());
        assert!(session_fields(&["user_id=x".into()]).is_err());
        assert!(session_fields(&["novalue".into()]).is_err());
    }
}
