//! The engine `run` and `links` both run on, in one place:
//!
//! ```text
//! checkpoint pages, through the writer ([`pages`]) ─▶ rows with work ─▶ one job per user
//!   ─▶ take_while(no stop requested, no halt, breaker closed)
//!   ─▶ the command's worker per job (every request through the client's one gate)
//!   ─▶ buffer_unordered(--concurrency)
//!   ─▶ one consumer: the command records each outcome (the writer, counters, --out)
//! ```
//!
//! A stop request (SIGINT/SIGTERM) stops starting jobs; jobs in flight get `--grace` to
//! finish, then are abandoned (their intents make the next run verify them). A worker
//! that meets a refused credential or a refused intent returns a [`Halt`]: no further job
//! starts. How the drive ended ([`Ending`]) becomes the summary's outcome and the exit code
//! through [`Ending::conclude`], the same rule for every command.
//!
//! Workers never touch SQLite: they send intents to the writer (waiting for the commit)
//! and return outcomes. A command adds a phase to its per-user job in its worker; the
//! engine neither knows nor cares how many requests a job makes.

pub mod connect;
pub mod pages;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};

pub use connect::connect;
pub use pages::{Pages, jobs};

use crate::api::{CallError, Client};
use crate::checkpoint::writer::WriteError;
use crate::config::{Output, Workers};
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::input::{self, InputOptions};
use crate::progress::{self, Progress, Reading};
use crate::shutdown::Shutdown;

/// Why the whole run must stop.
#[derive(Debug)]
pub enum Halt {
    /// Credentials refused, 403, redirect.
    Fatal(CallError),
    /// The checkpoint could not record an intent or serve a page.
    Checkpoint(WriteError),
}

/// What a worker hands back to the one consumer.
#[derive(Debug)]
pub struct JobResult<O> {
    /// Final outcomes of the job's rows (rows left without one keep their state).
    pub outcomes: Vec<O>,
    /// Set when the run must stop.
    pub halt: Option<Halt>,
}

impl<O> Default for JobResult<O> {
    fn default() -> Self {
        JobResult {
            outcomes: Vec::new(),
            halt: None,
        }
    }
}

impl<O> JobResult<O> {
    /// A result that only stops the run.
    pub fn halted(halt: impl Into<Halt>) -> Self {
        JobResult {
            outcomes: Vec::new(),
            halt: Some(halt.into()),
        }
    }
}

impl From<WriteError> for Halt {
    fn from(error: WriteError) -> Self {
        Halt::Checkpoint(error)
    }
}

/// How a command's work ended, before its counts are looked at.
#[derive(Debug)]
pub enum Ending {
    /// Every job was processed.
    Completed,
    /// A stop was requested (SIGINT/SIGTERM).
    Interrupted,
    /// Credentials, 403, the API down, the checkpoint: why, and what to do.
    Aborted(String),
}

/// The summary's verdict: its `outcome`, `abort_reason` and the exit code.
#[derive(Debug)]
pub struct Conclusion {
    /// `completed`, `completed_with_failures`, `dry_run`, `interrupted` or `aborted`.
    pub outcome: &'static str,
    /// Why the command stopped early, if it did.
    pub abort_reason: Option<String>,
    /// The exit code.
    pub exit_code: ExitCode,
}

impl Ending {
    /// A writer that stopped at a failed write overrides how the jobs ended: the
    /// checkpoint may lack what was done, so the run is aborted.
    pub fn after_writer(self, written: Result<(), WriteError>) -> Ending {
        match written {
            Err(error) => Ending::Aborted(error.to_string()),
            Ok(()) => self,
        }
    }

    /// The verdict of every command: aborted is 3, interrupted 130; a completed run (or
    /// dry run) is 1 when `troubled` (rows failed, unresolved or invalid), else 0.
    pub fn conclude(self, dry_run: bool, troubled: bool) -> Conclusion {
        let completed = if troubled {
            ExitCode::RowsFailed
        } else {
            ExitCode::Success
        };
        let (outcome, exit_code, abort_reason) = match self {
            Ending::Aborted(reason) => ("aborted", ExitCode::Fatal, Some(reason)),
            Ending::Interrupted => ("interrupted", ExitCode::Interrupted, None),
            Ending::Completed if dry_run => ("dry_run", completed, None),
            Ending::Completed if troubled => ("completed_with_failures", completed, None),
            Ending::Completed => ("completed", completed, None),
        };
        Conclusion {
            outcome,
            abort_reason,
            exit_code,
        }
    }
}

