//! Runs a worker group's hooks: `check` on the staged files before a switch (a failure
//! aborts that worker) and `reload` after it. Owns how a hook process is started,
//! watched, bounded and reported; knows nothing of workers, rings or deployments (the
//! engine passes those in as [`HookRun::env`]).
//!
//! A hook is exec'd directly, never through a shell: program and arguments as compiled
//! into [`HookSpec`] (on an agent, as its `agent.toml` defines them), stdin `/dev/null`,
//! in the folder given, in a process group of its own. It inherits this process's environment minus the secrets in it
//! (`RINGOPS_SECRET_*`) and where secrets live (`CREDENTIALS_DIRECTORY`,
//! `RINGOPS_SECRETS_DIR`), plus the variables of the run. Its stdout and stderr are read
//! as they come, secret values replaced, and only the last 8 KiB kept
//! ([`output`]). When it outlives its timeout it is killed with SIGKILL and reaped, and
//! whatever still holds its output open is given a moment, then abandoned, so a hook
//! can never hang the caller. Dropping the future kills it too.
//!
//! Only the hook process itself is killed: killing its whole process group needs
//! `killpg(2)`, which needs the `libc` crate (not a dependency yet); see `kill`.

mod output;

use crate::model::desired::HookSpec;
use output::{Redactor, Tail};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep_until};

pub use output::{KEEP, SENSITIVE};

/// How long output is still read after the hook ended: a process it left behind may
/// hold the pipes open for much longer, and is not waited for.
const DRAIN: Duration = Duration::from_millis(250);

/// How long a killed hook may take to be reaped before it is left to the runtime.
const REAP: Duration = Duration::from_secs(5);

/// Variables of this process a hook does not inherit: exact names, then prefixes.
const WITHHELD: [&str; 2] = ["CREDENTIALS_DIRECTORY", "RINGOPS_SECRETS_DIR"];
const WITHHELD_PREFIXES: [&str; 1] = ["RINGOPS_SECRET_"];

/// One run of a hook: what it is and what it is given.
#[derive(Clone, Copy, Debug)]
pub struct HookRun<'a> {
    /// Which hook: `check` or `reload`; names it in errors.
    pub name: &'a str,
    /// The folder it runs in. A relative program (`./check.sh`) is found from here.
    pub cwd: &'a Path,
    /// Variables set for it on top of the inherited ones (`RINGOPS_WORKER`,
    /// `RINGOPS_RING`, `RINGOPS_WORKER_DIR`, and for check `RINGOPS_STAGED_DIR`).
    pub env: &'a [(&'a str, &'a str)],
    /// Secret values that must never appear in its output; each occurrence becomes
    /// [`SENSITIVE`] before the output is kept anywhere.
    pub redact: &'a [&'a str],
}

/// What a hook that succeeded printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookOutput {
    /// Stdout and stderr as they arrived, secret values replaced; the last [`KEEP`]
    /// bytes, under a `… (N bytes cut)` line when there was more.
    pub output: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Why a hook did not succeed. The output in it is redacted and bounded like
/// [`HookOutput::output`]. [`HookError::Spawn`] and [`HookError::Wait`] keep the cause
/// as their `source`; print them with [`crate::adapters::causes`] to show it.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The program could not be started (missing, not executable, bad folder).
    #[error("{hook} hook: cannot run `{program}`")]
    Spawn {
        /// `check` or `reload`.
        hook: String,
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// It ended unsuccessfully.
    #[error("{hook} hook: `{program}` failed ({status}){}", shown(.output))]
    Failed {
        /// `check` or `reload`.
        hook: String,
        /// The program.
        program: String,
        /// How it ended: an exit code or a signal.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// It outlived its timeout and was killed.
    #[error(
        "{hook} hook: `{program}` did not finish within {} and was killed{}",
        humantime::format_duration(*.after),
        shown(.output)
    )]
    TimedOut {
        /// `check` or `reload`.
        hook: String,
        /// The program.
        program: String,
        /// The timeout.
        after: Duration,
        /// What it printed before.
        output: String,
    },
    /// Waiting for it failed (the OS lost track of the process).
    #[error("{hook} hook: cannot wait for `{program}`")]
    Wait {
        /// `check` or `reload`.
        hook: String,
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
}

/// The output part of an error message.
fn shown(output: &str) -> String {
    match output.trim_end() {
        "" => " with no output".to_owned(),
        text => format!("; its output:\n{text}"),
    }
}

/// Runs `hook` and waits for it, at most its timeout (plus a moment to reap it).
/// Success is exit code 0; anything else is an error carrying the output.
pub async fn run(hook: &HookSpec, run: HookRun<'_>) -> Result<HookOutput, HookError> {
    let started = Instant::now();
    let program = hook.command.first().map_or("(no program)", String::as_str);
    let spawn_error = |source| HookError::Spawn {
        hook: run.name.to_owned(),
        program: program.to_owned(),
        source,
    };
    let mut child = command(hook, &run)
        .map_err(spawn_error)?
        .spawn()
        .map_err(spawn_error)?;
    let ended = watch(&mut child, started + hook.timeout, run.redact).await;
    let (hook_name, program) = (run.name.to_owned(), program.to_owned());
    match ended {
        Ended::TimedOut { output } => Err(HookError::TimedOut {
            hook: hook_name,
            program,
            after: hook.timeout,
            output,
        }),
        Ended::Exited { status, output } => match status {
            Err(source) => Err(HookError::Wait {
                hook: hook_name,
                program,
                source,
            }),
            Ok(status) if status.success() => Ok(HookOutput {
                output,
                elapsed: started.elapsed(),
            }),
            Ok(status) => Err(HookError::Failed {
                hook: hook_name,
                program,
                status,
                output,
            }),
        },
    }
}

