//! Running one job in a child process of its own, so that whatever the job does to its process
//! — a panic, an abort on a failed allocation, a crash in a C codec, memory exhaustion — ends
//! that child, not the server.
//!
//! `catch_unwind` is no defence here: Rust aborts (it does not unwind) when an allocation fails
//! ("memory allocation of N bytes failed"), a segfault in OpenJPEG or CharLS is a signal, and
//! the kernel's OOM killer picks the largest process, which would be the server. A child per
//! risky job, with its address space limited (`RLIMIT_AS`, set between fork and exec), turns
//! each of these into a failed attempt with a reason.
//!
//! The parent keeps the claim: it renews the lease, waits for the child (killing it after the
//! time limit), and records the outcome. The child (the same binary, a hidden subcommand) only
//! runs the job and says how it went by its exit status:
//!
//! - `EXIT_SUCCEEDED` (0): done;
//! - `EXIT_JOB_FAILED` (3): the job failed the ordinary way; its error is on the child's stdout;
//! - `EXIT_NOT_OURS` (4): the job is no longer this worker's (nothing to record);
//! - anything else, or a signal: the child crashed; the reason names the signal or status and
//!   quotes the end of its stderr.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Exit status of a child whose job succeeded.
pub const EXIT_SUCCEEDED: i32 = 0;
/// Exit status of a child whose job failed the ordinary way (message on stdout).
pub const EXIT_JOB_FAILED: i32 = 3;
/// Exit status of a child that found the job no longer held by the worker that started it.
pub const EXIT_NOT_OURS: i32 = 4;

/// Variable naming the server's process id in a child: the child stops when its parent is no
/// longer that process (the server died; its job will be reaped and run again).
pub const PARENT_PID_ENV: &str = "RADPORT_JOB_PARENT_PID";

/// Most of a child's stdout kept (the job's error message).
const STDOUT_KEPT: usize = 8 * 1024;
/// Most of a child's stderr kept (its last lines go into a crash's reason).
const STDERR_KEPT: usize = 8 * 1024;
/// Characters of stderr quoted in a crash's reason.
const STDERR_QUOTED: usize = 400;

/// How risky jobs run in children: which kinds, which command, and the limits.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// Job kinds run in a child.
    pub kinds: Vec<radport_catalog::JobKind>,
    /// Program of the child: the server's own executable.
    pub program: PathBuf,
    /// Arguments before the job id and the worker name.
    pub args: Vec<OsString>,
    /// Environment set for the child (beyond the inherited one).
    pub env: Vec<(OsString, OsString)>,
    /// Address-space limit of the child in bytes (`RLIMIT_AS`); 0: none beyond the server's.
    pub memory_limit: u64,
}

/// How a child ended, as the worker records it.
#[derive(Debug, PartialEq, Eq)]
pub enum ChildOutcome {
    /// The job succeeded.
    Succeeded,
    /// The job failed (or the child crashed); the reason.
    Failed(String),
    /// The job is no longer ours; record nothing.
    NotOurs,
}

impl Isolation {
    /// Whether jobs of `kind` run in a child.
    pub fn covers(&self, kind: radport_catalog::JobKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// Runs job `job_id` claimed by `worker` in a child and waits for it (at most
    /// `time_limit`; the child is killed then, and when this future is dropped).
    pub async fn run(&self, job_id: &str, worker: &str, time_limit: Duration) -> ChildOutcome {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .arg(job_id)
            .arg(worker)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // glibc gives each thread that allocates an arena of 64 MiB of address space;
            // two keep the virtual size near the resident one under RLIMIT_AS.
            .env("MALLOC_ARENA_MAX", "2")
            .env(PARENT_PID_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let limit = self.memory_limit;
        // SAFETY: between fork and exec only async-signal-safe calls (getrlimit, setrlimit),
        // no allocation.
        unsafe {
            command.pre_exec(move || limit_child(limit));
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                return ChildOutcome::Failed(format!(
                    "cannot start the job's process {}: {e}",
                    self.program.display()
                ))
            }
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let pid = child.id().unwrap_or(0);
        tracing::debug!(job = job_id, pid, "job process started");
        let out = tokio::spawn(read_head(stdout, STDOUT_KEPT));
        let err = tokio::spawn(read_tail(stderr, STDERR_KEPT));
        let status = match tokio::time::timeout(time_limit, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                let _ = child.start_kill();
                return ChildOutcome::Failed(format!("waiting for the job's process failed: {e}"));
            }
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return ChildOutcome::Failed(format!(
                    "the job ran longer than its time limit of {} s and was stopped",
                    time_limit.as_secs()
                ));
            }
        };
        let stdout = out.await.unwrap_or_default();
        let stderr = err.await.unwrap_or_default();
        // The child's own log lines go to the server's log (at info, or at warning for its
        // warnings, errors and whatever it printed as it died).
        for line in String::from_utf8_lossy(&stderr).lines() {
            let line = line.trim_end();
            if line.trim().is_empty() || radport_metrics::global().merge_child_report(line) {
                continue;
            }
            let quiet = is_log_line(line)
                && [" INFO ", " DEBUG ", " TRACE "]
                    .iter()
                    .any(|level| line.contains(level));
            if quiet {
                tracing::info!(job = job_id, pid, "job process: {line}");
            } else {
                tracing::warn!(job = job_id, pid, "job process: {line}");
            }
        }
        outcome(status, &stdout, &stderr, self.memory_limit)
    }
}

