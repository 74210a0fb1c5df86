//! The `run` command as a short recipe: fail early (lock, checkpoint, report path, input
//! header), stage the input (so every file problem is found before any request), check
//! the credentials, run the pipeline (or the dry-run plan), then summarize and report.
//! Every phase is a function below, in the order it runs.

use std::path::Path;
use std::time::Instant;

use futures::StreamExt;

use crate::api::Client;
use crate::checkpoint::stage::Staged;
use crate::checkpoint::writer::{Msg, WriterHandle};
use crate::checkpoint::{Checkpoint, Lock};
use crate::config::RunConfig;
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::input;
use crate::metrics;
use crate::pipeline::{self, Ending};
use crate::plan::BuildingStep;
use crate::progress::{self, Progress};
use crate::report::{self, Plan, Rates, Requests, RowCounts, Summary};
use crate::shutdown::Shutdown;

/// Runs `run` to the end and returns the exit code (errors before any call are `Err`).
/// With `--metrics-file`, its directory is checked first and the file is written at the
/// end, whatever the outcome.
pub async fn run(config: RunConfig, shutdown: Shutdown) -> Result<ExitCode, AppError> {
    let started = Instant::now();
    if let Some(path) = &config.metrics_file {
        metrics::check_writable(path)?;
    }
    let result = run_job(&config, shutdown, started).await;
    if let (Some(path), Err(error)) = (&config.metrics_file, &result) {
        let duration = started.elapsed().as_secs_f64();
        write_metrics(
            path,
            &metrics::from_error(error, duration, &config.checkpoint, path),
        );
    }
    result
}

/// The run itself; see [`run`].
async fn run_job(
    config: &RunConfig,
    shutdown: Shutdown,
    started: Instant,
) -> Result<ExitCode, AppError> {
    let _lock = Lock::acquire(&config.checkpoint)?;
    let checkpoint = Checkpoint::open_for_run(&config.checkpoint, &config.identity)?;
    warn_if_unfinished(&checkpoint)?;
    let report_file = config.report.as_deref().map(create_report).transpose()?;
    let reader = input::open(&config.input).map_err(|e| AppError::Usage(e.to_string()))?;
    warn_ignored_columns(&reader);
    let command = if config.dry_run { "dry-run" } else { "run" };
    let run_id = checkpoint.begin_run(command, reader.source_name())?;
    // The whole input is read before the first request (the token's included), so a
    // file problem that needs no server (no data rows, an oversized record) sends nothing.
    let (checkpoint, staged) = stage(checkpoint, reader, run_id, config).await?;
    let client = connect(config)
        .await
        .inspect_err(|error| end_aborted_run(&checkpoint, run_id, error))?;
    let blocked = config.strict && staged.invalid > 0;
    let writer = WriterHandle::spawn(checkpoint);
    // Rows decided to cost nothing while staging never reach the plan pages: count them.
    let _ = writer.tx.send(Msg::Skipped(staged.skipped.clone()));
    let progress = start_progress(config, &staged, &writer, client.as_ref());
    let (ending, plan) = match &client {
        Some(client) if !config.dry_run && !blocked => {
            let ending = pipeline::execute(client, &writer.tx, &config.settings, &shutdown).await;
            (ending, None)
        }
        _ => (
            Ending::Completed,
            Some(dry_plan(&writer, config.settings.plan).await),
        ),
    };
    progress.finish().await;
    let counters = writer.tally.clone();
    let (checkpoint, written) = writer.finish();
    let tally = counters.lock().expect("tally lock").clone();
    let ending = match written {
        Err(error) => Ending::Checkpoint(error.to_string()),
        Ok(()) => ending,
    };
    let summary = Summarized {
        config,
        checkpoint: &checkpoint,
        run_id,
        staged: &staged,
        tally,
        plan,
        client: client.as_ref(),
        started,
        blocked,
    }
    .summary(&ending)?;
    finish(config, &checkpoint, report_file, &summary)?;
    if let Some(path) = &config.metrics_file {
        write_metrics(path, &metrics::from_summary(&summary, &checkpoint, path));
    }
    Ok(exit_code_of(summary.exit_code))
}

