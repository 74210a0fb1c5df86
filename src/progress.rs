//! Progress on stderr: an indicatif bar on a terminal, a plain line every
//! `--progress-interval` otherwise (cron, pipes), nothing with `-q`.
//!
//! The display only reads the command's counters, as a [`Reading`] (`run`: the writer's
//! tally; `links`: its summary counts); it never counts anything itself.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;

/// How progress is shown.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// An animated bar (stderr is a terminal).
    Bar,
    /// A plain line every period.
    Lines(Duration),
    /// Nothing.
    Quiet,
}

impl Mode {
    /// The mode for this process: quiet, or a bar on a terminal, or lines.
    pub fn detect(quiet: bool, interval: Duration) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines(interval)
        }
    }
}

/// A running progress display; [`Progress::finish`] stops it.
pub struct Progress {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// One reading of a command's counters: all the display needs, whatever the command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// Rows accounted for (skipped or finished).
    pub processed: u64,
    /// Rows that failed in this run.
    pub failed: u64,
    /// Rows whose outcome is unknown; `None` for a command that has no such state.
    pub unresolved: Option<u64>,
}

/// What the display reads, for any command.
pub struct Readings {
    /// Rows to account for.
    pub total: u64,
    /// The command's counters, read at each tick.
    pub read: Box<dyn Fn() -> Reading + Send + Sync>,
    /// The effective request rate now.
    pub rate: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl Progress {
    /// Starts the display over a command's counters.
    pub fn start(mode: Mode, source: Readings) -> Progress {
        let (stop, stopped) = oneshot::channel();
        let task = match mode {
            Mode::Quiet => None,
            Mode::Bar => Some(tokio::spawn(bar(source, stopped))),
            Mode::Lines(period) => Some(tokio::spawn(lines(source, period, stopped))),
        };
        Progress {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the display (the bar is cleared; the summary follows).
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn bar(source: Readings, mut stopped: oneshot::Receiver<()>) {
    let bar = ProgressBar::with_draw_target(Some(source.total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} rows · {rows_per_sec} · ETA {eta} · {msg}",
        )
        .expect("valid template")
        .with_key("rows_per_sec", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1} rows/s", state.per_sec());
        })
        .progress_chars("=> "),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopped => break,
        }
        let reading = (source.read)();
        bar.set_position(reading.processed);
        bar.set_message(status(reading, (source.rate)()));
    }
    bar.finish_and_clear();
}

async fn lines(source: Readings, period: Duration, mut stopped: oneshot::Receiver<()>) {
    let start = Instant::now();
    let mut tick = tokio::time::interval_at((start + period).into(), period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopped => return,
        }
        let reading = (source.read)();
        eprintln!(
            "{}",
            reading_line(reading, source.total, start.elapsed(), (source.rate)())
        );
    }
}

fn status(reading: Reading, rate: f64) -> String {
    let mut text = format!("{rate:.1} req/s · {} failed", reading.failed);
    if let Some(unresolved) = reading.unresolved {
        text.push_str(&format!(" · {unresolved} unresolved"));
    }
    text
}

/// One plain progress line, e.g.
/// `progress: 1200/5000 rows (24%) · 20.0 rows/s · ETA 3m 10s · 9.8 req/s · 2 failed · 0 unresolved`.
pub fn reading_line(reading: Reading, total: u64, elapsed: Duration, rate: f64) -> String {
    let done = reading.processed;
    let per_sec = done as f64 / elapsed.as_secs_f64().max(0.001);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let eta = if per_sec > 0.0 {
        human_duration(Duration::from_secs_f64(
            total.saturating_sub(done) as f64 / per_sec,
        ))
    } else {
        "unknown".into()
    };
    format!(
        "progress: {done}/{total} rows ({percent}%) · {per_sec:.1} rows/s · ETA {eta} · {}",
        status(reading, rate)
    )
}

/// `3725 s` → `1h 2m 5s`; under 10 s with a tenth (`0.4s`), so a short run is not `0s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) if s < 10 => format!("{:.1}s", d.as_secs_f64()),
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_reads_well() {
        let reading = Reading {
            processed: 1202,
            failed: 2,
            unresolved: Some(0),
        };
        let text = reading_line(reading, 5000, Duration::from_secs(60), 9.84);
        assert_eq!(
            text,
            "progress: 1202/5000 rows (24%) · 20.0 rows/s · ETA 3m 9s · 9.8 req/s · 2 failed · 0 unresolved"
        );
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h 2m 5s");
        assert_eq!(human_duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
    }

    #[test]
    fn a_reading_without_an_unresolved_state_leaves_it_out() {
        let reading = Reading {
            processed: 99,
            failed: 1,
            unresolved: None,
        };
        assert_eq!(
            reading_line(reading, 300, Duration::from_secs(2), 100.0),
            "progress: 99/300 rows (33%) · 49.5 rows/s · ETA 4.1s · 100.0 req/s · 1 failed"
        );
    }
}