/// In the child, before exec: the address-space limit (never above the hard limit the server
/// runs under). (Not `PR_SET_PDEATHSIG`: it fires when the *thread* that forked exits, and a
/// runtime thread may; the child watches for its parent instead, see [`PARENT_PID_ENV`].)
fn limit_child(limit: u64) -> std::io::Result<()> {
    if limit > 0 {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain system calls on a stack value.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_AS, &mut current) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let wanted = limit as libc::rlim_t;
            let cap = if current.rlim_max == libc::RLIM_INFINITY {
                wanted
            } else {
                wanted.min(current.rlim_max)
            };
            let new = libc::rlimit {
                rlim_cur: cap,
                rlim_max: cap,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &new) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

async fn read_head(pipe: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = keep.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * keep {
            kept.drain(..kept.len() - keep);
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    kept
}

/// The outcome of a child that ended with `status`.
pub fn outcome(
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
    memory_limit: u64,
) -> ChildOutcome {
    match status.code() {
        Some(EXIT_SUCCEEDED) => return ChildOutcome::Succeeded,
        Some(EXIT_NOT_OURS) => return ChildOutcome::NotOurs,
        Some(EXIT_JOB_FAILED) => {
            let message = String::from_utf8_lossy(stdout).trim().to_string();
            return ChildOutcome::Failed(if message.is_empty() {
                "the job failed without a message".into()
            } else {
                message
            });
        }
        _ => {}
    }
    let mut reason = match (status.code(), signal_of(status)) {
        (_, Some(signal)) => {
            let mut r = format!("killed by signal {signal} ({})", signal_name(signal));
            if let Some(why) = signal_cause(signal, memory_limit) {
                r.push_str(": ");
                r.push_str(&why);
            }
            r
        }
        (Some(code), None) => format!("the job's process exited with status {code}"),
        (None, None) => format!("the job's process ended: {status}"),
    };
    let tail = stderr_tail(stderr);
    if !tail.is_empty() {
        reason.push_str("; stderr: ");
        reason.push_str(&tail);
    }
    ChildOutcome::Failed(reason)
}

#[cfg(unix)]
fn signal_of(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn signal_of(_status: ExitStatus) -> Option<i32> {
    None
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGXCPU => "SIGXCPU",
        _ => "signal",
    }
}

/// The likely cause of a child's death by `signal`, for the job's error.
fn signal_cause(signal: i32, memory_limit: u64) -> Option<String> {
    let limit = if memory_limit > 0 {
        format!("the {} job memory limit", human_bytes(memory_limit))
    } else {
        "the memory available".to_string()
    };
    match signal {
        // Rust aborts when an allocation fails.
        libc::SIGABRT => Some(format!("probably out of memory under {limit}")),
        libc::SIGKILL => Some("by the kernel's OOM killer or an operator".into()),
        libc::SIGSEGV | libc::SIGBUS => Some(format!(
            "a crash in the decoder, or out of memory under {limit}"
        )),
        _ => None,
    }
}

/// `4 GiB`, `96 MiB`, `1536 KiB`.
pub fn human_bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if n >= GIB && n.is_multiple_of(GIB) {
        format!("{} GiB", n / GIB)
    } else if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{n} bytes")
    }
}

