//! One run per checkpoint: an exclusive `flock` on `<checkpoint>.lock`.
//!
//! The kernel releases the lock when the process dies, however it dies, so a lock left by
//! a killed run is never stale: the next run simply gets it. The file's text (pid, start
//! time) only serves the message shown to a second run.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::{CheckpointError, file_error};
use crate::files::{self, Existing};

/// Held for the whole run; released on drop (or by the kernel on death).
pub struct Lock {
    _file: File,
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
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        let since = httpdate::fmt_http_date(std::time::SystemTime::now());
        write!(file, "pid {}, since {since}", std::process::id()).map_err(io)?;
        Ok(Lock { _file: file })
    }
}
