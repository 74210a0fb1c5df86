//! `run`'s validated settings: the clap struct stops here, and every error names the flag
//! and what to do (exit code 2). What `run` shares with `links` is validated in
//! `crate::config`.

use std::path::PathBuf;
use std::time::Duration;

use super::plan;
use std::sync::Arc;

use crate::api::{CallError, ClientConfig, Directory};
use crate::checkpoint::Identity;
use crate::cli::{ResolveUnknown, RunArgs};
use crate::config::{self, ConfigError, Env, Output, Workers};
use crate::input::InputOptions;

/// The organization's user list, read at most once per run (at run start when it spares
/// new customers' lookups, see `listed`; else when a taken e-mail first needs it with
/// `--adopt-existing`), shared by every job.
pub type SharedDirectory = Arc<tokio::sync::OnceCell<Result<Arc<Directory>, CallError>>>;

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
    /// Jobs in flight and the grace period.
    pub workers: Workers,
    /// How each user's job behaves.
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
    /// `--max-vanished`.
    pub max_vanished: super::vanished::MaxVanished,
    /// Progress and logs.
    pub output: Output,
}

/// How a user's job behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Which rows to work on.
    pub plan: plan::Options,
    /// Re-POST a building whose earlier POST's outcome cannot be verified.
    pub repost_unknown: bool,
    /// Wait before checking an unknown outcome, so a slow server can finish the request.
    pub settle: Duration,
    /// Most POSTs per row and run when their outcomes keep being unknown.
    pub max_posts: u32,
    /// `--adopt-existing`: list a user's buildings before its first POST and adopt one of
    /// the row's name; with `--create-users`, adopt the user holding a new customer's e-mail.
    pub adopt_existing: bool,
    /// The organization's user list, read at most once per run (new customers,
    /// `--adopt-existing`).
    pub directory: SharedDirectory,
}

impl RunConfig {
    /// Validates `run`'s arguments and the environment.
    pub fn new(args: RunArgs, env: Env<'_>) -> Result<Self, ConfigError> {
        let api = config::Api::new(&args.api, env, args.dry_run)?;
        let input = config::input_options(&args.input, args.columns, &args.format)?;
        let kept = config::kept_files(&input, &args.checkpoint, &args.format, &args.api);
        let outputs = [
            ("--report", &args.report),
            ("--metrics-file", &args.metrics_file),
        ];
        let outputs: Vec<_> = outputs
            .iter()
            .filter_map(|(flag, path)| Some((*flag, path.as_deref()?)))
            .collect();
        config::distinct_outputs(&kept, &outputs)?;
        Ok(RunConfig {
            input,
            checkpoint: args.checkpoint,
            identity: api.identity,
            client: api.client,
            workers: api.workers,
            settings: Settings {
                plan: plan::Options {
                    retry_failed: args.retry_failed,
                    only_failed: args.only_failed,
                    create_users: args.create_users,
                },
                repost_unknown: args.resolve_unknown == ResolveUnknown::Repost,
                settle: Duration::from_secs(1),
                max_posts: args.api.max_attempts,
                adopt_existing: args.adopt_existing,
                directory: Default::default(),
            },
            report: args.report,
            json: args.json,
            metrics_file: args.metrics_file,
            dry_run: args.dry_run,
            strict: args.strict,
            max_vanished: args.max_vanished,
            output: Output::from(&args.output),
        })
    }
}
