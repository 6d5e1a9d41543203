//! One writer at a time: `<state_dir>/ringops.lock`, held with an OS advisory lock
//! (`flock` on Unix) for as long as a [`WriterLock`] lives. The file names its holder
//! (pid, command, since) so a second writer can say who is in the way. The OS drops the
//! lock when the holder exits, even by `kill -9`, so a crash never blocks the state; the
//! stale text left behind is only ever read while someone holds the lock again.
//! Readers do not take this lock.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// File name of the lock inside the state folder.
pub const LOCK_FILE: &str = "ringops.lock";

/// Who holds the writer lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// What it is doing (`apply --ring dev`, `daemon`).
    pub command: String,
    /// Since when, RFC 3339 UTC.
    pub since: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} running `{}` since {}",
            self.pid, self.command, self.since
        )
    }
}

/// Why the writer lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("another ringops is writing the state ({}, lock {path}); try again when it finishes, or wait for it", holder_text(.holder))]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Its holder, when the file names one (a holder that just took the lock may not
        /// have written its name yet).
        holder: Option<LockHolder>,
    },
    /// The lock file could not be created, locked or written.
    #[error("cannot use lock file {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn holder_text(holder: &Option<LockHolder>) -> String {
    match holder {
        Some(holder) => holder.to_string(),
        None => "holder not recorded yet".to_owned(),
    }
}

impl LockError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Held { .. })
    }
}

/// The writer lock; released when dropped.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
    path: PathBuf,
    holder: LockHolder,
}

impl WriterLock {
    /// Takes the lock of `state_dir` (created if needed) for `command`. When another process
    /// holds it, fails at once with [`LockError::Held`] naming the holder, or with `wait`
    /// blocks until it is free.
    pub fn acquire(state_dir: &Path, command: &str, wait: bool) -> Result<Self, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        create_private_dir(state_dir).map_err(io)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) if wait => file.lock().map_err(io)?,
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&file);
                return Err(LockError::Held { path, holder });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        let holder = LockHolder {
            pid: std::process::id(),
            command: command.to_owned(),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        write_holder(&file, &holder).map_err(io)?;
        Ok(Self { file, path, holder })
    }

    /// Who holds it: this process.
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock of `state_dir` is held now, and by whom; never waits and never
    /// writes the file.
    pub fn status(state_dir: &Path) -> Result<LockStatus, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockStatus::Free),
            Err(source) => return Err(LockError::Io { path, source }),
        };
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(LockStatus::Free)
            }
            Err(TryLockError::WouldBlock) => Ok(LockStatus::Held(read_holder(&file))),
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }
}