/// Writes the metrics file; a failure is reported but does not change the run's outcome
/// (the stale last-success time is what the alert watches).
fn write_metrics(path: &Path, figures: &metrics::RunFigures) {
    if let Err(e) = metrics::write(path, &metrics::render(figures)) {
        tracing::error!("cannot write --metrics-file {}: {e}", path.display());
    }
}

fn warn_if_unfinished(checkpoint: &Checkpoint) -> Result<(), AppError> {
    if let Some((id, pid, started)) = checkpoint.unfinished_run()? {
        tracing::warn!(
            "run #{id} (pid {pid}, started {}) did not finish; rows it had in flight are \
             verified before anything is re-sent",
            httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(started as u64)
            )
        );
    }
    Ok(())
}

fn warn_ignored_columns(reader: &input::Reader) {
    if !reader.has_building_names() {
        tracing::warn!(
            "{}: no building_name column, so every row only updates its user and no building \
             is created; if your file names it differently, map it with --column building_name=HEADER",
            reader.source_name()
        );
    }
    let ignored = reader.ignored_columns();
    if !ignored.is_empty() {
        tracing::warn!(
            "{}: ignoring unknown columns {} (docs/user-guide.md#the-csv lists the known columns; --column maps one)",
            reader.source_name(),
            ignored.join(", ")
        );
    }
}

/// Creates the report file now, owner-only, so an unwritable path fails in the first second.
fn create_report(path: &Path) -> Result<std::fs::File, AppError> {
    report::create_private(path).map_err(|e| {
        AppError::Usage(format!(
            "cannot write the report {}: {e}; choose a writable --report path",
            path.display()
        ))
    })
}

/// Builds the client and obtains the first token: bad credentials stop here, before
/// any API call. A dry run sends nothing.
async fn connect(config: &RunConfig) -> Result<Option<Client>, AppError> {
    let Some(client_config) = config.client.clone().filter(|_| !config.dry_run) else {
        return Ok(None);
    };
    let client = Client::new(client_config)
        .map_err(|e| AppError::Fatal(format!("cannot set up HTTPS: {e}")))?;
    client.authenticate().await.map_err(|e| {
        let message = e.to_string();
        let hint = crate::api::tls::untrusted_certificate_hint(&message)
            .map(str::to_owned)
            .or_else(|| proxy_hint(&message, &config.identity.base_url));
        match hint {
            Some(hint) => AppError::Fatal(format!("{message}\n{hint}")),
            None => AppError::Fatal(message),
        }
    })?;
    Ok(Some(client))
}

/// When a connection failed and a proxy variable applies, says which variable (never its
/// value: it may hold the proxy's password), so the operator looks at the proxy.
fn proxy_hint(message: &str, base_url: &str) -> Option<String> {
    if !message.contains("could not connect") {
        return None;
    }
    // Plain http (loopback only) never goes through a proxy (see `api::Client::new`).
    if !base_url.starts_with("https://") {
        return None;
    }
    let names = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
    let name = names
        .iter()
        .find(|name| crate::config::process_env(name).is_some())?;
    Some(format!(
        "requests go through the proxy set in {name} (unless NO_PROXY matches the host): \
         check that the proxy is reachable and accepts the credentials in its URL"
    ))
}

/// Records a run that stopped before its pipeline (e.g. refused credentials), so the
/// next run does not report it as interrupted and its exit code is on record.
fn end_aborted_run(checkpoint: &Checkpoint, run_id: i64, error: &AppError) {
    let code = error.exit_code() as i32;
    let summary = serde_json::json!({
        "outcome": "aborted",
        "exit_code": code,
        "abort_reason": error.to_string(),
    });
    if let Err(e) = checkpoint.end_run(run_id, code, &summary.to_string()) {
        tracing::warn!("could not record the end of run #{run_id}: {e}");
    }
}

