//! `links`: the onboarding step after the building, a Connect link (device onboarding
//! session) per onboarded building, in bulk.
//!
//! The recipe ([`links`]): fail early (flags, lock, checkpoint, `--out` path, input header,
//! credentials) → read the CSV, join it with the checkpoint and stage it on disk ([`rows`])
//! → page it back one user at a time ([`pager`], through the single [`store`] writer, which
//! owns the connection) → per user, in parallel ([`worker`]): list the heat pumps once,
//! then per building connected / still valid / create (intent first, through the writer)
//! → one consumer counts, logs and writes `--out` as links arrive, and feeds the progress
//! display ([`crate::progress`]) → [`summary`]. Memory stays flat: a page and the users in
//! flight, whatever the file size.
//!
//! One live link per building: a link is reused while its `expiration_date` is today or
//! later (UTC); only missing or expired links are created, so a second run on the same day
//! sends no session POST. A building whose customer connected gets no link, ever.
//! Links are capabilities: logs name the row, never the session or the link.

pub mod config;
pub mod summary;
pub mod targets;
pub mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::api::Client;
use crate::checkpoint::links as store;
use crate::checkpoint::{Checkpoint, Lock};
use crate::date;
use crate::engine::pages as pager;
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::input;
use crate::progress::{self, Progress, Reading};
use crate::report::Requests;
use crate::report::csv::Writer;
use crate::shutdown::Shutdown;
use config::LinksConfig;
use store::Prior;
use summary::{Counts, Ending, RowFailure, Summary};
use targets::Staged;
use worker::{Context, Halt, LinkResult, Outcome};

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

/// After a stop request, how long calls in flight may take.
const GRACE: Duration = Duration::from_secs(30);

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
    let out = config.out.as_deref().map(create_out).transpose()?;
    let reader = input::open(&config.input).map_err(|e| AppError::Usage(e.to_string()))?;
    let client = connect(&config).await?;
    config::warn_if_today_overridden(&config);
    let command = if config.dry_run {
        "links-dry-run"
    } else {
        "links"
    };
    let run_id = checkpoint.begin_run(command, reader.source_name())?;
    let (checkpoint, staged) = prepare(checkpoint, reader, &config).await?;
    checkpoint.record_input(run_id, None, staged.rows_read)?;
    let mut summary = new_summary(&config, run_id, &staged);
    let writer = store::Writer::spawn(checkpoint, run_id);
    let shown = Arc::new(Mutex::new(Reading::default()));
    let progress = start_progress(&config, &staged, client.as_ref(), &shown);
    let ending = match &client {
        Some(client) if !config.dry_run => {
            let job = Job {
                config: &config,
                client,
                shutdown: &shutdown,
            };
            job.send(&writer, out, &mut summary, shown).await
        }
        _ => dry_plan(&config, &writer, out, &mut summary.links).await,
    };
    progress.finish().await;
    let (checkpoint, written) = writer.finish();
    let ending = match written {
        Err(error) => Ending::Aborted(error),
        Ok(()) => ending,
    };
    summary.duration_secs = started.elapsed().as_secs_f64();
    summary.requests = client
        .as_ref()
        .map_or_else(Requests::default, |c| Requests {
            total: c.stats().total(),
            by_status: c.stats().snapshot(),
        });
    summary.conclude(ending, config.dry_run);
    checkpoint.end_run(run_id, summary.exit_code, &summary.json())?;
    if !config.output.quiet || summary.exit_code != 0 {
        eprint!("{}", summary.text());
    }
    if config.json {
        crate::commands::status::print_stdout(&summary.json())?;
    }
    Ok(exit_code_of(summary.exit_code))
}

/// What a real (not dry) run works with.
struct Job<'a> {
    config: &'a LinksConfig,
    client: &'a Client,
    shutdown: &'a Shutdown,
}

/// The `--out` mail-merge file, written as links arrive.
type OutFile = Writer<std::io::BufWriter<std::fs::File>>;

