//! `links`: the onboarding step after the building, a Connect link (device onboarding
//! session) per onboarded building, in bulk.
//!
//! The recipe ([`links`]): fail early (flags, lock, checkpoint, `--out` path, input header,
//! credentials) → read the CSV, join it with the checkpoint and stage it on disk
//! ([`targets`]) → drive one job per user on the shared [`engine`](crate::engine), paged
//! through the checkpoint's single writer: per user ([`worker`]) list the heat pumps once,
//! then per building connected / still valid / create (intent first, through the writer)
//! → one consumer counts, logs and writes `--out` as links arrive, and feeds the progress
//! display → [`summary`]. Memory stays flat: a page and the users in flight, whatever the
//! file size.
//!
//! One live link per building: a link is reused while its `expiration_date` is today or
//! later (UTC); only missing or expired links are created, so a second run on the same day
//! sends no session POST. A building whose customer connected gets no link, ever.
//! Links are capabilities: logs name the row, never the session or the link.

pub mod config;
pub mod out;
pub mod owners;
pub mod summary;
pub mod targets;
pub mod worker;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::api::Directory;
use crate::api::connect::Session;
use crate::checkpoint::links::{LinkHistory, Target};
use crate::checkpoint::writer::{Sender, WriteError, Writer};
use crate::checkpoint::{Checkpoint, Lock};
use crate::engine::{self, Drive, Ending, Pages};
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::input;
use crate::progress::Reading;
use crate::report::{self, Requests};
use crate::shutdown::Shutdown;
use config::LinksConfig;
use out::{OutFate, OutFile};
use summary::{LinksSummary, RowFailure};
use targets::TargetCounts;
use worker::{Context, LinkJob, LinkResult, Outcome};

/// Columns of the `--out` mail-merge file.
pub const OUT_HEADER: [&str; 10] = [
    "user_id",
    "external_user_id",
    "email",
    "first_name",
    "last_name",
    "building_name",
    "building_id",
    "session_id",
    "link",
    "expires_on",
];

/// Runs `links` to its exit code (errors before any call are `Err`).
pub async fn links(config: LinksConfig, shutdown: Shutdown) -> Result<ExitCode, AppError> {
    let started = Instant::now();
    if !config.checkpoint.exists() {
        return Err(AppError::Usage(format!(
            "checkpoint {} does not exist: run `podero-onboard run` first (links go to \
             buildings it created), or check --checkpoint",
            config.checkpoint.display()
        )));
    }
    let _lock = Lock::acquire(&config.checkpoint)?;
    let checkpoint = Checkpoint::open_for_run(&config.checkpoint, &config.identity)?;
    let out = config.out.as_deref().map(OutFile::open).transpose()?;
    let reader = engine::open_input(&config.input).await?;
    warn_without_email(&reader);
    let client = engine::connect(config.client.as_ref().filter(|_| !config.dry_run)).await?;
    config::warn_if_today_overridden(&config);
    let command = if config.dry_run {
        "links-dry-run"
    } else {
        "links"
    };
    let run_id = checkpoint.begin_run(command, reader.source_name())?;
    let (checkpoint, staged) = stage(checkpoint, reader, &config).await?;
    checkpoint.record_input(run_id, None, staged.rows_read)?;
    let checks = checkpoint.heat_pump_checks()?;
    let mut summary = LinksSummary::new(&config, run_id, &staged);
    let writer = Writer::spawn(checkpoint, run_id, false);
    let shown = Arc::new(Mutex::new(Reading::default()));
    let progress = engine::show_progress(&config.output, client.as_ref(), staged.targets, {
        let shown = shown.clone();
        move || *shown.lock().expect("progress lock")
    });
    let ending = match &client {
        Some(client) => {
            let (owners, way) = owners::heat_pump_owners(client, checks).await;
            summary.connections_checked_by = way;
            let drive = Drive::new(client, &shutdown, config.workers);
            let sink = Sink::new(&mut summary, shown);
            let work = Work {
                writer: writer.sender(),
                owners: owners.as_ref(),
            };
            send(&config, &drive, work, out, sink).await
        }
        None => dry_plan(&config.today, writer.sender(), out, &mut summary).await,
    };
    progress.finish().await;
    let (checkpoint, written) = writer.finish();
    let ending = ending.after_writer(written);
    summary.duration_secs = started.elapsed().as_secs_f64();
    summary.requests = Requests::of(client.as_ref());
    summary.conclude(ending, config.dry_run);
    finish(&config, &checkpoint, &summary)?;
    Ok(summary.header.exit_code)
}

