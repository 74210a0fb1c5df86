//! `run --metrics-file PATH`: the run's figures in the Prometheus text format, for
//! node_exporter's textfile collector, so a nightly job can be alerted on.
//!
//! The file is replaced atomically (a temp file in the same directory, then `rename`),
//! so the collector never reads half a file. The temp file comes from the `tempfile`
//! crate: a random name created exclusively (`O_EXCL`), so a symlink planted at a
//! guessable name cannot redirect the write; `rename` replaces a link at the path itself
//! rather than following it, and a symlink or special file there is refused at start-up.
//! Mode 0644: the figures hold no personal data, and node_exporter runs as another user. It is written at the end of every run,
//! failed ones included (before the pipeline, then only the exit code, duration and
//! times are known).
//!
//! The time of the last run that exited 0 is what alerts use ("not successful for
//! 36 h"). It must survive failed runs, so it is the newest of: the checkpoint's `runs`
//! table (the source of truth, when it can be read) and the previous metrics file (which
//! still has it when the checkpoint cannot be opened). `0` means never.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::error::AppError;
use crate::report::Summary;

/// The metric alerts are written against.
pub const LAST_SUCCESS: &str = "podero_onboard_last_success_timestamp_seconds";

/// Row states, always all written (a missing series is not a zero to an alert).
const STATES: [&str; 5] = ["done", "failed", "unresolved", "pending", "posting"];

/// What one run leaves in the metrics file.
#[derive(Debug, Default)]
pub struct RunFigures {
    /// The process exit code.
    pub exit_code: i32,
    /// Wall time of the run, seconds.
    pub duration_secs: f64,
    /// When the run ended, unix seconds.
    pub ended_at: i64,
    /// Unix seconds of the last `run` that exited 0 (0: never).
    pub last_success: i64,
    /// Checkpoint rows by state (empty when the run stopped before the pipeline).
    pub rows_by_state: BTreeMap<String, u64>,
    /// This run's row outcomes (created, failed, ...).
    pub run_rows: BTreeMap<&'static str, u64>,
    /// This run's customers known only by CRM id, by how they became known (created,
    /// found, adopted): customers, not rows, so a family of their own.
    pub run_customers: BTreeMap<&'static str, u64>,
    /// This run's requests by HTTP status (`network`: no response).
    pub requests: BTreeMap<String, u64>,
}

/// Checks at start-up that the metrics file's directory takes a new file and that no
/// symlink or special file stands at the path, so a wrong path fails before any request
/// rather than after an hour of calls.
pub fn check_writable(path: &Path) -> Result<(), AppError> {
    crate::files::check_in_the_way(path).map_err(|e| {
        AppError::Usage(format!(
            "--metrics-file {}: {e}; remove it, or choose another path",
            path.display()
        ))
    })?;
    temp_file(path).map(drop).map_err(|e| {
        AppError::Usage(format!(
            "--metrics-file {}: cannot create a file in its directory ({e}); choose a \
             writable directory, e.g. node_exporter's textfile directory",
            path.display()
        ))
    })
}
/// The figures of a run that reached its summary.
pub fn from_summary(summary: &Summary, checkpoint: &Checkpoint, previous: &Path) -> RunFigures {
    let rows = &summary.rows;
    let run_rows = BTreeMap::from([
        ("read", rows.read),
        ("invalid", rows.invalid),
        ("duplicates", rows.duplicates),
        ("created", rows.tally.created),
        ("adopted", rows.tally.adopted),
        ("updated", rows.tally.updated),
        ("buildings_updated", rows.tally.buildings_updated),
        ("adopted_existing", rows.tally.adopted_existing),
        ("user_only", rows.tally.user_only),
        ("skipped_done", rows.tally.skipped_done),
        ("skipped_failed", rows.tally.skipped_failed),
        ("skipped_not_selected", rows.tally.skipped_not_selected),
        ("failed", rows.failed),
        ("unresolved", rows.tally.unresolved),
        ("not_processed", rows.not_processed),
    ]);
    let run_customers = BTreeMap::from([
        ("created", rows.tally.users_created),
        ("found", rows.tally.users_found),
        ("adopted", rows.tally.users_adopted),
    ]);
    RunFigures {
        exit_code: summary.header.exit_code as i32,
        duration_secs: summary.duration_secs,
        ended_at: crate::checkpoint::now(),
        last_success: last_success(Some(checkpoint), previous),
        rows_by_state: checkpoint.state_counts().unwrap_or_default(),
        run_rows,
        run_customers,
        requests: summary.requests.by_status.clone(),
    }
}