/// The last non-empty lines of a child's stderr that are not its log lines (what the runtime
/// printed as it died: "memory allocation of N bytes failed", a panic message), at most
/// [`STDERR_QUOTED`] characters, on one line; its log lines only if there is nothing else.
/// (The log names no patient at info level, see ARCHITECTURE.md; its lines are in the
/// server's log anyway.)
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<String> = text
        .lines()
        .map(|l| strip_ansi(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let last_words: Vec<&String> = lines
        .iter()
        .filter(|l| !is_log_line(l) && !is_backtrace_line(l))
        .collect();
    let chosen: Vec<&String> = if last_words.is_empty() {
        lines.iter().collect()
    } else {
        last_words
    };
    let mut picked: Vec<&str> = Vec::new();
    let mut len = 0;
    for line in chosen.into_iter().rev() {
        len += line.chars().count() + 3;
        picked.push(line);
        if len >= STDERR_QUOTED || picked.len() >= 3 {
            break;
        }
    }
    picked.reverse();
    let joined = picked.join(" | ");
    let count = joined.chars().count();
    if count > STDERR_QUOTED {
        let skip = count - STDERR_QUOTED;
        format!("…{}", joined.chars().skip(skip).collect::<String>())
    } else {
        joined
    }
}

/// A line of the child's log (`2026-01-02T03:04:05.678Z  INFO …`).
fn is_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
}

/// A line of a backtrace (`RUST_BACKTRACE` set): its heading, frames and their locations.
fn is_backtrace_line(line: &str) -> bool {
    line == "stack backtrace:"
        || line.starts_with("at ")
        || line.starts_with("note: ")
        || line
            .split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes terminal colour sequences (`ESC [ … letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn outcomes_name_the_cause() {
        let abort = ExitStatus::from_raw(libc::SIGABRT);
        let stderr = b"\x1b[2m2026-12-02T06:48:05.731420Z\x1b[0m  INFO started\nstack backtrace:\nmemory allocation of 412316860416 bytes failed\n   0: std::backtrace\n             at /rustc/library/std/src/backtrace.rs:12:5\n";
        let ChildOutcome::Failed(reason) = outcome(abort, b"", stderr, 4 << 30) else {
            panic!("a failure");
        };
        assert!(
            reason.starts_with(
                "killed by signal 6 (SIGABRT): probably out of memory under the 4 GiB job memory limit"
            ),
            "{reason}"
        );
        assert!(
            reason.ends_with(
                "4 GiB job memory limit; stderr: memory allocation of 412316860416 bytes failed"
            ),
            "log and backtrace lines left out: {reason}"
        );
        let only_log = b"2026-12-02T06:48:05.731420Z  INFO radport_workflows: started\n";
        let ChildOutcome::Failed(reason) = outcome(abort, b"", only_log, 0) else {
            panic!("a failure");
        };
        assert!(
            reason.ends_with(
                "memory available; stderr: 2026-12-02T06:48:05.731420Z  INFO radport_workflows: started"
            ),
            "log lines quoted only when there is nothing else: {reason}"
        );
        assert_eq!(
            outcome(
                ExitStatus::from_raw(EXIT_JOB_FAILED << 8),
                b"no such upload\n",
                b"",
                0
            ),
            ChildOutcome::Failed("no such upload".into())
        );
        assert_eq!(
            outcome(ExitStatus::from_raw(0), b"", b"", 0),
            ChildOutcome::Succeeded
        );
        assert_eq!(
            outcome(ExitStatus::from_raw(EXIT_NOT_OURS << 8), b"", b"", 0),
            ChildOutcome::NotOurs
        );
        let ChildOutcome::Failed(reason) = outcome(ExitStatus::from_raw(101 << 8), b"", b"", 0)
        else {
            panic!("a failure");
        };
        assert_eq!(reason, "the job's process exited with status 101");
        assert_eq!(human_bytes(96 << 20), "96 MiB");
    }

    #[test]
    fn long_stderr_is_cut_to_its_end() {
        let long = "x".repeat(5000) + "\nthe end\n";
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.ends_with("x | the end"), "{tail}");
        assert!(tail.chars().count() <= STDERR_QUOTED + 1);
    }

    /// A real child: killed when it outgrows its address space, and when it outlives its time.
    #[tokio::test]
    async fn limits_apply_to_the_child() {
        let isolation = Isolation {
            kinds: vec![radport_catalog::JobKind::Thumbnail],
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                // $0 = job id, $1 = worker
                "case $0 in big) exec python3 -c 'b = bytearray(1 << 30)';; \
                 slow) sleep 30;; fail) echo \"it failed: $1\"; exit 3;; esac"
                    .into(),
            ],
            env: Vec::new(),
            memory_limit: 256 << 20,
        };
        let limit = Duration::from_secs(1);
        match isolation.run("big", "w", limit).await {
            ChildOutcome::Failed(reason) => assert!(reason.contains("MemoryError"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let started = std::time::Instant::now();
        match isolation.run("slow", "w", limit).await {
            ChildOutcome::Failed(reason) => {
                assert!(reason.contains("time limit of 1 s"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            isolation.run("fail", "w1", limit).await,
            ChildOutcome::Failed("it failed: w1".into())
        );
    }
}