/// Records the run's end, then the summary on stderr and `--json` on stdout.
fn finish(
    config: &LinksConfig,
    checkpoint: &Checkpoint,
    summary: &LinksSummary,
) -> Result<(), AppError> {
    let header = &summary.header;
    checkpoint.end_run(header.run_id, header.exit_code as i32, &summary.json())?;
    if !config.output.quiet || header.exit_code != ExitCode::Success {
        eprint!("{}", summary.text());
    }
    if config.json {
        report::print_stdout(&summary.json())?;
    }
    Ok(())
}

/// The mail merge needs addresses: say so before anything is sent when the file has none.
fn warn_without_email(reader: &input::Reader) {
    if !reader.has_column("email") {
        tracing::warn!(
            "{}: no email column, so --out and export --links have no address to mail the \
             links to; add the customers' email column, or map yours with --column email=HEADER",
            reader.source_name()
        );
    }
}

/// Reads, joins and stages the input on a blocking thread.
async fn stage(
    checkpoint: Checkpoint,
    reader: input::Reader,
    config: &LinksConfig,
) -> Result<(Checkpoint, TargetCounts), AppError> {
    let defaults = config.session.clone();
    let (checkpoint, staged) = tokio::task::spawn_blocking(move || {
        let staged = targets::stage(reader, &checkpoint, &defaults);
        (checkpoint, staged)
    })
    .await
    .expect("reading the input panicked");
    let staged = staged?;
    if staged.rows_read == 0 {
        return Err(AppError::no_data_rows(&config.input.source));
    }
    Ok((checkpoint, staged))
}

/// The staged buildings, paged through the writer.
struct TargetPages(Sender);

impl Pages for TargetPages {
    type Row = Target;
    type Work = Target;
    type Cursor = (String, u64);
    type Key = Uuid;

    async fn fetch(
        &mut self,
        after: Option<(String, u64)>,
        limit: usize,
    ) -> Result<Vec<Target>, WriteError> {
        self.0.target_page(after, limit).await
    }

    fn cursor(target: &Target) -> (String, u64) {
        (target.user_id.to_string(), target.line)
    }

    fn keep(&mut self, page: Vec<Target>) -> Vec<Target> {
        page
    }

    fn key(target: &Target) -> Uuid {
        target.user_id
    }
}

/// Every staged building, one job per user, in key order.
fn link_jobs(writer: Sender) -> impl futures::Stream<Item = Result<LinkJob, WriteError>> {
    engine::jobs(TargetPages(writer)).map_ok(LinkJob::from)
}

/// What the workers are given besides the flags.
struct Work<'a> {
    writer: Sender,
    /// Users with heat pumps, from the user list (`None`: ask each customer).
    owners: Option<&'a Directory>,
}

/// Every user through the workers on the engine, and the `--out` file, to the end; an
/// `--out` failure becomes the run's ending, so the summary is still recorded.
async fn send(
    config: &LinksConfig,
    drive: &Drive<'_>,
    work: Work<'_>,
    out: Option<OutFile>,
    mut sink: Sink<'_>,
) -> Ending {
    let writer = work.writer;
    sink.out = out;
    let ctx = Context {
        client: drive.client,
        writer: &writer,
        defaults: &config.session,
        today: &config.today,
        owners: work.owners,
    };
    let work = |job| worker::process(&ctx, job);
    let ending = drive
        .run(link_jobs(writer.clone()), work, |outcome| {
            sink.record(&outcome)
        })
        .await;
    let ending = match (ending, sink.out_failed) {
        (Ending::Aborted(reason), _) => Ending::Aborted(reason),
        (_, Some(error)) => Ending::Aborted(format!(
            "cannot write --out: {error}; the links are recorded in the checkpoint (export --links)"
        )),
        (ending, None) => ending,
    };
    let fate = sink.out.take().map(finish_out).transpose();
    match fate {
        Err(reason) => Ending::Aborted(reason),
        Ok(fate) => {
            sink.summary.out = fate;
            ending
        }
    }
}

