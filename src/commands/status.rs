//! The small commands: `status`, `export`, `completions`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use clap::CommandFactory;
use serde_json::json;

use crate::checkpoint::Checkpoint;
use crate::checkpoint::links as store;
use crate::checkpoint::query::RunInfo;
use crate::cli::{Cli, ExportArgs, ExportFormat, StateFilter, StatusArgs};
use crate::date;
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::progress::human_duration;
use crate::report::csv::{EXPORT_HEADER, Writer};

/// `status`: rows per state, the environment, the last runs.
pub fn status(args: &StatusArgs) -> Result<ExitCode, AppError> {
    let checkpoint = Checkpoint::open_read_only(&args.checkpoint)?;
    let counts = checkpoint.state_counts()?;
    let runs = checkpoint.recent_runs(5)?;
    let org = checkpoint.meta("org_id")?.unwrap_or_default();
    let base = checkpoint.meta("base_url")?.unwrap_or_default();
    let rejects = checkpoint.reject_count()?;
    let funnel = links_funnel(&checkpoint)?;
    let text = if args.json {
        let mut value = json!({
            "checkpoint": args.checkpoint.display().to_string(),
            "org_id": org, "base_url": base,
            "rows_by_state": counts, "invalid_in_last_run": rejects, "runs": runs,
        });
        if let Some(funnel) = &funnel {
            value["links_funnel"] = json!(funnel);
        }
        let mut text = serde_json::to_string_pretty(&value).expect("serializable");
        text.push('\n');
        text
    } else {
        let mut out = format!(
            "checkpoint {}\n  organization {org}\n  API          {base}\n",
            args.checkpoint.display()
        );
        render_counts(&mut out, &counts, rejects);
        if let Some(funnel) = &funnel {
            render_funnel(&mut out, funnel);
        }
        render_runs(&mut out, &runs);
        out
    };
    print_stdout(&text)?;
    Ok(ExitCode::Success)
}

fn render_counts(out: &mut String, counts: &BTreeMap<String, u64>, rejects: u64) {
    if counts.is_empty() {
        out.push_str("rows by state: none yet\n");
    } else {
        out.push_str("rows by state:\n");
        for (state, n) in counts {
            out.push_str(&format!("  {n:>8}  {state}\n"));
        }
    }
    if rejects > 0 {
        out.push_str(&format!(
            "invalid rows in the last run: {rejects} (the run's --report lists them)\n"
        ));
    }
}

fn render_runs(out: &mut String, runs: &[RunInfo]) {
    if runs.is_empty() {
        return;
    }
    out.push_str("last runs:\n");
    for run in runs {
        let rows = run
            .input_rows
            .map_or_else(|| "? rows".to_owned(), |n| format!("{n} rows"));
        let ending = match (run.ended_at, run.exit_code) {
            (Some(end), Some(code)) => {
                // Whole seconds are stored: `0.0s` would claim a precision we lack.
                let secs = (end - run.started_at).max(0) as u64;
                let took = if secs < 60 {
                    format!("{secs}s")
                } else {
                    human_duration(Duration::from_secs(secs))
                };
                format!("took {took} · exit code {code}")
            }
            _ => "did not finish (killed, or still running)".to_owned(),
        };
        out.push_str(&format!(
            "  #{} {:<8} {} · {rows} · started {} · {ending}\n",
            run.id,
            run.command,
            run.input,
            date(run.started_at),
        ));
    }
}

