//! The SQLite checkpoint: the source of truth for what has been done.
//!
//! The checkpoint owns every SQL statement of the program. Layout: `schema.sql` and
//! `migrations/` (documented in docs/checkpoint.md), [`lock`] (a sidecar lock file so only
//! one run uses a checkpoint at a time), `customers` (CRM ids → Podero users), [`row`] (a row's identity, state and history) and
//! [`outcome`] (what a run did to it), [`stage`] (`run`'s input, validated and planned),
//! `links` (`links`' buildings, their link history, the funnel), `query` (reports,
//! `status`, `export`), and `writer` (the one thread that writes during a run of either
//! command, in batched transactions, stopping at its first failure).
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction survives a process
//! crash *and* power loss. That matters for the POST intent: it is committed before the
//! request is sent, and the worker waits for the commit.

pub(crate) mod customers;
pub(crate) mod failed;
pub(crate) mod links;
pub mod lock;
pub mod outcome;
pub(crate) mod query;
pub mod rate;
pub mod row;
pub mod stage;
pub(crate) mod vanished;
pub(crate) mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use uuid::Uuid;

pub use lock::Lock;

use crate::files::{self, FileError};

/// The schema version this build writes (`PRAGMA user_version`): version 1 is
/// `schema.sql`, each migration adds one.
pub(crate) const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;
/// Schema migrations, in order: `MIGRATIONS[i]` takes a checkpoint from version `i + 1` to
/// `i + 2`. Append only: a released migration is never edited, since partners' nightly
/// checkpoints were written by it. Each runs inside the transaction that bumps the version.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/002_sync.sql"),
    include_str!("migrations/003_links.sql"),
    include_str!("migrations/004_first_week.sql"),
    include_str!("migrations/005_customers.sql"),
];
/// `PRAGMA application_id`: "PDOB", marks a file as a podero-onboard checkpoint.
pub(crate) const APPLICATION_ID: i64 = 0x5044_4f42;
const SCHEMA: &str = include_str!("schema.sql");
/// The environment variable of the page-cap test hook (`Checkpoint::limit_pages_for_tests`).
pub const TEST_MAX_PAGES_ENV: &str = "PODERO_ONBOARD_TEST_MAX_PAGES";

/// A problem with the checkpoint file. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Another run holds the lock.
    #[error(
        "checkpoint {path} is in use by another podero-onboard run ({holder}); wait for it to \
         finish or stop it, then run again"
    )]
    Locked {
        /// The checkpoint.
        path: PathBuf,
        /// Who holds it, as written in the lock file.
        holder: String,
    },
    /// Not a checkpoint of ours.
    #[error(
        "{path} is not a podero-onboard checkpoint ({why}); point --checkpoint at a new file or \
         at a checkpoint written by podero-onboard"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        why: String,
    },
    /// Written by a newer podero-onboard.
    #[error(
        "checkpoint {path} has schema version {found}, newer than this podero-onboard \
         understands ({SCHEMA_VERSION}); upgrade podero-onboard"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// Written by an older podero-onboard; opened read-only, so it cannot be upgraded here.
    #[error(
        "checkpoint {path} has schema version {found}, older than this podero-onboard's \
         ({SCHEMA_VERSION}); a `podero-onboard run` on it (a --dry-run too) upgrades it in place, \
         losing nothing"
    )]
    OlderSchema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// Belongs to another organization or environment.
    #[error(
        "checkpoint {path} belongs to {what} {found}, but this run uses {expected}; use a \
         separate checkpoint per organization and environment"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// `org` or `base URL`.
        what: &'static str,
        /// Recorded in the checkpoint.
        found: String,
        /// Requested now.
        expected: String,
    },
    /// Missing (for status/export).
    #[error("checkpoint {path} does not exist; run `podero-onboard run` first, or check the path")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The disk holding the checkpoint is full (SQLITE_FULL). Every write is a transaction,
    /// so what was committed stays and the failed one left no trace: the run can simply
    /// be repeated once there is space (an operator must not restore a backup for this).
    #[error(
        "checkpoint {path}: the disk holding the checkpoint is full: free space and run the \
         same command again; nothing was lost"
    )]
    DiskFull {
        /// The file.
        path: PathBuf,
    },
    /// SQLite failed: unreadable, corrupt...
    #[error(
        "checkpoint {path}: {source}; if the file is damaged, move it aside and restore a backup"
    )]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A symlink or a special file stands where the checkpoint, its `-wal`/`-shm` or its
    /// lock file go: refused, so nothing is written through it.
    #[error("cannot use {path}: {source}; remove it, or point --checkpoint at another path")]
    InTheWay {
        /// The path in the way.
        path: PathBuf,
        /// What it is.
        #[source]
        source: FileError,
    },
    /// The file or its lock could not be created.
    #[error(
        "cannot use checkpoint {path}: {source}; check that the directory exists and is writable"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// An open checkpoint.