impl Job<'_> {
    /// The workers and the `--out` file, to the end; an `--out` failure becomes the run's
    /// ending, so the summary is still recorded.
    async fn send(
        &self,
        writer: &store::Writer,
        out: Option<std::fs::File>,
        summary: &mut Summary,
        shown: Arc<Mutex<Reading>>,
    ) -> Ending {
        let out = out
            .map(|file| Writer::new(std::io::BufWriter::new(file), &OUT_HEADER))
            .transpose();
        let out = match out {
            Ok(out) => out,
            Err(e) => return Ending::Aborted(out_error(self.config, &e).to_string()),
        };
        let mut sink = Sink {
            summary,
            out,
            out_failed: None,
            shown,
        };
        let ending = execute(self, writer, &mut sink).await;
        match sink.out.map_or(Ok(()), Writer::finish) {
            Err(e) => Ending::Aborted(out_error(self.config, &e).to_string()),
            Ok(()) => ending,
        }
    }
}

/// The progress display (`--progress-interval` lines, a bar on a terminal, nothing with
/// `-q` or for a dry run), reading the counts [`Sink::record`] keeps.
fn start_progress(
    config: &LinksConfig,
    staged: &Staged,
    client: Option<&Client>,
    shown: &Arc<Mutex<Reading>>,
) -> Progress {
    let mode = match client {
        Some(_) if !config.dry_run => {
            progress::Mode::detect(config.output.quiet, config.output.progress_interval)
        }
        _ => progress::Mode::Quiet,
    };
    let (shown, rate_client) = (shown.clone(), client.cloned());
    Progress::start_readings(
        mode,
        progress::Readings {
            total: staged.targets,
            read: Box::new(move || *shown.lock().expect("progress lock")),
            rate: Box::new(move || rate_client.as_ref().map_or(0.0, Client::effective_rate)),
        },
    )
}

/// Creates `--out` now, owner-only, so an unwritable path fails before any request.
fn create_out(path: &Path) -> Result<std::fs::File, AppError> {
    crate::report::create_private(path).map_err(|e| {
        AppError::Usage(format!(
            "cannot write --out {}: {e}; choose a writable path",
            path.display()
        ))
    })
}

fn out_error(config: &LinksConfig, error: &csv::Error) -> AppError {
    let path = config.out.as_deref().unwrap_or(Path::new("")).display();
    AppError::Fatal(format!("cannot write --out {path}: {error}"))
}

/// The client, with its first token: bad credentials stop here, before any API call.
async fn connect(config: &LinksConfig) -> Result<Option<Client>, AppError> {
    let Some(client_config) = config.client.clone().filter(|_| !config.dry_run) else {
        return Ok(None);
    };
    let client = Client::new(client_config)
        .map_err(|e| AppError::Fatal(format!("cannot set up HTTPS: {e}")))?;
    client
        .authenticate()
        .await
        .map_err(|e| AppError::Fatal(e.to_string()))?;
    Ok(Some(client))
}

/// Reads, joins and stages the input on a blocking thread.
async fn prepare(
    checkpoint: Checkpoint,
    reader: input::Reader,
    config: &LinksConfig,
) -> Result<(Checkpoint, Staged), AppError> {
    let defaults = config.session.clone();
    let (checkpoint, staged) = tokio::task::spawn_blocking(move || {
        let staged = targets::prepare(reader, checkpoint.conn(), &defaults);
        (checkpoint, staged)
    })
    .await
    .expect("reading the input panicked");
    let staged = staged.map_err(AppError::Usage)?;
    if staged.rows_read == 0 {
        return Err(AppError::Usage(format!(
            "{} has a header but no data rows: is the export complete?",
            config.input.source.display_name()
        )));
    }
    Ok((checkpoint, staged))
}

fn new_summary(config: &LinksConfig, run_id: i64, staged: &Staged) -> Summary {
    Summary {
        summary_version: summary::SUMMARY_VERSION,
        command: "links",
        outcome: "completed",
        exit_code: 0,
        abort_reason: None,
        input: config.input.source.display_name(),
        checkpoint: config.checkpoint.display().to_string(),
        run_id,
        today: config.today.clone(),
        duration_secs: 0.0,
        links: Counts {
            rows_read: staged.rows_read,
            invalid: staged.invalid,
            duplicates: staged.duplicates,
            not_onboarded: staged.not_onboarded,
            no_building: staged.no_building,
            ..Counts::default()
        },
        requests: Requests::default(),
        failures: Vec::new(),
    }
}

