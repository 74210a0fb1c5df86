//! `run`: onboard the rows of a CSV, as a short recipe: fail early (lock, checkpoint,
//! report path, input header), stage the input (so every file problem is found before any
//! request), connect (the credentials are checked), drive the per-user jobs on the shared
//! `engine` (or print the dry-run plan), then summarize and report.
//! Every phase is a function below, in the order it runs.
//!
//! The pieces: [`config`] (the validated flags), [`plan`] (each row's decision and the
//! bodies it is sent as), `jobs` (the plan pages as per-user jobs), `customer` (a
//! customer known only by its CRM id: found or created, exactly once), `worker` (one
//! user's requests), `summary` and `metrics` (what the run reports).

pub mod config;
pub(crate) mod customer;
pub(crate) mod jobs;
pub(crate) mod listed;
pub(crate) mod metrics;
pub mod plan;
pub(crate) mod rate;
pub(crate) mod summary;
pub mod vanished;
pub(crate) mod worker;

use std::path::Path;
use std::time::Instant;

use crate::api::{Client, Way};
use crate::checkpoint::customers::NewCustomers;
use crate::checkpoint::stage::Staged;
use crate::checkpoint::vanished::VanishedCount;
use crate::checkpoint::writer::{WriteError, Writer};
use crate::checkpoint::{Checkpoint, Lock};
use crate::engine::{self, Drive, Ending};
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::input;
use crate::report::{self, Plan, Summary};
use crate::shutdown::Shutdown;
pub use config::RunConfig;
use summary::Summarized;

/// Runs `run` to the end and returns the exit code (errors before any call are `Err`).
/// With `--metrics-file`, its directory is checked first and the file is written at the
/// end, whatever the outcome.
pub(crate) async fn run(config: RunConfig, shutdown: Shutdown) -> Result<ExitCode, AppError> {
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
    let report_file = config
        .report
        .as_deref()
        .map(|path| report::create_for("--report", path))
        .transpose()?;
    let reader = engine::open_input(&config.input).await?;
    warn_ignored_columns(&reader);
    let command = if config.dry_run { "dry-run" } else { "run" };
    let run_id = checkpoint.begin_run(command, reader.source_name())?;
    // The whole input is read before the first request (the token's included), so a
    // file problem that needs no server (no data rows, an oversized record) sends nothing.
    let (checkpoint, staged) = stage(checkpoint, reader, run_id, config).await?;
    let count = VanishedCount {
        vanished: staged.vanished,
        known: staged.known,
    };
    // --only-failed is often fed only the rows to fix (`export --state failed`): the rows it
    // lacks are not a cut export.
    if !config.settings.plan.only_failed {
        vanished::guard(
            config.max_vanished,
            count,
            staged.rows_read,
            &config.checkpoint,
        )
        .inspect_err(|error| end_aborted_run(&checkpoint, run_id, error))?;
    }
    let client = engine::connect(config.client.as_ref().filter(|_| !config.dry_run))
        .await
        .inspect_err(|error| end_aborted_run(&checkpoint, run_id, error))?;
    let ceiling = config.client.as_ref().map_or(f64::INFINITY, |c| c.rate);
    if let Some(client) = &client {
        rate::seed(&checkpoint, client, ceiling)?;
    }
    let blocked = config.strict && staged.invalid > 0;
    let new_customers = match config.settings.plan.create_users {
        true => checkpoint.new_customers()?,
        false => Default::default(),
    };
    let left_new = match config.settings.plan.only_failed {
        true => checkpoint.new_rows()?,
        false => 0,
    };
    let writer = Writer::spawn(checkpoint, run_id, config.report.is_some());
    // Rows decided to cost nothing while staging never reach the plan pages: count them.
    writer.sender().skipped(staged.skipped.clone());
    let tally = writer.tally();
    let progress = engine::show_progress(&config.output, client.as_ref(), staged.valid, {
        let tally = tally.clone();
        move || summary::reading(&tally.lock().expect("tally lock"))
    });
    let sending = client.as_ref().filter(|_| !blocked);
    let keeper = sending.map(|client| rate::keep(client, writer.sender(), ceiling));
    let (ending, plan, new_customers) =
        execute(config, sending, &writer, &shutdown, new_customers).await;
    if let Some(keeper) = keeper {
        keeper.finish().await;
    }
    progress.finish().await;
    let (checkpoint, written) = writer.finish();
    if !config.dry_run {
        // `export --state failed` prints these rows with their input, to fix and feed back.
        checkpoint.keep_failed_inputs()?;
    }
    let tally = tally.lock().expect("tally lock").clone();
    warn_left_new(left_new);
    let ending = ending.after_writer(written);
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
        new_customers,
    }
    .summary(ending)?;
    finish(config, &checkpoint, report_file, &summary)?;
    if let Some(path) = &config.metrics_file {
        write_metrics(path, &metrics::from_summary(&summary, &checkpoint, path));
    }
    Ok(summary.header.exit_code)
}