/// Writes to stdout (every command's machine output goes through here); a closed pipe
/// (`| head`) ends the command quietly, it is not an error of the run.
pub fn print_stdout(text: &str) -> Result<(), AppError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(AppError::Fatal(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// The onboarding funnel (rows done → links sent → connected), for a checkpoint with links.
fn links_funnel(checkpoint: &Checkpoint) -> Result<Option<store::Funnel>, AppError> {
    store::funnel(checkpoint.conn(), &date::today())
        .map_err(|e| crate::checkpoint::sqlite(checkpoint.path(), e).into())
}

fn render_funnel(out: &mut String, funnel: &store::Funnel) {
    out.push_str(&format!(
        "onboarding funnel: {} rows done → {} sent a Connect link ({} live today) → {} connected\n",
        funnel.rows_done, funnel.links_sent, funnel.links_live, funnel.connected
    ));
}

/// `export`: the user → building map as CSV or JSON lines on stdout.
pub fn export(args: &ExportArgs) -> Result<ExitCode, AppError> {
    let checkpoint = Checkpoint::open_read_only(&args.checkpoint)?;
    if args.links {
        return export_links(&checkpoint, args.format);
    }
    let state = args.state.map(state_name);
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.format {
        ExportFormat::Csv => export_csv(&checkpoint, state, out)?,
        ExportFormat::Json => export_json(&checkpoint, state, out)?,
    };
    match written {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(AppError::Fatal(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(ExitCode::Success),
    }
}

/// `export --links`: the live Connect links (capabilities: stdout only, never logged).
fn export_links(checkpoint: &Checkpoint, format: ExportFormat) -> Result<ExitCode, AppError> {
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match format {
        ExportFormat::Csv => export_links_csv(checkpoint, out)?,
        ExportFormat::Json => export_links_json(checkpoint, out)?,
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(AppError::Fatal(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(ExitCode::Success),
    }
}

fn export_links_csv(
    checkpoint: &Checkpoint,
    out: impl Write,
) -> Result<std::io::Result<()>, AppError> {
    let mut writer = match Writer::new(out, &store::LIVE_LINK_HEADER) {
        Ok(writer) => writer,
        Err(e) => return Ok(Err(io_error(e))),
    };
    let mut failed = None;
    for_each_link(checkpoint, |cells| {
        if failed.is_none() {
            failed = writer.write(&cells).err();
        }
    })?;
    Ok(match failed {
        Some(error) => Err(io_error(error)),
        None => writer.finish().map_err(io_error),
    })
}

fn export_links_json(
    checkpoint: &Checkpoint,
    mut out: impl Write,
) -> Result<std::io::Result<()>, AppError> {
    let mut failed = None;
    for_each_link(checkpoint, |cells| {
        let object: serde_json::Map<String, serde_json::Value> = store::LIVE_LINK_HEADER
            .iter()
            .zip(cells)
            .map(|(key, value)| (key.to_string(), value.into()))
            .collect();
        if failed.is_none() {
            failed = writeln!(out, "{}", serde_json::Value::Object(object)).err();
        }
    })?;
    Ok(match failed {
        Some(error) => Err(error),
        None => out.flush(),
    })
}

fn for_each_link(checkpoint: &Checkpoint, mut f: impl FnMut(Vec<String>)) -> Result<(), AppError> {
    store::for_each_live_link(checkpoint.conn(), &date::today(), |link| f(link.cells))
        .map_err(|e| crate::checkpoint::sqlite(checkpoint.path(), e).into())
}

/// Streams the rows as CSV; the outer error is the checkpoint's, the inner one stdout's.
fn export_csv(
    checkpoint: &Checkpoint,
    state: Option<&str>,
    out: impl Write,
) -> Result<std::io::Result<()>, AppError> {
    let mut writer = match Writer::new(out, &EXPORT_HEADER) {
        Ok(writer) => writer,
        Err(e) => return Ok(Err(io_error(e))),
    };
    let mut failed = None;
    checkpoint.for_each_export_row(state, |record| {
        if failed.is_none() {
            failed = writer.write(&record).err();
        }
    })?;
    Ok(match failed {
        Some(error) => Err(io_error(error)),
        None => writer.finish().map_err(io_error),
    })
}

/// The I/O error inside a CSV error, its kind kept (csv's `From` makes every kind `Other`).
fn io_error(error: csv::Error) -> std::io::Error {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => error,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

/// Streams the rows as JSON lines (empty cells are `null`).
fn export_json(
    checkpoint: &Checkpoint,
    state: Option<&str>,
    mut out: impl Write,
) -> Result<std::io::Result<()>, AppError> {
    let mut failed = None;
    checkpoint.for_each_export_row(state, |record| {
        let object: serde_json::Map<String, serde_json::Value> = EXPORT_HEADER
            .iter()
            .zip(record)
            .map(|(key, value)| {
                let value = if value.is_empty() {
                    serde_json::Value::Null
                } else {
                    value.into()
                };
                (key.to_string(), value)
            })
            .collect();
        if failed.is_none() {
            failed = writeln!(out, "{}", serde_json::Value::Object(object)).err();
        }
    })?;
    Ok(match failed {
        Some(error) => Err(error),
        None => out.flush(),
    })
}

/// `completions`: the shell completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "podero-onboard",
        &mut std::io::stdout(),
    );
    ExitCode::Success
}

fn state_name(state: StateFilter) -> &'static str {
    match state {
        StateFilter::Done => "done",
        StateFilter::Failed => "failed",
        StateFilter::Unresolved => "unresolved",
        StateFilter::Pending => "pending",
        StateFilter::Posting => "posting",
    }
}

/// Unix seconds as `2026-11-26 22:27:10 UTC`.
fn date(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        crate::date::from_days(days),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_and_sortable() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(1_795_732_030), "2026-11-26 22:27:10 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