/// Reads the whole input into the checkpoint's staging table (on a blocking thread).
async fn stage(
    mut checkpoint: Checkpoint,
    reader: input::Reader,
    run_id: i64,
    config: &RunConfig,
) -> Result<(Checkpoint, Staged), AppError> {
    let source = config.input.source.clone();
    let options = config.settings.plan;
    let (checkpoint, staged) = tokio::task::spawn_blocking(move || {
        let staged = checkpoint.stage(run_id, reader, options);
        (checkpoint, staged)
    })
    .await
    .expect("staging panicked");
    let staged = staged?.map_err(|e| AppError::Usage(e.to_string()))?;
    if staged.rows_read == 0 {
        return Err(AppError::Usage(format!(
            "{} has a header but no data rows: is the export complete?",
            source.display_name()
        )));
    }
    let sha256 = match &source {
        input::Source::Path(path) => Some(file_sha256(path)?),
        input::Source::Stdin => None,
    };
    checkpoint.record_input(run_id, sha256.as_deref(), staged.rows_read)?;
    // Staging set every match_key to its row_key unless it re-matched a row: when none
    // was, attaching would scan the whole input to change nothing.
    if !config.dry_run && staged.rematched > 0 {
        let attached = checkpoint.attach_property_keys()?;
        if attached > 0 {
            tracing::info!(
                attached,
                "rows re-keyed to this file's property_id (or building name): matched to \
                 existing rows of the same building name, nothing created"
            );
        }
    }
    Ok((checkpoint, staged))
}

fn file_sha256(path: &Path) -> Result<String, AppError> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)
        .map_err(|e| AppError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer)
            .map_err(|e| AppError::Usage(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn start_progress(
    config: &RunConfig,
    staged: &Staged,
    writer: &WriterHandle,
    client: Option<&Client>,
) -> Progress {
    let mode = match client {
        Some(_) if !config.dry_run => {
            progress::Mode::detect(config.output.quiet, config.output.progress_interval)
        }
        _ => progress::Mode::Quiet,
    };
    let rate_client = client.cloned();
    progress::Progress::start(
        mode,
        progress::Source {
            total: staged.valid,
            tally: writer.tally.clone(),
            rate: Box::new(move || rate_client.as_ref().map_or(0.0, Client::effective_rate)),
        },
    )
}

/// The plan a real run would follow: the same job stream (with the same options, e.g.
/// `--retry-failed`), nothing sent.
async fn dry_plan(writer: &WriterHandle, options: crate::plan::Options) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut jobs = std::pin::pin!(pipeline::jobs(writer.tx.clone(), options));
    while let Some(job) = jobs.next().await {
        for (row, step) in job?.rows {
            match (step, &row.prior) {
                (BuildingStep::NoBuilding, _) => plan.user_only += 1,
                (BuildingStep::Update, _) => plan.update_building += 1,
                (BuildingStep::Create, None) => plan.onboard += 1,
                (BuildingStep::Create, Some(_)) => plan.retry += 1,
                (BuildingStep::Keep, _) => plan.update += 1,
                (BuildingStep::Resolve, _) => plan.verify += 1,
            }
        }
    }
    // Skips were counted by the writer; wait until it has applied every message.
    let (reply, flushed) = tokio::sync::oneshot::channel();
    let _ = writer.tx.send(Msg::Flush(reply));
    let _ = flushed.await;
    let tally = writer.tally.lock().expect("tally lock");
    plan.skip_done = tally.skipped_done;
    plan.skip_failed = tally.skipped_failed;
    Ok(plan)
}

/// What the summary is built from.
struct Summarized<'a> {
    config: &'a RunConfig,
    checkpoint: &'a Checkpoint,
    run_id: i64,
    staged: &'a Staged,
    tally: crate::outcome::Tally,
    plan: Option<Result<Plan, String>>,
    client: Option<&'a Client>,
    started: Instant,
    blocked: bool,
}