/// What a real run would do, from the checkpoint alone (new connections are not known):
/// the same paged jobs, nothing sent; `--out` gets only its header.
async fn dry_plan(
    config: &LinksConfig,
    writer: &store::Writer,
    out: Option<std::fs::File>,
    counts: &mut Counts,
) -> Ending {
    if let Some(file) = out
        && let Err(e) = Writer::new(file, &OUT_HEADER).and_then(Writer::finish)
    {
        return Ending::Aborted(out_error(config, &e).to_string());
    }
    let mut jobs = std::pin::pin!(pager::jobs(writer.tx.clone()));
    while let Some(job) = jobs.next().await {
        let job = match job {
            Ok(job) => job,
            Err(error) => return Ending::Aborted(error),
        };
        for target in job.targets {
            counts.add(&planned(config, &target.prior));
        }
    }
    Ending::Completed
}

fn planned(config: &LinksConfig, prior: &Prior) -> LinkResult {
    match prior {
        Prior::Connected => LinkResult::Connected {
            newly: false,
            assigned: false,
        },
        Prior::Live(expires) if date::still_valid(expires, &config.today) => LinkResult::StillValid,
        prior => LinkResult::Created {
            session: placeholder_session(),
            renewed: matches!(prior, Prior::Live(_)),
        },
    }
}

fn placeholder_session() -> crate::api::connect::Session {
    crate::api::connect::Session {
        id: uuid::Uuid::nil(),
        authentication_url: String::new(),
        expiration_date: String::new(),
    }
}

/// Every user through the workers (paged from the checkpoint); outcomes counted, logged
/// and written to `--out` by the one consumer.
async fn execute(job: &Job<'_>, writer: &store::Writer, sink: &mut Sink<'_>) -> Ending {
    let (config, client, shutdown) = (job.config, job.client, job.shutdown);
    let ctx = Context {
        client,
        writer: &writer.tx,
        defaults: &config.session,
        today: &config.today,
    };
    let halted = Arc::new(AtomicBool::new(false));
    let mut halt = None;
    let open = {
        let (halted, shutdown, client) = (halted.clone(), shutdown.clone(), client.clone());
        move || {
            !halted.load(Ordering::Relaxed) && !shutdown.requested() && !client.breaker().tripped()
        }
    };
    let flow = pager::jobs(writer.tx.clone())
        .take_while(move |_| futures::future::ready(open()))
        .map(|job| async {
            match job {
                Ok(job) => worker::process(&ctx, job).await,
                Err(error) => worker::JobResult {
                    outcomes: Vec::new(),
                    halt: Some(Halt::Checkpoint(error)),
                },
            }
        })
        .buffer_unordered(config.concurrency)
        .for_each(|result| {
            for outcome in result.outcomes {
                sink.record(&outcome);
            }
            if let Some(stop) = result.halt {
                halted.store(true, Ordering::Relaxed);
                halt.get_or_insert(stop);
            }
            futures::future::ready(())
        });
    let grace_expired = async {
        shutdown.wait().await;
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        () = flow => {}
        () = grace_expired => tracing::warn!("grace period over: abandoning calls in flight"),
    }
    ending(halt, sink.out_failed.take(), client, shutdown)
}

/// Where outcomes go: the summary's counts and failures, the progress reading, `--out`.
struct Sink<'a> {
    summary: &'a mut Summary,
    out: Option<OutFile>,
    out_failed: Option<String>,
    shown: Arc<Mutex<Reading>>,
}

impl Sink<'_> {
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
                tracing::warn!(line, %user, building, error = %message, "no link");
                self.summary
                    .push_failure(RowFailure::new(t, *status, message));
            }
        }
    }
}

fn out_row(t: &targets::Target, session: &crate::api::connect::Session) -> Vec<String> {
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

fn ending(
    halt: Option<Halt>,
    out_failed: Option<String>,
    client: &Client,
    shutdown: &Shutdown,
) -> Ending {
    match halt {
        Some(Halt::Fatal(error)) => Ending::Aborted(error.to_string()),
        Some(Halt::Checkpoint(error)) => Ending::Aborted(error),
        None if out_failed.is_some() => Ending::Aborted(format!(
            "cannot write --out: {}; the links are recorded in the checkpoint (export --links)",
            out_failed.unwrap_or_default()
        )),
        None if client.breaker().tripped() => Ending::Aborted(
            "the API looks down (too many server or network errors); run again later".into(),
        ),
        None if shutdown.requested() => Ending::Interrupted,
        None => Ending::Completed,
    }
}

fn exit_code_of(code: i32) -> ExitCode {
    match code {
        0 => ExitCode::Success,
        1 => ExitCode::RowsFailed,
        2 => ExitCode::Usage,
        130 => ExitCode::Interrupted,
        _ => ExitCode::Fatal,
    }
}