/// The figures of a run that stopped with an error before its summary.
pub fn from_error(
    error: &AppError,
    duration_secs: f64,
    checkpoint: &Path,
    previous: &Path,
) -> RunFigures {
    let checkpoint = Checkpoint::open_read_only(checkpoint).ok();
    RunFigures {
        exit_code: error.exit_code() as i32,
        duration_secs,
        ended_at: crate::checkpoint::now(),
        last_success: last_success(checkpoint.as_ref(), previous),
        rows_by_state: checkpoint
            .and_then(|c| c.state_counts().ok())
            .unwrap_or_default(),
        ..RunFigures::default()
    }
}

/// The newest success known to the checkpoint or to the previous metrics file.
fn last_success(checkpoint: Option<&Checkpoint>, previous: &Path) -> i64 {
    let recorded = checkpoint
        .and_then(|c| c.last_success().ok().flatten())
        .unwrap_or(0);
    recorded.max(previous_last_success(previous).unwrap_or(0))
}

/// The last-success value of an earlier metrics file, if it has one.
fn previous_last_success(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(LAST_SUCCESS)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as i64)
}

/// The Prometheus text exposition of `figures`.
pub fn render(figures: &RunFigures) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let plain = |value: String| vec![(String::new(), value)];
    family(
        LAST_SUCCESS,
        "When the last run that exited 0 ended (unix seconds, 0 if never).",
        &plain(figures.last_success.to_string()),
    );
    family(
        "podero_onboard_last_run_timestamp_seconds",
        "When the last run ended (unix seconds), whatever its outcome.",
        &plain(figures.ended_at.to_string()),
    );
    family(
        "podero_onboard_last_run_exit_code",
        "Exit code of the last run: 0 all done, 1 rows failed, 2 usage, 3 aborted, 130 interrupted.",
        &plain(figures.exit_code.to_string()),
    );
    family(
        "podero_onboard_last_run_duration_seconds",
        "Wall time of the last run.",
        &plain(format!("{:.3}", figures.duration_secs)),
    );
    let states: Vec<_> = STATES
        .iter()
        .map(|state| {
            let count = figures.rows_by_state.get(*state).copied().unwrap_or(0);
            (format!("{{state=\"{state}\"}}"), count.to_string())
        })
        .collect();
    family(
        "podero_onboard_rows",
        "Rows in the checkpoint by state, after the last run.",
        &states,
    );
    let run_rows: Vec<_> = figures
        .run_rows
        .iter()
        .map(|(kind, n)| (format!("{{outcome=\"{kind}\"}}"), n.to_string()))
        .collect();
    family(
        "podero_onboard_last_run_rows",
        "Rows of the last run by what happened to them.",
        &run_rows,
    );
    let customers: Vec<_> = figures
        .run_customers
        .iter()
        .map(|(how, n)| (format!("{{how=\"{how}\"}}"), n.to_string()))
        .collect();
    family(
        "podero_onboard_last_run_customers",
        "Customers of the last run known only by CRM id whose Podero user was created, found or adopted.",
        &customers,
    );
    let requests: Vec<_> = figures
        .requests
        .iter()
        .map(|(status, n)| {
            (
                format!("{{status=\"{}\"}}", label_value(status)),
                n.to_string(),
            )
        })
        .collect();
    family(
        "podero_onboard_last_run_requests",
        "Requests of the last run by HTTP status (network: no response), token requests included.",
        &requests,
    );
    out
}

/// A label value escaped as the text format requires.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replaces the file at `path` with `text` atomically: temp file in the same
/// directory, flushed to disk, then renamed over the old one (the temp file is removed
/// if anything fails).
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temp = temp_file(path)?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map(drop).map_err(|e| e.error)
}

/// A new `.NAME.<random>.tmp` beside `path`: the same filesystem (so `rename` is atomic)
/// and not `*.prom`, so the textfile collector never reads it.
fn temp_file(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map_or_else(|| "metrics".into(), |n| n.to_string_lossy().into_owned());
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_success_is_read_back_from_a_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podero.prom");
        let figures = RunFigures {
            last_success: 1_700_000_000,
            ..RunFigures::default()
        };
        write(&path, &render(&figures)).unwrap();
        assert_eq!(previous_last_success(&path), Some(1_700_000_000));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    /// The temp file's name used to be `.NAME.<pid>.tmp`, opened without `O_EXCL`: a link
    /// planted there emptied its target. Now the name is random and created exclusively.
    #[test]
    fn a_link_planted_at_the_old_guessable_temp_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podero.prom");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let guessed = dir
            .path()
            .join(format!(".podero.prom.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &guessed).unwrap();
        write(&path, &render(&RunFigures::default())).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(previous_last_success(&path).is_some());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600, "owner reads and writes: {mode:o}");
        assert_eq!(mode & 0o022, 0, "nobody else writes: {mode:o}");
    }

    #[test]
    fn a_symlink_at_the_metrics_path_is_refused_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podero.prom");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        let error = check_writable(&path).unwrap_err();
        assert_eq!(error.exit_code(), crate::exit_code::ExitCode::Usage);
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(error.to_string().contains("podero.prom"), "{error}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