/// Whether the writer lock is held, from [`WriterLock::status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockStatus {
    /// Nobody writes.
    Free,
    /// Someone writes; named when the file says who.
    Held(Option<LockHolder>),
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Clear the name while still holding the lock, so nobody reads a stale holder.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn read_holder(mut file: &File) -> Option<LockHolder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_holder(mut file: &File, holder: &LockHolder) -> std::io::Result<()> {
    let text = serde_json::to_string(holder).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_data()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    /// Set in the child process: the state folder whose lock it holds.
    const CHILD_ENV: &str = "RINGOPS_TEST_LOCK_CHILD";
    const CHILD_READY: &str = "ringops-lock-child: holding";

    #[test]
    fn second_writer_fails_fast_naming_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = WriterLock::acquire(dir.path(), "apply --ring dev", false).expect("first");
        let err = WriterLock::acquire(dir.path(), "rollback", false).expect_err("second");
        let LockError::Held { holder, .. } = &err else {
            panic!("expected Held, got {err:?}");
        };
        assert_eq!(holder.as_ref(), Some(first.holder()));
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("`apply --ring dev`"), "{message}");
        assert!(message.contains(&first.holder().since), "{message}");
        let status = WriterLock::status(dir.path()).expect("status");
        assert_eq!(status, LockStatus::Held(Some(first.holder().clone())));
        drop(first);
        let again = WriterLock::acquire(dir.path(), "rollback", false).expect("free after drop");
        assert_eq!(again.holder().command, "rollback");
        drop(again);
        assert_eq!(
            WriterLock::status(dir.path()).expect("status"),
            LockStatus::Free
        );
    }

    #[test]
    fn status_of_a_state_without_a_lock_file_is_free() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("no-state-yet");
        assert_eq!(
            WriterLock::status(&missing).expect("status"),
            LockStatus::Free
        );
        assert!(!missing.exists(), "status creates nothing");
    }

    #[test]
    fn holder_file_is_json() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lock = WriterLock::acquire(dir.path(), "daemon", false).expect("lock");
        let text = std::fs::read_to_string(lock.path()).expect("read");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["pid"], std::process::id());
        assert_eq!(value["command"], "daemon");
        let since = value["since"].as_str().expect("since");
        humantime::parse_rfc3339(since).expect("RFC 3339");
    }

    #[test]
    fn waiting_writer_gets_the_lock_when_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = WriterLock::acquire(dir.path(), "apply", false).expect("first");
        let (tx, rx) = mpsc::channel();
        let state_dir = dir.path().to_owned();
        let waiter = std::thread::spawn(move || {
            let held = WriterLock::acquire(&state_dir, "waiter", false);
            tx.send(matches!(held, Err(LockError::Held { .. })))
                .expect("send");
            let lock = WriterLock::acquire(&state_dir, "waiter", true);
            tx.send(true).expect("send");
            lock
        });
        let found_held = rx.recv_timeout(Duration::from_secs(10)).expect("tried");
        assert!(
            found_held,
            "the waiter found the lock free while it was held"
        );
        assert!(rx.try_recv().is_err(), "the waiter got a held lock");
        drop(first);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("waiter did not get the lock within 10 s of its release");
        let lock = waiter.join().expect("join").expect("lock");
        assert_eq!(lock.holder().command, "waiter");
    }

    /// Starts this test binary as a child that holds the lock of `dir` until its stdin
    /// closes, and waits until it says it holds it.
    fn child_holding(dir: &Path) -> std::process::Child {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "adapters::lock::tests::child_process_body",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(CHILD_READY) {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("child did not report holding the lock within 30 s");
        child
    }

    /// The child's side of the cross-process tests, run only by them.
    #[test]
    #[ignore = "a child process of the cross-process lock tests, not a test of its own"]
    fn child_process_body() {
        let dir = std::env::var_os(CHILD_ENV).expect("run by child_holding");
        let _lock = WriterLock::acquire(Path::new(&dir), "child apply", false).expect("child lock");
        println!("{CHILD_READY}");
        std::io::stdout().flush().expect("flush");
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
    }

    #[test]
    fn lock_held_by_another_process_names_it_then_frees() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = child_holding(dir.path());
        let err = WriterLock::acquire(dir.path(), "apply", false).expect_err("held by child");
        let LockError::Held {
            holder: Some(holder),
            ..
        } = &err
        else {
            panic!("expected Held with a holder, got {err:?}");
        };
        assert_eq!(holder.pid, child.id());
        assert_eq!(holder.command, "child apply");
        drop(child.stdin.take());
        let status = child.wait().expect("wait child");
        assert!(status.success(), "child failed: {status}");
        WriterLock::acquire(dir.path(), "apply", false).expect("free after the child exits");
    }

    #[test]
    fn a_killed_holder_never_blocks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = child_holding(dir.path());
        child.kill().expect("kill -9 the child");
        child.wait().expect("reap child");
        let stale = std::fs::read_to_string(dir.path().join(LOCK_FILE)).expect("read");
        assert!(
            stale.contains("child apply"),
            "stale holder left behind: {stale}"
        );
        let lock = WriterLock::acquire(dir.path(), "apply", false).expect("free after kill");
        assert_eq!(lock.holder().pid, std::process::id());
    }

    #[test]
    fn waiting_for_another_process() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = child_holding(dir.path());
        let mut stdin = child.stdin.take();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(stdin.take());
        });
        let lock = WriterLock::acquire(dir.path(), "apply --wait", true).expect("waited");
        assert_eq!(lock.holder().command, "apply --wait");
        releaser.join().expect("join");
        child.wait().expect("reap child");
    }
}
