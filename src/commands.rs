//! The small commands: `status`, `export`, `completions`.

use std::io::Write;

use clap::CommandFactory;
use serde_json::json;

use crate::checkpoint::Checkpoint;
use crate::cli::{Cli, ExportArgs, ExportFormat, StateFilter, StatusArgs};
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::report::csv::{EXPORT_HEADER, Writer};

/// `status`: rows per state, the environment, the last runs.
pub fn status(args: &StatusArgs) -> Result<ExitCode, AppError> {
    let checkpoint = Checkpoint::open_read_only(&args.checkpoint)?;
    let counts = checkpoint.state_counts()?;
    let runs = checkpoint.recent_runs(5)?;
    let org = checkpoint.meta("org_id")?.unwrap_or_default();
    let base = checkpoint.meta("base_url")?.unwrap_or_default();
    let rejects = checkpoint.reject_count()?;
    if args.json {
        let value = json!({
            "checkpoint": args.checkpoint.display().to_string(),
            "org_id": org, "base_url": base,
            "rows_by_state": counts, "invalid_in_last_run": rejects, "runs": runs,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("serializable")
        );
        return Ok(ExitCode::Success);
    }
    let mut out = String::new();
    out.push_str(&format!(
        "checkpoint {} (org {org}, {base})\n",
        args.checkpoint.display()
    ));
    let total: u64 = counts.values().sum();
    let states: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    out.push_str(&format!("rows: {total} ({})\n", states.join(", ")));
    if rejects > 0 {
        out.push_str(&format!("invalid rows in the last run: {rejects}\n"));
    }
    for run in &runs {
        out.push_str(&format!(
            "run #{} {} of {} ({} rows): started {}, {}\n",
            run.id,
            run.command,
            run.input,
            run.input_rows.map_or("?".into(), |n| n.to_string()),
            date(run.started_at),
            match (run.ended_at, run.exit_code) {
                (Some(end), Some(code)) => format!("ended {} with exit code {code}", date(end)),
                _ => "did not finish (killed or running)".to_owned(),
            }
        ));
    }
    print!("{out}");
    Ok(ExitCode::Success)
}

/// `export`: the user → building map as CSV or JSON lines on stdout.
pub fn export(args: &ExportArgs) -> Result<ExitCode, AppError> {
    let checkpoint = Checkpoint::open_read_only(&args.checkpoint)?;
    let state = args.state.map(state_name);
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::new(stdout);
    let broken =
        |e: &dyn std::fmt::Display| AppError::Fatal(format!("cannot write to stdout: {e}"));
    match args.format {
        ExportFormat::Csv => {
            let mut writer = Writer::new(&mut out, &EXPORT_HEADER).map_err(|e| broken(&e))?;
            let mut failed = None;
            checkpoint.for_each_export_row(state, |record| {
                if failed.is_none() {
                    failed = writer.write(&record).err();
                }
            })?;
            if let Some(error) = failed {
                return Err(broken(&error));
            }
            writer.finish().map_err(|e| broken(&e))?;
        }
        ExportFormat::Json => {
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
            if let Some(error) = failed {
                return Err(broken(&error));
            }
        }
    }
    out.flush().map_err(|e| broken(&e))?;
    Ok(ExitCode::Success)
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

fn date(unix: i64) -> String {
    httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64),
    )
}