/// The command for a hook, not yet started.
fn command(hook: &HookSpec, run: &HookRun<'_>) -> io::Result<Command> {
    let Some((program, args)) = hook.command.split_first() else {
        let message = "the command is empty";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    };
    // Spawning in a missing folder fails with "No such file or directory", which
    // would blame the program.
    if !run.cwd.is_dir() {
        let message = format!("{} is not a folder", run.cwd.display());
        return Err(io::Error::new(io::ErrorKind::NotFound, message));
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(run.cwd)
        .env_clear()
        .envs(inherited(std::env::vars_os()))
        .envs(run.env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    Ok(cmd)
}

/// The variables a hook inherits from `vars` (this process's): all but the withheld.
fn inherited(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> impl Iterator<Item = (OsString, OsString)> {
    vars.into_iter().filter(|(key, _)| !withheld(key))
}

fn withheld(key: &OsStr) -> bool {
    let key = key.as_encoded_bytes();
    WITHHELD.iter().any(|w| key == w.as_bytes())
        || WITHHELD_PREFIXES
            .iter()
            .any(|p| key.starts_with(p.as_bytes()))
}

/// How a watched hook ended, with its redacted, bounded output.
enum Ended {
    Exited {
        status: io::Result<ExitStatus>,
        output: String,
    },
    TimedOut {
        output: String,
    },
}

/// One output stream of the hook and its redactor; `None` once it ended or was
/// abandoned.
struct Stream<R> {
    reader: Option<R>,
    redactor: Redactor,
    buf: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> Stream<R> {
    fn new(reader: Option<R>, redact: &[&str]) -> Self {
        Self {
            reader,
            redactor: Redactor::new(redact),
            buf: vec![0; 8 * 1024].into_boxed_slice(),
        }
    }

    /// Reads the next piece; never completes once the stream ended.
    async fn read(&mut self) -> io::Result<usize> {
        match &mut self.reader {
            Some(reader) => reader.read(&mut self.buf).await,
            None => std::future::pending().await,
        }
    }

    /// Passes what a read returned on to `tail`, redacted; at the end of the stream (or
    /// a read error) also the bytes the redactor held back.
    fn take(&mut self, read: io::Result<usize>, tail: &mut Tail) {
        match read {
            Ok(n) if n > 0 => tail.push(&self.redactor.push(&self.buf[..n])),
            _ => {
                tail.push(&self.redactor.finish());
                self.reader = None;
            }
        }
    }
}

/// Reads the hook's output until it has exited and its output ended, killing it at
/// `deadline`. After the exit, output is read for [`DRAIN`] at most; what the
/// redactors still hold back then is dropped, as it may be the start of a secret.
async fn watch(child: &mut Child, deadline: Instant, redact: &[&str]) -> Ended {
    let mut out = Stream::new(child.stdout.take(), redact);
    let mut err = Stream::new(child.stderr.take(), redact);
    let mut tail = Tail::default();
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut timed_out = false;
    let mut drain_until = deadline;
    while status.is_none() || out.reader.is_some() || err.reader.is_some() {
        tokio::select! {
            read = out.read() => out.take(read, &mut tail),
            read = err.read() => err.take(read, &mut tail),
            exit = child.wait(), if status.is_none() => {
                status = Some(exit);
                drain_until = Instant::now() + DRAIN;
            }
            () = sleep_until(deadline), if status.is_none() => {
                timed_out = true;
                status = Some(kill(child).await);
                drain_until = Instant::now() + DRAIN;
            }
            () = sleep_until(drain_until), if status.is_some() => break,
        }
    }
    let output = tail.finish();
    match status {
        Some(status) if !timed_out => Ended::Exited { status, output },
        _ => Ended::TimedOut { output },
    }
}

/// Kills the hook with SIGKILL and reaps it, waiting [`REAP`] at most (after that,
/// `kill_on_drop` and the runtime reap it).
///
/// Only the hook process itself is signalled. What it started (`sh -c 'a & b'`) shares
/// its process group and should go with it: `libc::killpg(pgid, libc::SIGKILL)` with
/// the pgid being the child's pid (it leads its own group), before `start_kill`. That
/// needs the `libc` crate as a dependency (it is already in the tree, through tokio).
async fn kill(child: &mut Child) -> io::Result<ExitStatus> {
    // The hook leads its own process group: kill everything it started too.
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|id| libc::pid_t::try_from(id).ok()) {
        // SAFETY: killpg only sends a signal; a group that is gone yields ESRCH.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    // An error here means it already exited; `wait` returns how.
    let _ = child.start_kill();
    match tokio::time::timeout(REAP, child.wait()).await {
        Ok(status) => status,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "still running 5 s after SIGKILL",
        )),
    }
}

#[cfg(test)]
mod tests;
