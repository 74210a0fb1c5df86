//! `status`: what a checkpoint holds: rows per state, the environment, the onboarding
//! funnel (once `links` worked on it) and the last runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::checkpoint::Checkpoint;
use crate::checkpoint::links::Funnel;
use crate::checkpoint::query::RunInfo;
use crate::cli::StatusArgs;
use crate::date;
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::progress::human_duration;
use crate::report::print_stdout;

/// `status`: rows per state, the environment, the last runs.
pub fn status(args: &StatusArgs) -> Result<ExitCode, AppError> {
    let checkpoint = Checkpoint::open_read_only(&args.checkpoint)?;
    let counts = checkpoint.state_counts()?;
    let runs = checkpoint.recent_runs(5)?;
    let org = checkpoint.meta("org_id")?.unwrap_or_default();
    let base = checkpoint.meta("base_url")?.unwrap_or_default();
    let rejects = checkpoint.reject_count()?;
    let funnel = checkpoint.funnel(&date::today())?;
    let customers = checkpoint.customer_counts()?;
    let text = if args.json {
        let mut value = json!({
            "checkpoint": args.checkpoint.display().to_string(),
            "org_id": org, "base_url": base,
            "rows_by_state": counts, "invalid_in_last_run": rejects, "runs": runs,
            "customers_by_state": customers,
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
        render_customers(&mut out, &customers);
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

/// Customers keyed by CRM id (rows without user_id), by state; nothing when there are none.
fn render_customers(out: &mut String, customers: &BTreeMap<String, u64>) {
    if customers.is_empty() {
        return;
    }
    out.push_str("customers by CRM id (rows without user_id):\n");
    for (state, n) in customers {
        out.push_str(&format!("  {n:>8}  {state}\n"));
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
            date::timestamp(run.started_at),
        ));
    }
}

fn render_funnel(out: &mut String, funnel: &Funnel) {
    out.push_str(&format!(
        "onboarding funnel: {} rows done → {} sent a Connect link ({} live today) → {} connected\n",
        funnel.rows_done, funnel.links_sent, funnel.links_live, funnel.connected
    ));
}
