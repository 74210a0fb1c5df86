//! One run per checkpoint: an exclusive `flock` on `<checkpoint>.lock` and on the
//! checkpoint file itself.
//!
//! The kernel releases the locks when the process dies, however it dies, so a lock left by
//! a killed run is never stale: the next run simply gets it. The lock file's text (pid,
//! start time) only serves the message shown to a second run. The lock on the checkpoint
//! itself is what holds when the lock file does not: removed during a run (a "stale lock"
//! cleaned up by hand), or the checkpoint reached by another name (a hard link), each
//! once let a second run in beside the first, and every building was created twice.
//! (`flock` and SQLite's POSIX locks do not interact on a local file system.)

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::{CheckpointError, file_error};
use crate::files::{self, Existing};

/// Held for the whole run; released on drop (or by the kernel on death).
pub struct Lock {
    _file: File,
    /// Dropped after every connection of this process to the checkpoint is closed (the
    /// run's `Lock` is its first local): closing a descriptor of a file drops the
    /// process's POSIX locks on it, SQLite's included.
    _checkpoint: File,
}

/// The lock file beside a checkpoint.
pub fn lock_path(checkpoint: &Path) -> PathBuf {
    super::sidecar(checkpoint, ".lock")
}

impl Lock {
    /// Takes the lock or says who holds it.
    pub fn acquire(checkpoint: &Path) -> Result<Lock, CheckpointError> {
        let path = lock_path(checkpoint);
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        // Never through a symlink: the holder line below would be written into its target.
        let mut file =
            files::create_private(&path, Existing::Keep).map_err(|e| file_error(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(CheckpointError::Locked {
                    path: checkpoint.to_owned(),
                    holder: holder.trim().to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let held = lock_checkpoint(checkpoint)?;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        let since = httpdate::fmt_http_date(std::time::SystemTime::now());
        write!(file, "pid {}, since {since}", std::process::id()).map_err(io)?;
        Ok(Lock {
            _file: file,
            _checkpoint: held,
        })
    }
}

/// Locks the checkpoint file itself (creating it owner-only if missing, never through a
/// symlink), for when the lock file was removed or the checkpoint has another name.
fn lock_checkpoint(checkpoint: &Path) -> Result<File, CheckpointError> {
    let file = files::open_regular(checkpoint).map_err(|e| file_error(checkpoint, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(CheckpointError::Locked {
            path: checkpoint.to_owned(),
            holder: "its lock file was removed, or it reached this checkpoint by another \
                     name: a hard link"
                .to_owned(),
        }),
        Err(TryLockError::Error(source)) => Err(CheckpointError::Io {
            path: checkpoint.to_owned(),
            source,
        }),
    }
}
