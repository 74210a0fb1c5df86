//! A full disk under the checkpoint (issue 14): the run stops with exit 3 and says to
//! free space and run the same command again, nothing was lost; the re-run completes
//! every row exactly once. Uses a small tmpfs, so it needs root (CI runs as root);
//! elsewhere it is skipped, saying so on stderr.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Harness, generated_csv};

const ROWS: usize = 1500;
/// Room for the staged input and a tenth of the rows' results, not for all of them.
const TMPFS_SIZE: &str = "600k";
const FULL_MESSAGE: &str = "the disk holding the checkpoint is full: free space and run the same command again; nothing was lost";

/// A tmpfs mounted on a temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"512k"`), or says why not and returns `None`.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED disk-full test: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED disk-full test: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Frees space the way an operator would: a bigger filesystem.
    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("remount");
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_says_free_space_and_rerun_and_the_rerun_completes_exactly_once() {
    let Some(tmpfs) = Tmpfs::mount(TMPFS_SIZE) else {
        return;
    };
    let h = Harness::with_users(ROWS).await;
    let csv = h.write("users.csv", generated_csv(ROWS, 1));
    let checkpoint: PathBuf = tmpfs.path().join("onboard.sqlite");
    let args = [
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--rate",
        "3000",
    ];
    let out = h.run(&csv, &args).await;
    eprintln!("first run stderr:\n{}", out.stderr);
    h.expect_code(&out, 3);
    assert!(out.stderr.contains(FULL_MESSAGE), "{}", out.stderr);
    assert!(!out.stderr.contains("restore a backup"), "{}", out.stderr);
    let created_before = h.state().buildings.values().map(Vec::len).sum::<usize>();
    eprintln!("buildings created before the disk filled: {created_before}");
    assert!(created_before < ROWS, "the disk never filled: raise ROWS");
    tmpfs.grow("64m");
    let out = h.run(&csv, &args).await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert!(
        state.duplicates().is_empty(),
        "duplicates: {:?}",
        state.duplicates()
    );
    assert_eq!(state.buildings.values().map(Vec::len).sum::<usize>(), ROWS);
    let conn = rusqlite::Connection::open(&checkpoint).unwrap();
    let done: i64 = conn
        .query_row("SELECT count(*) FROM rows WHERE state = 'done'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(done as usize, ROWS);
}
