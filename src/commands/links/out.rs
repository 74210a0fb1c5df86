//! `--out`, the mail-merge file of the links a run created. It never destroys links:
//!
//! * The path is checked and opened (owner-only, never through a symlink, see
//!   [`crate::files`]) before anything is sent, but **not emptied**.
//! * The file is replaced only when the run creates its first link: it then holds exactly
//!   the links created by this run, the ones to mail now.
//! * A run that creates none (the same day again, a dry run) leaves an existing file as it
//!   was, so the morning's links survive a second run; a missing or empty file gets the
//!   header, so the mailer always finds a valid CSV.
//!
//! Why not append, or a new file beside the old one: a mailer fed a file that also holds
//! yesterday's links mails those customers twice, and a name that changes per run cannot
//! be written in a cron line. Every live link, with the mail-merge columns, is always in
//! `export --links`.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::OUT_HEADER;
use crate::error::AppError;
use crate::files::{self, Existing};
use crate::report::csv::CsvWriter;

/// What became of the `--out` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutFate {
    /// Holds this run's new links (or only the header: it was missing or empty).
    Written,
    /// Left as it was: this run created no link.
    Kept,
}

/// The `--out` file, opened but not yet emptied.
pub struct OutFile {
    path: PathBuf,
    file: Option<File>,
    writer: Option<CsvWriter<BufWriter<File>>>,
    /// The file existed with content when the run started.
    had_content: bool,
}

impl OutFile {
    /// Opens `path` for `--out` without emptying it; fails (exit 2) when it cannot be
    /// written.
    pub fn open(path: &Path) -> Result<OutFile, AppError> {
        let fail = |e: &dyn std::fmt::Display| {
            AppError::Usage(format!(
                "cannot write --out {}: {e}; choose a writable --out path",
                path.display()
            ))
        };
        let file = files::create_private(path, Existing::Keep).map_err(|e| fail(&e))?;
        let had_content = file.metadata().map_err(|e| fail(&e))?.len() > 0;
        Ok(OutFile {
            path: path.to_owned(),
            file: Some(file),
            writer: None,
            had_content,
        })
    }

    /// The path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one new link; the first one replaces the file's old content.
    pub fn write(&mut self, record: &[String]) -> csv::Result<()> {
        if self.writer.is_none() {
            self.start()?;
        }
        match self.writer.as_mut() {
            Some(writer) => writer.write(record),
            None => Ok(()),
        }
    }

    /// Finishes the file: flushes the new links, or writes the header into a new file,
    /// or leaves an old one alone.
    pub fn finish(mut self) -> csv::Result<OutFate> {
        if self.writer.is_none() && !self.had_content {
            self.start()?;
        }
        match self.writer.take() {
            Some(writer) => writer.finish().map(|()| OutFate::Written),
            None => Ok(OutFate::Kept),
        }
    }

    /// Empties the file and writes the header.
    fn start(&mut self) -> csv::Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // Opened without O_APPEND and never read: the offset is still 0.
        file.set_len(0)?;
        self.writer = Some(CsvWriter::new(BufWriter::new(file), &OUT_HEADER)?);
        Ok(())
    }
}
