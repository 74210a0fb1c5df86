//! Creating the files the job writes (the report, `links --out`, the checkpoint and its
//! lock) so that a symlink or a special file planted at the path cannot redirect the write.
//!
//! The job often runs from cron in a directory other accounts may write to. A symlink at
//! `--report` would make a plain `open(O_CREAT|O_TRUNC)` truncate and overwrite whatever
//! it points at, with our permissions; a FIFO would block the run forever. So every output:
//! * is refused when the path is a symlink or anything but a regular file, checked first
//!   with `lstat` for a clear message, then enforced by the open itself (`O_NOFOLLOW`, and
//!   `O_NONBLOCK` so that a FIFO swapped in meanwhile cannot block), and by an `fstat` of
//!   the opened file, which no later swap can change;
//! * is owner-only (0600): created so, and an existing file is `fchmod`ed to 0600;
//! * is truncated, when asked, only after those checks (never by the open).
//!
//! Only the last path component is protected: the directories on the way are the
//! operator's choice. The `--metrics-file` is written through the `tempfile` crate (a
//! random, exclusively created name, then `rename`), see `commands::run::metrics`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every file holding customer data, links or run state.
pub const PRIVATE_MODE: u32 = 0o600;

/// Why a path cannot be used for an output. The text neither repeats the path nor says
/// what to do: callers name the path with the flag it came from and the remedy ("cannot
/// write --out PATH: ...; choose another --out path").
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path is a symbolic link.
    #[error("it is a symbolic link, and writing through it could overwrite whatever it points at")]
    Symlink,
    /// The path exists and is not a regular file.
    #[error("it is a {kind}, not a regular file")]
    NotRegular {
        /// What it is (directory, FIFO, socket, device).
        kind: &'static str,
    },
    /// The OS refused.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Whether an open should empty an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Keep its content (the lock file, the checkpoint).
    Keep,
    /// Empty it (the report, `--out`).
    Truncate,
}

/// Creates (or opens) the regular file at `path` for writing, owner-only, never through
/// a symlink; empties it when `existing` says so.
pub fn create_private(path: &Path, existing: Existing) -> Result<File, FileError> {
    let file = open_regular(path)?;
    // `mode` applies only when the file is created; an old file may be wider.
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))?;
    if existing == Existing::Truncate {
        file.set_len(0)?;
    }
    Ok(file)
}

/// Opens the regular file at `path` for reading and writing, never through a symlink,
/// creating it owner-only if it is missing. An existing file keeps its content and mode:
/// for a file that may turn out not to be ours (the checkpoint, checked after opening).
pub fn open_regular(path: &Path) -> Result<File, FileError> {
    check_in_the_way(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(PRIVATE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refused(path, e))?;
    ensure_regular(&file)?;
    Ok(file)
}

/// Narrows an existing file to owner-only; returns its old permission bits when they
/// were wider (so the caller can say so). A missing file is left missing (`None`).
pub fn tighten(path: &Path) -> Result<Option<u32>, FileError> {
    let mode = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
        Ok(meta) => meta.permissions().mode() & 0o777,
    };
    check_in_the_way(path)?;
    // Already private: no descriptor is opened (closing one drops every POSIX lock this
    // process holds on the file, SQLite's among them).
    if mode & !PRIVATE_MODE == 0 {
        return Ok(None);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refused(path, e))?;
    ensure_regular(&file)?;
    let old = file.metadata()?.permissions().mode() & 0o777;
    if old & !PRIVATE_MODE == 0 {
        return Ok(None);
    }
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))?;
    Ok(Some(old))
}

/// Refuses a path that is a symlink or an existing non-regular file (a missing path is
/// fine: it will be created).
pub fn check_in_the_way(path: &Path) -> Result<(), FileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(FileError::Symlink),
        Ok(meta) if !meta.is_file() => Err(FileError::NotRegular {
            kind: kind(&meta.file_type()),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn ensure_regular(file: &File) -> Result<(), FileError> {
    let file_type = file.metadata()?.file_type();
    if file_type.is_file() {
        Ok(())
    } else {
        Err(FileError::NotRegular {
            kind: kind(&file_type),
        })
    }
}

/// `O_NOFOLLOW` on a symlink fails with `ELOOP`: say what it means, not "too many levels
/// of symbolic links" (a symlink swapped in after the `lstat`).
fn refused(path: &Path, error: io::Error) -> FileError {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if error.raw_os_error() == Some(libc::ELOOP) && is_link {
        FileError::Symlink
    } else {
        FileError::Io(error)
    }
}

fn kind(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_symlink_in_the_way_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("report.csv");
        symlink(&victim, &link).unwrap();
        for existing in [Existing::Truncate, Existing::Keep] {
            let error = create_private(&link, existing).unwrap_err();
            assert!(matches!(error, FileError::Symlink), "{error}");
        }
        assert!(matches!(tighten(&link), Err(FileError::Symlink)));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(mode(&victim), 0o644);
    }

    #[test]
    fn a_dangling_symlink_does_not_create_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("created-elsewhere");
        let link = dir.path().join("out.csv");
        symlink(&target, &link).unwrap();
        assert!(matches!(
            create_private(&link, Existing::Truncate),
            Err(FileError::Symlink)
        ));
        assert!(!target.exists());
    }

    #[test]
    fn a_directory_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = create_private(dir.path(), Existing::Keep).unwrap_err();
        assert_eq!(error.to_string(), "it is a directory, not a regular file");
    }

    #[test]
    fn an_existing_file_is_narrowed_and_truncated_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut kept = String::new();
        create_private(&path, Existing::Keep)
            .unwrap()
            .read_to_string(&mut kept)
            .unwrap();
        assert_eq!((kept.as_str(), mode(&path)), ("old", 0o600));
        let mut file = create_private(&path, Existing::Truncate).unwrap();
        file.write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn open_regular_creates_owner_only_and_leaves_an_existing_mode_alone() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.sqlite");
        open_regular(&new).unwrap();
        assert_eq!(mode(&new), 0o600);
        let foreign = dir.path().join("invoices.sqlite");
        std::fs::write(&foreign, "theirs").unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_regular(&foreign).unwrap();
        assert_eq!(mode(&foreign), 0o644);
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "theirs");
    }

    #[test]
    fn tighten_reports_the_old_mode_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.sqlite-wal");
        assert_eq!(tighten(&path).unwrap(), None, "missing: nothing to do");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(tighten(&path).unwrap(), Some(0o644));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(tighten(&path).unwrap(), None);
    }
}
