//! What a links run did: the counts, the per-row failures, the exit code, and their
//! renderings (text on stderr, JSON on stdout). Nothing here holds a session id or a
//! link: those go only to `--out`, `export --links` and the checkpoint.

use super::owners::Way;
use serde::Serialize;

use super::config::LinksConfig;
use super::out::OutFate;
use super::targets::TargetCounts;
use super::worker::LinkResult;
use crate::checkpoint::links::Target;
use crate::checkpoint::query::FailureGroup;
use crate::engine::Ending;
use crate::report::{Requests, SummaryHeader};

/// Version of the `--json` summary's shape.
pub const SUMMARY_VERSION: u32 = 1;
/// Failures listed in the summary (the rest are counted).
const MAX_LISTED_FAILURES: usize = 100;
/// Lines kept per failure group in the text summary.
const EXAMPLE_LINES: usize = 5;

/// The counts of one links run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LinkCounts {
    /// Data rows read.
    pub rows_read: u64,
    /// Rows with an invalid cell (no link; reported with line and column).
    pub invalid: u64,
    /// Rows naming a building named earlier in the file.
    pub duplicates: u64,
    /// Rows whose building is not done in the checkpoint: run `run` first.
    pub not_onboarded: u64,
    /// User-only rows: no building, so no link.
    pub no_building: u64,
    /// Links created for buildings that had none.
    pub created: u64,
    /// Links created because the previous one expired.
    pub renewed: u64,
    /// Links still valid: not re-sent.
    pub still_valid: u64,
    /// Buildings with a connected heat pump (no link, ever).
    pub connected: u64,
    /// Of `connected`, first seen in this run.
    pub newly_connected: u64,
    /// Of `newly_connected`, heat pumps this run assigned to the user's only building.
    pub assigned: u64,
    /// Buildings that should have a link but none could be created.
    pub failed: u64,
}

impl LinkCounts {
    /// Counts one building's outcome.
    pub fn add(&mut self, result: &LinkResult) {
        match result {
            LinkResult::Created { renewed: true, .. } => self.renewed += 1,
            LinkResult::Created { .. } => self.created += 1,
            LinkResult::StillValid => self.still_valid += 1,
            LinkResult::Connected { newly, assigned } => {
                self.connected += 1;
                self.newly_connected += u64::from(*newly);
                self.assigned += u64::from(*assigned);
            }
            LinkResult::Failed { .. } => self.failed += 1,
        }
    }

    /// Buildings decided so far (created, renewed, still valid, connected or failed).
    pub fn processed(&self) -> u64 {
        self.created + self.renewed + self.still_valid + self.connected + self.failed
    }

    /// What the progress display shows (links have no unresolved state: an unknown
    /// outcome is simply created again).
    pub fn reading(&self) -> crate::progress::Reading {
        crate::progress::Reading {
            processed: self.processed(),
            failed: self.failed,
            unresolved: None,
        }
    }
}

/// A building that got no link, and why.
#[derive(Clone, Debug, Serialize)]
pub struct RowFailure {
    /// Line in the CSV.
    pub line: u64,
    /// The user.
    pub user_id: String,
    /// The building's name.
    pub building_name: String,
    /// The HTTP status, if any.
    pub http_status: Option<u16>,
    /// Why.
    pub error: String,
}

impl RowFailure {
    /// The failure of `target`.
    pub fn new(target: &Target, http_status: Option<u16>, error: &str) -> Self {
        RowFailure {
            line: target.line,
            user_id: target.user_id.to_string(),
            building_name: target.building_name.clone(),
            http_status,
            error: error.to_owned(),
        }
    }
}

/// The `--json` summary of `links` (documented in docs/connect-links.md).
#[derive(Clone, Debug, Serialize)]
pub struct LinksSummary {
    /// Which run (`command` is `links`), and its verdict.
    #[serde(flatten)]
    pub header: SummaryHeader,
    /// The date links were checked against (UTC).
    pub today: String,
    /// Seconds.
    pub duration_secs: f64,
    /// The counts (for a dry run: what would happen; new connections are not known).
    pub links: LinkCounts,
    /// Requests sent.
    pub requests: Requests,
    /// How the run learned who connected: one user list, or a heat-pump list per customer.
    pub connections_checked_by: Way,
    /// Buildings without a link because of an error (at most 100 listed).
    pub failures: Vec<RowFailure>,
    /// With `--out`: `written` (this run's new links, or a new file's header) or `kept`
    /// (no new link: the file was left as it was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<OutFate>,
    /// Every failure, grouped by cause like `run`'s (the text summary shows these).
    #[serde(skip)]
    groups: Vec<FailureGroup>,
}

