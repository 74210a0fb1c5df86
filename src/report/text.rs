//! The human summary on stderr: short, only the lines that are not zero, failures
//! grouped with a few example lines and what to do next.

use std::fmt::Write;

use super::Summary;
use crate::checkpoint::query::FailureGroup;
use crate::progress::human_duration;

/// Renders the summary.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let r = &summary.rows;
    let verb = if summary.plan.is_some() {
        "checked"
    } else {
        "read"
    };
    let rows = if r.read == 1 { "row" } else { "rows" };
    let _ = writeln!(
        out,
        "{} {rows} {verb} from {} in {}",
        r.read,
        summary.header.input,
        human_duration(std::time::Duration::from_secs_f64(summary.duration_secs))
    );
    if let Some(plan) = &summary.plan {
        render_plan(&mut out, plan, r);
    } else {
        render_counts(&mut out, r);
    }
    render_failures(&mut out, summary);
    render_requests(&mut out, summary);
    if let Some(reason) = &summary.header.abort_reason {
        let _ = writeln!(out, "aborted: {reason}");
    }
    let _ = writeln!(
        out,
        "checkpoint: {} · exit code {}",
        summary.header.checkpoint, summary.header.exit_code
    );
    out
}

/// The non-zero outcome counts of a real run, one line each.
fn render_counts(out: &mut String, r: &super::RowCounts) {
    let t = &r.tally;
    let lines = [
        (
            t.users_created,
            "customers created in Podero (--create-users): new users",
        ),
        (t.users_found, "customers found in Podero by their CRM id"),
        (
            t.users_adopted,
            "customers adopted by e-mail (--adopt-existing): CRM id given to the user",
        ),
        (t.created, "buildings created"),
        (
            t.adopted,
            "unknown POST outcomes verified: building existed, id recorded",
        ),
        (
            t.updated,
            "users updated (their fields changed), no new building",
        ),
        (
            t.buildings_updated,
            "buildings updated (their fields changed: read, overlaid, written back)",
        ),
        (
            t.adopted_existing,
            "existing buildings of the same name adopted (--adopt-existing), fields applied",
        ),
        (t.user_only, "user-only rows: user updated, no building"),
        (t.skipped_done, "already done: no call"),
        (
            t.skipped_failed,
            "failed before and unchanged: not retried (use --retry-failed)",
        ),
        (
            t.skipped_not_selected,
            "not selected by --only-failed: not failed in the checkpoint, or new to it",
        ),
        (t.failed_permanent, "failed: fix the data (see --report)"),
        (
            t.failed_transient,
            "failed after retries: retried automatically next run",
        ),
        (
            t.unresolved,
            "unresolved: POST outcome unknown, needs a check (see --report)",
        ),
        (r.invalid, "invalid: not sent (see --report)"),
        (r.duplicates, "duplicate lines: processed once"),
        (
            r.not_processed,
            "not processed (the run stopped): run again to resume",
        ),
        (
            r.vanished,
            "in the checkpoint but no longer in the input: left untouched (export --state vanished lists them)",
        ),
    ];
    for (count, what) in lines.into_iter().filter(|(count, _)| *count > 0) {
        let _ = writeln!(out, "  {count:>8}  {what}");
    }
}

fn render_plan(out: &mut String, plan: &super::Plan, r: &super::RowCounts) {
    let (invalid, duplicates) = (r.invalid, r.duplicates);
    let _ = writeln!(out, "plan (dry run, nothing sent):");
    let look_up = if plan.create_users {
        "customers to find by CRM id, created if missing (--create-users)"
    } else {
        "customers to look up by CRM id (not created if missing: see --create-users)"
    };
    if plan.look_up > 0 {
        let _ = writeln!(out, "  {:>8}  {look_up}", plan.look_up);
    }
    let lines = [
        (
            plan.onboard,
            "to onboard: create the building (and PUT the user if needed)",
        ),
        (
            plan.update,
            "to update: user fields changed, building exists",
        ),
        (plan.retry, "to retry: failed before"),
        (plan.verify, "to verify: earlier POST outcome unknown"),
        (
            plan.update_building,
            "to update the building: its fields changed (GET + PUT)",
        ),
        (
            plan.user_only,
            "user-only rows: update the user, no building",
        ),
        (plan.skip_done, "to skip: already done"),
        (
            plan.skip_failed,
            "to skip: failed before, unchanged (use --retry-failed)",
        ),
        (invalid, "invalid: would not be sent"),
        (duplicates, "duplicate lines: would be processed once"),
    ];
    for (count, what) in lines {
        let _ = writeln!(out, "  {count:>8}  {what}");
    }
    if r.vanished > 0 {
        let what = "in the checkpoint but no longer in the input: would be left untouched";
        let _ = writeln!(out, "  {:>8}  {what}", r.vanished);
    }
}

fn render_failures(out: &mut String, summary: &Summary) {
    render_groups(out, "not done, by reason:", &summary.failures);
}

/// Failure groups under `title`: a count, the state and cause, the first lines and one
/// example message each (`run`'s and `links`' summaries).
pub fn render_groups(out: &mut String, title: &str, groups: &[FailureGroup]) {
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}");
    for group in groups {
        let lines: Vec<String> = group.lines.iter().map(u64::to_string).collect();
        let more = if group.count > group.lines.len() as u64 {
            ", …"
        } else {
            ""
        };
        let noun = if group.count == 1 { "line" } else { "lines" };
        let _ = writeln!(
            out,
            "  {:>6} × {} ({}) — {noun} {}{more}",
            group.count,
            group.state,
            group.cause,
            lines.join(", "),
        );
        // The example is the first listed line's message.
        let _ = match group.lines.first() {
            Some(first) => writeln!(out, "           e.g. line {first}: {}", group.example),
            None => writeln!(out, "           e.g. {}", group.example),
        };
    }
}

fn render_requests(out: &mut String, summary: &Summary) {
    if summary.requests.total == 0 {
        return;
    }
    let by_status: Vec<String> = summary
        .requests
        .by_status
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect();
    // Under a second the achieved rate measures start-up, not throughput.
    let achieved = if summary.duration_secs >= 1.0 {
        format!(" · {:.1} req/s achieved", summary.rate.achieved)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "requests: {} ({}){achieved} · rate limit {} req/s, effective {:.1}",
        summary.requests.total,
        by_status.join(", "),
        summary.rate.limit,
        summary.rate.effective
    );
}
