//! The paged stream of jobs: a command's checkpoint rows, read a page at a time through
//! the single writer (which owns the connection), kept when they have work, and grouped
//! into jobs of adjacent rows with one key (a user). Only a page and the jobs in flight
//! are ever in memory, whatever the file size.
//!
//! Pages come in key order, so a job is closed when the next row has another key, even
//! across a page boundary. A page may keep no row at all (a done re-run's pages are all
//! skips): the next one is read until a row has work or the pages end.

use std::collections::VecDeque;

use futures::{Stream, stream};

use crate::checkpoint::writer::WriteError;

/// Rows read per page.
pub const PAGE_SIZE: usize = 512;

/// A command's rows, as the engine pages them.
pub trait Pages {
    /// A row as the checkpoint answers it.
    type Row;
    /// A row with work, as the command's worker takes it.
    type Work;
    /// Where the next page starts (the key of the last row read).
    type Cursor;
    /// What the rows of one job share (adjacent in key order).
    type Key: PartialEq;

    /// Up to `limit` rows after `after`, in key order.
    async fn fetch(
        &mut self,
        after: Option<Self::Cursor>,
        limit: usize,
    ) -> Result<Vec<Self::Row>, WriteError>;
    /// The cursor after `row`.
    fn cursor(row: &Self::Row) -> Self::Cursor;
    /// The rows of a page that have work (the others are the command's to count).
    fn keep(&mut self, page: Vec<Self::Row>) -> Vec<Self::Work>;
    /// The job a row belongs to.
    fn key(work: &Self::Work) -> Self::Key;
}

/// Every row with work, one job (`Vec` of adjacent rows of one key) at a time. A read error
/// is reported once, then the stream ends.
pub fn jobs<P: Pages>(pages: P) -> impl Stream<Item = Result<Vec<P::Work>, WriteError>> {
    let pager = Pager {
        pages,
        after: None,
        buffer: VecDeque::new(),
        exhausted: false,
    };
    stream::unfold(pager, |mut pager| async move {
        match pager.next_job().await {
            Ok(Some(job)) => Some((Ok(job), pager)),
            Ok(None) => None,
            Err(error) => {
                pager.exhausted = true;
                pager.buffer.clear();
                Some((Err(error), pager))
            }
        }
    })
}

struct Pager<P: Pages> {
    pages: P,
    after: Option<P::Cursor>,
    buffer: VecDeque<P::Work>,
    exhausted: bool,
}

impl<P: Pages> Pager<P> {
    /// The next job: the buffered rows of the front row's key.
    async fn next_job(&mut self) -> Result<Option<Vec<P::Work>>, WriteError> {
        let mut job: Vec<P::Work> = Vec::new();
        loop {
            while self.buffer.is_empty() && !self.exhausted {
                self.fill().await?;
            }
            let Some(front) = self.buffer.front() else {
                return Ok((!job.is_empty()).then_some(job));
            };
            if job
                .first()
                .is_some_and(|first| P::key(first) != P::key(front))
            {
                return Ok(Some(job));
            }
            job.extend(self.buffer.pop_front());
        }
    }

    async fn fill(&mut self) -> Result<(), WriteError> {
        let page = self.pages.fetch(self.after.take(), PAGE_SIZE).await?;
        self.exhausted = page.len() < PAGE_SIZE;
        self.after = page.last().map(P::cursor);
        self.buffer.extend(self.pages.keep(page));
        Ok(())
    }
}