/// What the drive loop works with.
pub struct Drive<'a> {
    /// The connected client.
    pub client: &'a Client,
    /// The stop request.
    pub shutdown: &'a Shutdown,
    /// Jobs in flight at once (`--concurrency`).
    pub concurrency: usize,
    /// After a stop request, how long jobs in flight may take (`--grace`).
    pub grace: Duration,
}

impl<'a> Drive<'a> {
    /// The drive of a connected client, with `--concurrency` and `--grace`.
    pub fn new(client: &'a Client, shutdown: &'a Shutdown, workers: Workers) -> Self {
        Drive {
            client,
            shutdown,
            concurrency: workers.concurrency,
            grace: workers.grace,
        }
    }

    /// Runs every job through `work`, at most `concurrency` at once, and hands each outcome
    /// to `record` (the one consumer). Returns when done, stopped or halted.
    pub async fn run<J, O, F>(
        &self,
        jobs: impl Stream<Item = Result<J, WriteError>>,
        work: impl Fn(J) -> F,
        mut record: impl FnMut(O),
    ) -> Ending
    where
        F: Future<Output = JobResult<O>>,
    {
        let mut halt = None;
        let halted = Arc::new(AtomicBool::new(false));
        let open = {
            let (halted, shutdown) = (halted.clone(), self.shutdown.clone());
            let client = self.client.clone();
            move || {
                !halted.load(Ordering::Relaxed)
                    && !shutdown.requested()
                    && !client.breaker().tripped()
            }
        };
        let flow = jobs
            .take_while(move |_| futures::future::ready(open()))
            .map(|job| async {
                match job {
                    Ok(job) => work(job).await,
                    Err(error) => JobResult::halted(error),
                }
            })
            .buffer_unordered(self.concurrency)
            .for_each(|result| {
                result.outcomes.into_iter().for_each(&mut record);
                if let Some(stop) = result.halt {
                    halted.store(true, Ordering::Relaxed);
                    halt.get_or_insert(stop);
                }
                futures::future::ready(())
            });
        let grace_expired = async {
            self.shutdown.wait().await;
            tokio::time::sleep(self.grace).await;
        };
        tokio::select! {
            () = flow => {}
            () = grace_expired => {
                tracing::warn!("grace period over: abandoning calls in flight (the next run resolves their rows)");
            }
        }
        self.ending(halt)
    }

    fn ending(&self, halt: Option<Halt>) -> Ending {
        let breaker = self.client.breaker();
        match halt {
            Some(Halt::Fatal(error)) if error.status == Some(403) => Ending::Aborted(format!(
                "the API refused access ({error}): check that --org-id is your organization \
                 and that the credentials belong to it and to this environment"
            )),
            Some(Halt::Fatal(error)) => Ending::Aborted(error.to_string()),
            Some(Halt::Checkpoint(error)) => Ending::Aborted(error.to_string()),
            None if breaker.tripped() => {
                let (failures, window) = breaker.window();
                Ending::Aborted(format!(
                    "the API looks down: {failures} of the last {window} requests failed with \
                     server or network errors; stopped starting rows. Rows not done are kept in \
                     the checkpoint: run the same command again later to resume"
                ))
            }
            None if self.shutdown.requested() => Ending::Interrupted,
            None => Ending::Completed,
        }
    }
}

/// Opens the input (and reads its header) off the runtime's thread: stdin or a FIFO blocks
/// until its writer sends, and on the one-thread runtime that held back the signal
/// handler too, so even a second SIGTERM waited for the input.
pub async fn open_input(options: &InputOptions) -> Result<input::Reader, AppError> {
    let options = options.clone();
    tokio::task::spawn_blocking(move || input::open(&options))
        .await
        .expect("opening the input panicked")
        .map_err(AppError::from)
}

/// The progress display of a command that sends requests: a bar on a terminal, a line
/// every `--progress-interval` otherwise, nothing with `-q` or without a client (a dry run).
pub fn show_progress(
    output: &Output,
    client: Option<&Client>,
    total: u64,
    read: impl Fn() -> Reading + Send + Sync + 'static,
) -> Progress {
    let mode = match client {
        Some(_) => progress::Mode::detect(output.quiet, output.progress_interval),
        None => progress::Mode::Quiet,
    };
    let client = client.cloned();
    Progress::start(
        mode,
        progress::Readings {
            total,
            read: Box::new(read),
            rate: Box::new(move || client.as_ref().map_or(0.0, Client::effective_rate)),
        },
    )
}