/// Finishes `--out`; the error is the run's abort reason.
fn finish_out(out: OutFile) -> Result<OutFate, String> {
    let path = out.path().display().to_string();
    out.finish()
        .map_err(|e| format!("cannot write --out {path}: {e}"))
}

/// What a real run would do, from the checkpoint alone (new connections are not known):
/// the same paged jobs, nothing sent; `--out` is left as it was (a new one gets the header).
async fn dry_plan(
    today: &str,
    writer: Sender,
    out: Option<OutFile>,
    summary: &mut LinksSummary,
) -> Ending {
    match out.map(finish_out).transpose() {
        Ok(fate) => summary.out = fate,
        Err(reason) => return Ending::Aborted(reason),
    }
    let counts = &mut summary.links;
    let mut jobs = std::pin::pin!(link_jobs(writer));
    while let Some(job) = jobs.next().await {
        let job = match job {
            Ok(job) => job,
            Err(error) => return Ending::Aborted(error.to_string()),
        };
        for target in job.targets {
            counts.add(&planned(today, &target.history));
        }
    }
    Ending::Completed
}

fn planned(today: &str, history: &LinkHistory) -> LinkResult {
    match history {
        LinkHistory::Connected => LinkResult::Connected {
            newly: false,
            assigned: false,
        },
        LinkHistory::Live(expires) if worker::still_valid(expires, today) => LinkResult::StillValid,
        history => LinkResult::Created {
            session: placeholder_session(),
            renewed: matches!(history, LinkHistory::Live(_)),
        },
    }
}

fn placeholder_session() -> Session {
    Session {
        id: Uuid::nil(),
        authentication_url: String::new(),
        expiration_date: String::new(),
    }
}

/// Where outcomes go: the summary's counts and failures, the progress reading, `--out`.
struct Sink<'a> {
    summary: &'a mut LinksSummary,
    out: Option<OutFile>,
    out_failed: Option<String>,
    shown: Arc<Mutex<Reading>>,
}

impl<'a> Sink<'a> {
    fn new(summary: &'a mut LinksSummary, shown: Arc<Mutex<Reading>>) -> Self {
        Sink {
            summary,
            out: None,
            out_failed: None,
            shown,
        }
    }

    /// Counts, logs (`-v`: the row, never the link) and writes one outcome.
    fn record(&mut self, outcome: &Outcome) {
        let t = &outcome.target;
        let (line, user, building) = (t.line, t.user_id, &t.building_name);
        self.summary.links.add(&outcome.result);
        *self.shown.lock().expect("progress lock") = self.summary.links.reading();
        match &outcome.result {
            LinkResult::Created { session, renewed } => {
                let expires = &session.expiration_date;
                tracing::info!(line, %user, building, expires, renewed, "link created");
                if let Some(writer) = self.out.as_mut()
                    && let Err(e) = writer.write(&out_row(t, session))
                {
                    self.out_failed.get_or_insert(e.to_string());
                }
            }
            LinkResult::StillValid => tracing::info!(line, %user, building, "link still valid"),
            LinkResult::Connected { newly, assigned } => {
                tracing::info!(line, %user, building, newly, assigned, "connected")
            }
            LinkResult::Failed { status, message } => {
                // Grouped in the summary, like `run`'s failures; one line per row with -v.
                tracing::info!(line, %user, building, error = %message, "no link");
                self.summary
                    .push_failure(RowFailure::new(t, *status, message));
            }
        }
    }
}

fn out_row(t: &Target, session: &Session) -> Vec<String> {
    vec![
        t.user_id.to_string(),
        t.external_user_id.clone(),
        t.email.clone(),
        t.first_name.clone(),
        t.last_name.clone(),
        t.building_name.clone(),
        t.building_id.to_string(),
        session.id.to_string(),
        session.authentication_url.clone(),
        session.expiration_date.clone(),
    ]
}