impl LinksSummary {
    /// The summary of a run that has staged its input; its outcome comes at the end.
    pub fn new(config: &LinksConfig, run_id: i64, staged: &TargetCounts) -> Self {
        LinksSummary {
            header: SummaryHeader::new(
                SUMMARY_VERSION,
                Some("links"),
                &config.input.source,
                &config.checkpoint,
                run_id,
            ),
            today: config.today.clone(),
            duration_secs: 0.0,
            links: LinkCounts {
                rows_read: staged.rows_read,
                invalid: staged.invalid,
                duplicates: staged.duplicates,
                not_onboarded: staged.not_onboarded,
                no_building: staged.no_building,
                ..LinkCounts::default()
            },
            requests: Requests::default(),
            connections_checked_by: Way::None,
            failures: Vec::new(),
            out: None,
            groups: Vec::new(),
        }
    }

    /// Sets `outcome`, `abort_reason` and `exit_code` from the ending and the counts.
    pub fn conclude(&mut self, ending: Ending, dry_run: bool) {
        let troubled = self.links.failed > 0 || self.links.invalid > 0;
        self.header.conclude(ending.conclude(dry_run, troubled));
    }

    /// Keeps a failure for the summary (bounded) and counts it in its group.
    pub fn push_failure(&mut self, failure: RowFailure) {
        let cause = failure
            .http_status
            .map_or_else(|| "no HTTP status".to_owned(), |s| format!("HTTP {s}"));
        let at = self.groups.iter().position(|g| g.cause == cause);
        let group = match at {
            Some(at) => &mut self.groups[at],
            None => {
                self.groups.push(FailureGroup {
                    state: "failed".into(),
                    cause,
                    count: 0,
                    lines: Vec::new(),
                    example: failure.error.clone(),
                });
                self.groups.last_mut().expect("just pushed")
            }
        };
        // Outcomes arrive in completion order: keep the first lines of the file, and the
        // example of the first one (as `run`'s groups do).
        group.count += 1;
        if group
            .lines
            .first()
            .is_none_or(|&first| failure.line < first)
        {
            group.example = failure.error.clone();
        }
        group.lines.push(failure.line);
        group.lines.sort_unstable();
        group.lines.truncate(EXAMPLE_LINES);
        if self.failures.len() < MAX_LISTED_FAILURES {
            self.failures.push(failure);
        }
    }

    /// The JSON summary, one line.
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string(self).expect("serializable");
        text.push('\n');
        text
    }

    /// The human summary for stderr.
    pub fn text(&self) -> String {
        let c = &self.links;
        let h = &self.header;
        let would = if h.outcome == "dry_run" {
            "would be "
        } else {
            ""
        };
        let mut out = format!(
            "links {} · {} rows read from {} · today is {} (UTC)\n",
            h.outcome.replace('_', " "),
            c.rows_read,
            h.input,
            self.today
        );
        let lines = [
            (c.created, format!("links {would}created")),
            (c.renewed, format!("expired links {would}renewed")),
            (c.still_valid, "links still valid (not re-sent)".to_owned()),
            (
                c.connected,
                format!(
                    "connected ({} new, {} heat pumps assigned to a building)",
                    c.newly_connected, c.assigned
                ),
            ),
            (
                c.not_onboarded,
                "not onboarded yet: run `run` first".to_owned(),
            ),
            (
                c.no_building,
                "user-only rows: no building, no link".to_owned(),
            ),
            (
                c.invalid,
                "invalid rows (see the messages above)".to_owned(),
            ),
            (
                c.duplicates,
                "duplicate rows (the building was named earlier)".to_owned(),
            ),
            (c.failed, "failed: no link (see below)".to_owned()),
        ];
        for (n, what) in lines {
            out.push_str(&format!("  {n:>8}  {what}\n"));
        }
        let mut groups = self.groups.clone();
        groups.sort_by_key(|group| std::cmp::Reverse(group.count));
        crate::report::text::render_groups(&mut out, "no link, by reason:", &groups);
        if self.out == Some(OutFate::Kept) {
            out.push_str(
                "--out left as it was: this run created no link (export --links lists every \
                 live link)\n",
            );
        }
        if let Some(reason) = &h.abort_reason {
            out.push_str(&format!("stopped: {reason}\n"));
        }
        out.push_str(&format!(
            "{} requests in {:.1}s · exit code {}\n",
            self.requests.total, self.duration_secs, h.exit_code
        ));
        out
    }
}