impl Summarized<'_> {
    fn summary(mut self, ending: &Ending) -> Result<Summary, AppError> {
        let duration = self.started.elapsed().as_secs_f64();
        let (mut outcome, mut abort_reason) = ending_outcome(ending);
        let plan = match self.plan.take() {
            Some(Ok(plan)) => Some(plan),
            Some(Err(error)) => {
                (outcome, abort_reason) = ("aborted", Some(error));
                None
            }
            None => None,
        };
        if self.blocked {
            abort_reason = Some(format!(
                "--strict: {} invalid rows, so nothing was sent; fix them (see the report) and run again",
                self.staged.invalid
            ));
        }
        let requests = self.client.map_or_else(Requests::default, |c| Requests {
            total: c.stats().total(),
            by_status: c.stats().snapshot(),
        });
        let mut summary = Summary {
            summary_version: report::SUMMARY_VERSION,
            outcome,
            exit_code: 0,
            abort_reason,
            input: self.config.input.source.display_name(),
            checkpoint: self.config.checkpoint.display().to_string(),
            run_id: self.run_id,
            duration_secs: duration,
            rows: self.row_counts(plan.is_some())?,
            plan,
            rate: Rates {
                limit: self.config.client.as_ref().map_or(0.0, |c| c.rate),
                effective: self.client.map_or(0.0, Client::effective_rate),
                achieved: requests.total as f64 / duration.max(0.001),
            },
            requests,
            failures: self.checkpoint.failure_groups()?,
        };
        summary.exit_code = exit_code(&summary, ending, self.blocked) as i32;
        summary.outcome = match summary.outcome {
            "completed" if summary.plan.is_some() => "dry_run",
            "completed" if summary.exit_code != 0 => "completed_with_failures",
            other => other,
        };
        Ok(summary)
    }

    fn row_counts(&self, dry_run: bool) -> Result<RowCounts, AppError> {
        let processed = self.tally.processed();
        Ok(RowCounts {
            read: self.staged.rows_read,
            valid: self.staged.valid,
            invalid: self.staged.invalid,
            duplicates: self.staged.duplicates,
            failed: self.tally.failed(),
            not_processed: if dry_run {
                0
            } else {
                self.staged.valid.saturating_sub(processed)
            },
            vanished: self.checkpoint.vanished()?,
            tally: self.tally.clone(),
        })
    }
}

/// The summary's `outcome` and `abort_reason` for how the pipeline ended.
fn ending_outcome(ending: &Ending) -> (&'static str, Option<String>) {
    match ending {
        Ending::Completed => ("completed", None),
        Ending::Interrupted => ("interrupted", None),
        Ending::Breaker(reason) | Ending::Checkpoint(reason) => ("aborted", Some(reason.clone())),
        Ending::Fatal(error) if error.status == Some(403) => (
            "aborted",
            Some(format!(
                "the API refused access ({error}): check that --org-id is your organization \
                 and that the credentials belong to it and to this environment"
            )),
        ),
        Ending::Fatal(error) => ("aborted", Some(error.to_string())),
    }
}

fn exit_code(summary: &Summary, ending: &Ending, blocked: bool) -> ExitCode {
    match ending {
        _ if summary.outcome == "aborted" && !blocked => ExitCode::Fatal,
        Ending::Interrupted => ExitCode::Interrupted,
        Ending::Completed if summary.plan.is_some() && !blocked => {
            if summary.rows.invalid == 0 {
                ExitCode::Success
            } else {
                ExitCode::RowsFailed
            }
        }
        Ending::Completed if summary.all_done() && !blocked => ExitCode::Success,
        _ => ExitCode::RowsFailed,
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

/// Report file, run record, summary on stderr, JSON on stdout.
fn finish(
    config: &RunConfig,
    checkpoint: &Checkpoint,
    report_file: Option<std::fs::File>,
    summary: &Summary,
) -> Result<(), AppError> {
    let json = report::json::render(summary);
    checkpoint.end_run(summary.run_id, summary.exit_code, &json)?;
    if let (Some(file), Some(path)) = (report_file, &config.report) {
        write_report(checkpoint, std::io::BufWriter::new(file)).map_err(|e| {
            AppError::Fatal(format!("cannot write the report {}: {e}", path.display()))
        })?;
    }
    if !config.output.quiet || summary.exit_code != 0 {
        eprint!("{}", report::text::render(summary));
    }
    if config.json {
        crate::commands::print_stdout(&json)?;
    }
    Ok(())
}

fn write_report(checkpoint: &Checkpoint, out: impl std::io::Write) -> Result<(), String> {
    let mut writer =
        report::csv::Writer::new(out, &report::csv::REPORT_HEADER).map_err(|e| e.to_string())?;
    let mut failed = None;
    checkpoint
        .for_each_report_row(|record| {
            if failed.is_none() {
                failed = writer.write(&record).err();
            }
        })
        .map_err(|e| e.to_string())?;
    match failed {
        Some(error) => Err(error.to_string()),
        None => writer.finish().map_err(|e| e.to_string()),
    }
}
