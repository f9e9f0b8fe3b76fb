//! Running a child process with a time limit and capturing its output.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a child run ended.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status; `None` if it was killed for running past the limit.
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Wall-clock time from spawn to exit.
    pub wall: Duration,
}

impl Outcome {
    /// `true` if it exited with status 0.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// A one-line description of a failure (status and the end of stderr).
    pub fn failure(&self) -> String {
        let tail: String = {
            let lines: Vec<&str> = self.stderr.lines().rev().take(2).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
        };
        let st = match self.status {
            None => "timed out".to_string(),
            Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "failed".to_string(),
            },
        };
        if tail.is_empty() {
            st
        } else {
            format!("{st}: {tail}")
        }
    }
}

/// Run `cmd` to completion or until `limit` passes (then kill it).
pub fn run(mut cmd: Command, limit: Duration) -> std::io::Result<Outcome> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    Ok(Outcome {
        status,
        stdout: to.join().unwrap_or_default(),
        stderr: te.join().unwrap_or_default(),
        wall,
    })
}
