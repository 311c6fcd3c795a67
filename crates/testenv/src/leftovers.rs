//! State directories whose owner died before it could remove them.
//!
//! A test binary interrupted by Ctrl-C, or a demo killed with SIGKILL, dies before its exit hook
//! runs: the kernel stops its processes (`PR_SET_PDEATHSIG`), but its directory stays behind
//! (certificates, logs, etcd's preallocated write-ahead log: tens of megabytes each time). So each
//! directory names its owner in a file, by pid *and* the process's start time (a pid alone may
//! have been reused by an unrelated process), and whoever comes next removes the directories
//! whose owner is gone.

use std::path::{Path, PathBuf};

use crate::Error;

/// The file in a state directory that names its owner: `<pid> <start time>`.
pub const OWNER_FILE: &str = "owner";

/// Marks `dir` as owned by this process.
pub fn claim(dir: &Path) -> Result<(), Error> {
    let me = std::process::id();
    let started = start_time(me).unwrap_or_default();
    let path = dir.join(OWNER_FILE);
    std::fs::write(&path, format!("{me} {started}\n"))
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// The pid of the live process that owns `dir`, if there is one. `None` for a directory without
/// an owner file, or whose owner has exited.
pub fn live_owner(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(OWNER_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let started: u64 = fields.next()?.parse().ok()?;
    (crate::process::alive(pid) && start_time(pid) == Some(started)).then_some(pid)
}

/// Whether `dir` has an owner file whose process is gone.
pub fn abandoned(dir: &Path) -> bool {
    dir.join(OWNER_FILE).is_file() && live_owner(dir).is_none()
}

/// Removes the directories `<temp dir>/<prefix>*` that were [`claim`]ed by a process that has
/// exited since. Directories without an owner file (being created right now, or not ours) stay.
pub fn remove_abandoned_temp_dirs(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let abandoned: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .filter(|p| abandoned(p))
        .collect();
    for dir in abandoned {
        tracing::info!(dir = %dir.display(), "removing a directory whose owner has exited");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`, field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts with field 3 (state); field 22 is the 20th after it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_claimed_by_this_process_has_a_live_owner() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(live_owner(dir.path()), None, "no owner file yet");
        assert!(
            !abandoned(dir.path()),
            "unclaimed directories are not ours to remove"
        );
        claim(dir.path()).unwrap();
        assert_eq!(live_owner(dir.path()), Some(std::process::id()));
        assert!(!abandoned(dir.path()));
    }

    #[test]
    fn a_reused_pid_is_not_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let started = start_time(me).unwrap();
        // Our pid, but a different start time: the process that claimed it is gone.
        std::fs::write(
            dir.path().join(OWNER_FILE),
            format!("{me} {}\n", started + 1),
        )
        .unwrap();
        assert_eq!(live_owner(dir.path()), None);
        assert!(abandoned(dir.path()));
    }

    #[test]
    fn only_directories_whose_owner_exited_are_removed() {
        let prefix = format!("virt-gateway-leftovers-test-{}-", std::process::id());
        let make = |name: &str| {
            let dir = std::env::temp_dir().join(format!("{prefix}{name}"));
            std::fs::create_dir_all(dir.join("etcd")).unwrap();
            dir
        };
        let (dead, live, unowned) = (make("dead"), make("live"), make("unowned"));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let started = start_time(pid);
        child.wait().unwrap();
        std::fs::write(
            dead.join(OWNER_FILE),
            format!("{pid} {}\n", started.unwrap_or(1)),
        )
        .unwrap();
        claim(&live).unwrap();

        remove_abandoned_temp_dirs(&prefix);
        assert!(!dead.exists(), "the exited owner's directory is removed");
        assert!(live.exists(), "a live owner's directory stays");
        assert!(unowned.exists(), "a directory without an owner file stays");
        for dir in [live, unowned] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn the_start_time_of_a_live_process_is_known_and_stable() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(u32::MAX), None);
    }
}
