//! The learned rate across runs (issue 24, the night's restarts): a run starts at the limit
//! the last run learned, kept in the checkpoint, and keeps it up to date while it runs.
//!
//! Why: a run killed mid-way and started again (a deploy, an OOM killer, a cron timeout)
//! used to start at `--rate`, typically four times over the server's limit: a burst of
//! 429s, a second's pause each, and the limit learned again from the bottom. Measured in
//! the compressed night (docs/performance.md): each restart cost a sawtooth of 429s.
//!
//! The value is written through the checkpoint's one writer, every [`EVERY`] when it moved
//! by more than [`MOVED`], and once more at the end, so a SIGKILL loses at most a few
//! seconds of learning. It is only a starting point: the controller probes above it at
//! once, so a limit that rose since (or that the last run underestimated) is found again,
//! and one that fell is learned from its 429s.

use std::time::Duration;

use crate::api::Client;
use crate::checkpoint::Checkpoint;
use crate::checkpoint::writer::Sender;
use crate::error::AppError;

/// How often the learned limit is looked at.
const EVERY: Duration = Duration::from_secs(2);
/// A relative change smaller than this is not written again.
const MOVED: f64 = 0.02;

/// Starts `client`'s adaptive rate at the limit an earlier run learned, if one did.
pub(crate) fn seed(checkpoint: &Checkpoint, client: &Client, ceiling: f64) -> Result<(), AppError> {
    let Some(learned) = checkpoint.learned_rate()? else {
        tracing::debug!("no learned rate in the checkpoint: starting at --rate {ceiling}");
        return Ok(());
    };
    let start = learned.rate.min(ceiling);
    client.seed_rate(start);
    let ago = (crate::checkpoint::now() - learned.at).max(0);
    tracing::info!(
        rate = format_args!("{start:.2}"),
        learned_secs_ago = ago,
        "starting at the rate limit an earlier run learned (--rate {ceiling} stays the ceiling)"
    );
    Ok(())
}

/// Keeps the checkpoint's learned rate up to date until [`Keeper::finish`].
pub(crate) struct Keeper {
    task: tokio::task::JoinHandle<()>,
    client: Client,
    writer: Sender,
    ceiling: f64,
}

/// Starts keeping `client`'s learned limit in the checkpoint through `writer`.
pub(crate) fn keep(client: &Client, writer: Sender, ceiling: f64) -> Keeper {
    let task = {
        let (client, writer) = (client.clone(), writer.clone());
        tokio::spawn(async move {
            let mut written = None;
            loop {
                tokio::time::sleep(EVERY).await;
                written = record(&client, &writer, ceiling, written);
            }
        })
    };
    Keeper {
        task,
        client: client.clone(),
        writer,
        ceiling,
    }
}

impl Keeper {
    /// Stops the ticker (awaited: its sender must be gone before the writer finishes) and
    /// writes the limit as it is at the end.
    pub(crate) async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
        record(&self.client, &self.writer, self.ceiling, None);
    }
}

/// Writes the learned limit when there is one below the ceiling (at the ceiling, nothing
/// was learned) and it moved since `written`; returns what is written now.
fn record(client: &Client, writer: &Sender, ceiling: f64, written: Option<f64>) -> Option<f64> {
    let Some(learned) = client.learned_rate().filter(|rate| *rate < ceiling) else {
        return written;
    };
    let moved = written.is_none_or(|last| (learned - last).abs() > MOVED * last);
    if moved {
        writer.learned_rate(learned);
        return Some(learned);
    }
    written
}