pub struct Checkpoint {
    conn: Connection,
    path: PathBuf,
}

/// Which environment a run targets; checked against the checkpoint's `meta`.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The organization.
    pub org_id: Uuid,
    /// The API host.
    pub base_url: String,
}

impl Checkpoint {
    /// Opens (creating if needed, owner-only) a checkpoint for writing, checks it belongs
    /// to `identity`, and applies the durable settings.
    pub fn open_for_run(path: &Path, identity: &Identity) -> Result<Self, CheckpointError> {
        create_private(path)?;
        let checkpoint = Self::open_writable(path)?;
        checkpoint.ensure_schema()?;
        checkpoint.ensure_identity(identity)?;
        // Narrowed with no connection of ours open: closing any descriptor of a file drops
        // every POSIX lock this process holds on it, SQLite's included, and without them a
        // reader elsewhere (`status`) takes the run's shared memory and WAL for its own:
        // truncated on its open (SIGBUS here), possibly deleted on its close.
        checkpoint.close()?;
        Self::tighten(path)?;
        Self::open_writable(path)
    }

    /// Opens the file read-write with the durable settings.
    fn open_writable(path: &Path) -> Result<Self, CheckpointError> {
        // SQLITE_OPEN_NOFOLLOW: a symlink swapped in after `create_private` is refused too.
        let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sqlite(path, e))?;
        let checkpoint = Checkpoint {
            conn,
            path: path.to_owned(),
        };
        checkpoint.configure()?;
        Ok(checkpoint)
    }

    /// Closes the connection, reporting what SQLite could not finish.
    fn close(self) -> Result<(), CheckpointError> {
        let path = self.path;
        self.conn.close().map_err(|(_, e)| sqlite(&path, e))
    }

    /// Narrows the checkpoint, its -wal and its -shm to 0600, saying so when one was wider:
    /// they hold personal data and Connect links, and a run must not keep adding to files
    /// others can read. Done once the file is known to be this job's checkpoint, before
    /// the run writes anything, so a foreign file pointed at by mistake is left as it was.
    fn tighten(path: &Path) -> Result<(), CheckpointError> {
        for file in [
            path.to_owned(),
            sidecar(path, "-wal"),
            sidecar(path, "-shm"),
        ] {
            let widened = files::tighten(&file).map_err(|e| file_error(&file, e))?;
            if let Some(mode) = widened {
                tracing::warn!(
                    "{} was readable or writable by other accounts (mode {mode:03o}); it is now \
                     owner-only (0600). It holds personal data and Connect links: if others \
                     could read it, treat what it held as exposed",
                    file.display()
                );
            }
        }
        Ok(())
    }

    /// Opens an existing checkpoint read-only (status, export).
    pub(crate) fn open_read_only(path: &Path) -> Result<Self, CheckpointError> {
        if !path.exists() {
            return Err(CheckpointError::Missing {
                path: path.to_owned(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sqlite(path, e))?;
        let checkpoint = Checkpoint {
            conn,
            path: path.to_owned(),
        };
        checkpoint
            .conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sqlite(path, e))?;
        match checkpoint.version()? {
            0 => Err(CheckpointError::Foreign {
                path: path.to_owned(),
                why: "it has no podero-onboard schema".into(),
            }),
            found if found < SCHEMA_VERSION => Err(CheckpointError::OlderSchema {
                path: path.to_owned(),
                found,
            }),
            _ => {
                checkpoint.check_version()?;
                Ok(checkpoint)
            }
        }
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for the modules of this folder and for reports.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    fn configure(&self) -> Result<(), CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        // A non-SQLite file fails here, on the first read of its header.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| self.not_sqlite(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "SQLite refused WAL mode; continuing with it");
        }
        self.conn
            .execute_batch("PRAGMA synchronous=FULL; PRAGMA temp_store=FILE;")
            .map_err(wrap)?;
        self.limit_pages_for_tests().map_err(wrap)
    }

    /// TEST HOOK ONLY: [`TEST_MAX_PAGES_ENV`] caps the checkpoint at that many pages
    /// (`PRAGMA max_page_count`). A write past the cap fails with `SQLITE_FULL`, the very
    /// error a full disk gives, so a test proves the disk-full path (exit 3, then exactly
    /// once on the re-run) without root or a small filesystem. A run that uses it says so.
    fn limit_pages_for_tests(&self) -> rusqlite::Result<()> {
        let Some(pages) = std::env::var(TEST_MAX_PAGES_ENV)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
        else {
            return Ok(());
        };
        tracing::warn!(
            "{TEST_MAX_PAGES_ENV}={pages} caps the checkpoint at {pages} pages, a test hook: \
             unset it outside tests"
        );
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
    }

    fn not_sqlite(&self, error: rusqlite::Error) -> CheckpointError {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => CheckpointError::Foreign {
                path: self.path.clone(),
                why: "it is not an SQLite database, or it is damaged".into(),
            },
            _ => sqlite(&self.path, error),
        }
    }

    fn version(&self) -> Result<i64, CheckpointError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.not_sqlite(e))
    }

    fn check_version(&self) -> Result<(), CheckpointError> {
        let app: i64 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| sqlite(&self.path, e))?;
        if app != APPLICATION_ID {
            return Err(CheckpointError::Foreign {
                path: self.path.clone(),
                why: format!("its application id is {app:#x}"),
            });
        }
        let version = self.version()?;
        if version > SCHEMA_VERSION {
            return Err(CheckpointError::NewerSchema {
                path: self.path.clone(),
                found: version,
            });
        }
        Ok(())
    }

    /// Upgrades an older checkpoint in one transaction: all pending migrations and the new
    /// version commit together or not at all, so a crash mid-upgrade loses nothing.
    fn migrate(&self) -> Result<(), CheckpointError> {
        let version = self.version()?;
        if version >= SCHEMA_VERSION {
            return Ok(());
        }
        let pending = &MIGRATIONS[(version - 1) as usize..];
        tracing::info!(
            from = version,
            to = SCHEMA_VERSION,
            "upgrading the checkpoint schema"
        );
        let script = format!(
            "BEGIN IMMEDIATE; {} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
            pending.concat()
        );
        self.conn.execute_batch(&script).map_err(|e| {
            let _ = self.conn.execute_batch("ROLLBACK;");
            sqlite(&self.path, e)
        })
    }

    fn ensure_schema(&self) -> Result<(), CheckpointError> {
        if self.version()? != 0 {
            self.check_version()?;
            return self.migrate();
        }
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| sqlite(&self.path, e))?;
        if tables > 0 {
            return Err(CheckpointError::Foreign {
                path: self.path.clone(),
                why: format!(
                    "it is an SQLite database of something else ({tables} unrelated schema objects)"
                ),
            });
        }
        let init = format!(
            "BEGIN; {SCHEMA} {} PRAGMA application_id = {APPLICATION_ID}; \
             PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
            MIGRATIONS.concat()
        );
        self.conn
            .execute_batch(&init)
            .map_err(|e| sqlite(&self.path, e))
    }

    fn ensure_identity(&self, identity: &Identity) -> Result<(), CheckpointError> {
        let expected = [
            ("org_id", "org", identity.org_id.to_string()),
            ("base_url", "base URL", identity.base_url.clone()),
        ];
        for (key, what, value) in expected {
            match self.meta(key)? {
                Some(found) if found != value => {
                    return Err(CheckpointError::Mismatch {
                        path: self.path.clone(),
                        what,
                        found,
                        expected: value,
                    });
                }
                Some(_) => {}
                None => self.set_meta(key, &value)?,
            }
        }
        Ok(())
    }

    /// A `meta` value.
    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, CheckpointError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| sqlite(&self.path, e))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), CheckpointError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| sqlite(&self.path, e))
    }

    /// The last run that never recorded its end (a crash), as `(id, pid, started_at)`.
    pub(crate) fn unfinished_run(&self) -> Result<Option<(i64, i64, i64)>, CheckpointError> {
        self.conn
            .query_row(
                "SELECT id, pid, started_at FROM runs WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| sqlite(&self.path, e))
    }

    /// Records the start of a run and returns its id.
    pub fn begin_run(&self, command: &str, input: &str) -> Result<i64, CheckpointError> {
        self.conn
            .execute(
                "UPDATE runs SET ended_at = started_at WHERE ended_at IS NULL",
                [],
            )
            .map_err(|e| sqlite(&self.path, e))?;
        self.conn
            .execute(
                "INSERT INTO runs (started_at, pid, command, input) VALUES (?1, ?2, ?3, ?4)",
                params![now(), std::process::id(), command, input],
            )
            .map_err(|e| sqlite(&self.path, e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records what the run read.
    pub(crate) fn record_input(
        &self,
        run: i64,
        sha256: Option<&str>,
        rows: u64,
    ) -> Result<(), CheckpointError> {
        self.conn
            .execute(
                "UPDATE runs SET input_sha256 = ?2, input_rows = ?3 WHERE id = ?1",
                params![run, sha256, rows],
            )
            .map(|_| ())
            .map_err(|e| sqlite(&self.path, e))
    }

    /// Records how the run ended.
    pub(crate) fn end_run(
        &self,
        run: i64,
        exit_code: i32,
        summary: &str,
    ) -> Result<(), CheckpointError> {
        self.conn
            .execute(
                "UPDATE runs SET ended_at = ?2, exit_code = ?3, summary = ?4 WHERE id = ?1",
                params![run, now(), exit_code, summary],
            )
            .map(|_| ())
            .map_err(|e| sqlite(&self.path, e))
    }
}

/// Creates the file owner-only, never through a symlink, before SQLite opens it (SQLite
/// gives new -wal and -shm files the database's permissions), and refuses a symlink or
/// special file at the -wal or -shm path. An existing file keeps its mode here: it may not
/// be a checkpoint at all (see [`Checkpoint::tighten`]).
fn create_private(path: &Path) -> Result<(), CheckpointError> {
    for sidecar in [sidecar(path, "-wal"), sidecar(path, "-shm")] {
        files::check_in_the_way(&sidecar).map_err(|e| file_error(&sidecar, e))?;
    }
    files::open_regular(path)
        .map(|_| ())
        .map_err(|e| file_error(path, e))
}

/// The files kept beside a checkpoint, each with what it is for a message: SQLite's -wal
/// and -shm, and the run's lock.
pub fn companions(path: &Path) -> [(&'static str, PathBuf); 3] {
    [
        ("the checkpoint's -wal file", sidecar(path, "-wal")),
        ("the checkpoint's -shm file", sidecar(path, "-shm")),
        ("the checkpoint's lock file", lock::lock_path(path)),
    ]
}

/// `<checkpoint>-wal` or `<checkpoint>-shm`.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A file problem at `path`: a symlink or special file in the way is the operator's to
/// fix (exit 2), an OS error is not.
pub(crate) fn file_error(path: &Path, error: FileError) -> CheckpointError {
    match error {
        FileError::Io(source) => CheckpointError::Io {
            path: path.to_owned(),
            source,
        },
        in_the_way => CheckpointError::InTheWay {
            path: path.to_owned(),
            source: in_the_way,
        },
    }
}

/// Wraps an SQLite error with the file name.
pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> CheckpointError {
    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return CheckpointError::DiskFull {
            path: path.to_owned(),
        };
    }
    CheckpointError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `synchronous` is a setting of the connection, not of the file, so it is checked on
    /// the connection the run writes through (the WAL mode is also checked on the file by
    /// tests/durability.rs).
    #[test]
    fn the_run_connection_is_in_wal_mode_with_synchronous_full() {
        let dir = tempfile::tempdir().expect("temp dir");
        let identity = Identity {
            org_id: Uuid::from_u128(1),
            base_url: "http://127.0.0.1:1".into(),
        };
        let checkpoint =
            Checkpoint::open_for_run(&dir.path().join("c.sqlite"), &identity).expect("open");
        let pragma = |name: &str| -> String {
            checkpoint
                .conn()
                .query_row(&format!("PRAGMA {name}"), [], |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .expect(name)
        };
        assert_eq!(pragma("journal_mode"), "wal");
        // 2 = FULL: every commit fsyncs the WAL, so it survives a power loss.
        assert_eq!(pragma("synchronous"), "2");
    }
}
