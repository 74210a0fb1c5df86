//! The staged buildings as a stream of user jobs, paged from the checkpoint's temporary
//! table through the single writer (which owns the connection), so only a page and the
//! users in flight are ever in memory.
//!
//! Pages are read in (user_id, line) order, so a user's buildings are adjacent: a job is
//! closed when the next building belongs to another user, even across a page boundary.

use std::collections::VecDeque;

use futures::stream;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::links::Msg;
use crate::commands::links::targets::{Target, UserJob};

/// Buildings fetched from the checkpoint per page.
pub const PAGE_SIZE: usize = 512;

/// Every staged building, one job per user, in key order.
pub fn jobs(
    writer: mpsc::UnboundedSender<Msg>,
) -> impl futures::Stream<Item = Result<UserJob, String>> {
    let pager = Pager {
        writer,
        after: None,
        buffer: VecDeque::new(),
        exhausted: false,
    };
    stream::unfold(pager, |mut pager| async move {
        match pager.next_job().await {
            Ok(Some(job)) => Some((Ok(job), pager)),
            Ok(None) => None,
            Err(error) => {
                // Report once, then end the stream.
                pager.exhausted = true;
                pager.buffer.clear();
                Some((Err(error), pager))
            }
        }
    })
}

struct Pager {
    writer: mpsc::UnboundedSender<Msg>,
    after: Option<(String, u64)>,
    buffer: VecDeque<Target>,
    exhausted: bool,
}

impl Pager {
    /// The next user's buildings (adjacent in key order).
    async fn next_job(&mut self) -> Result<Option<UserJob>, String> {
        let mut job: Option<UserJob> = None;
        loop {
            if self.buffer.is_empty() && !self.exhausted {
                self.fill().await?;
            }
            let Some(target) = self.buffer.front() else {
                return Ok(job);
            };
            if job.as_ref().is_some_and(|j| j.user_id != target.user_id) {
                return Ok(job);
            }
            let target = self.buffer.pop_front().expect("front exists");
            job.get_or_insert_with(|| UserJob {
                user_id: target.user_id,
                targets: Vec::new(),
            })
            .targets
            .push(target);
        }
    }

    async fn fill(&mut self) -> Result<(), String> {
        let stopped = || "the checkpoint writer stopped".to_owned();
        let (reply, answer) = oneshot::channel();
        let request = Msg::Page {
            after: self.after.take(),
            limit: PAGE_SIZE,
            reply,
        };
        self.writer.send(request).map_err(|_| stopped())?;
        let page = answer.await.map_err(|_| stopped())??;
        self.exhausted = page.len() < PAGE_SIZE;
        self.after = page.last().map(|t| (t.user_id.to_string(), t.line));
        self.buffer.extend(page);
        Ok(())
    }
}