/// The jobs on the engine when there is a client to send with (the user list first, when
/// it spares the new customers' lookups); else (a dry run, or `--strict` with invalid
/// rows) the plan a real run would follow. Also returns how new customers were checked.
async fn execute(
    config: &RunConfig,
    client: Option<&Client>,
    writer: &Writer,
    shutdown: &Shutdown,
    new_customers: NewCustomers,
) -> (Ending, Option<Result<Plan, WriteError>>, Way) {
    match client {
        Some(client) => {
            let way = listed::read(client, &config.settings, new_customers).await;
            let drive = Drive::new(client, shutdown, config.workers);
            let ending = jobs::drive(&drive, writer, &config.settings).await;
            (ending, None, way)
        }
        None => {
            let plan = jobs::dry_plan(writer, config.settings.plan).await;
            (Ending::Completed, Some(plan), Way::None)
        }
    }
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
            "{}: ignoring unknown columns {} (`podero-onboard run --help` lists the known \
             columns; --column COLUMN=HEADER or a --mapping file maps one)",
            reader.source_name(),
            ignored.join(", ")
        );
    }
}

/// Records a run that stopped before its jobs (e.g. refused credentials), so the next
/// run does not report it as interrupted and its exit code is on record.
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
    let mut staged = staged?.map_err(AppError::from)?;
    if staged.rows_read == 0 {
        return Err(AppError::no_data_rows(&source));
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
    let count = checkpoint.record_vanished(run_id)?;
    (staged.vanished, staged.known) = (count.vanished, count.known);
    Ok((checkpoint, staged))
}

/// `--only-failed` is fed the rows to fix (`export --state failed`), and fixing a row's
/// `user_id`, building name or property_id makes it a new row, which `--only-failed`
/// leaves: say so, with the way on (it was silent, exit 0).
fn warn_left_new(rows: u64) {
    if rows > 0 {
        tracing::warn!(
            "{rows} rows of the input are new to the checkpoint, so --only-failed left them. \
             A row whose user_id, building name or property_id was changed to fix it is a \
             new row: run without --only-failed to onboard it (with --max-vanished 100% for a \
             file of only the rows to fix)"
        );
    }
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

/// Report file, run record, summary on stderr, JSON on stdout.
fn finish(
    config: &RunConfig,
    checkpoint: &Checkpoint,
    report_file: Option<std::fs::File>,
    summary: &Summary,
) -> Result<(), AppError> {
    let json = report::json::render(summary);
    checkpoint.end_run(
        summary.header.run_id,
        summary.header.exit_code as i32,
        &json,
    )?;
    if let (Some(file), Some(path)) = (report_file, &config.report) {
        write_report(checkpoint, std::io::BufWriter::new(file)).map_err(|e| {
            AppError::Fatal(format!("cannot write the report {}: {e}", path.display()))
        })?;
    }
    if !config.output.quiet || summary.header.exit_code != ExitCode::Success {
        eprint!("{}", report::text::render(summary));
    }
    if config.json {
        report::print_stdout(&json)?;
    }
    Ok(())
}

fn write_report(checkpoint: &Checkpoint, out: impl std::io::Write) -> Result<(), String> {
    let mut writer =
        report::csv::CsvWriter::new(out, &report::csv::REPORT_HEADER).map_err(|e| e.to_string())?;
    let mut failed = None;
    checkpoint
        .for_each_report_row(|record| {
            if failed.is_none() {
                failed = writer.write(&record).err();
            }
        })
        .map_err(|e| e.to_string())?;
    checkpoint
        .for_each_vanished_report_row(|record| {
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
