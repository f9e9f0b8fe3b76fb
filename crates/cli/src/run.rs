//! `stratalloc run`: start a program with `libstratalloc.so` preloaded and
//! the wrappers asked for, then show their reports.
//!
//! The library is found as `locate` says (`STRATALLOC_LIB`, beside this
//! executable, `../lib`, `../lib/stratalloc`). Reports go to files
//! in a temporary directory (`%p` in the path keeps the processes a program
//! starts apart) and are printed, to standard error, once the program has
//! exited, so they do not mix with its output.

use std::path::PathBuf;
use std::process::Command;

/// What `run` was asked for.
pub struct RunArgs {
    /// `STRATALLOC_STRATEGY`.
    pub strategy: Option<String>,
    /// Statistics report.
    pub stats: bool,
    /// Leak report.
    pub leaks: bool,
    /// Check mode.
    pub check: bool,
    /// Trace file.
    pub trace: Option<PathBuf>,
    /// The program and its arguments.
    pub command: Vec<String>,
}

/// Run the program; returns the exit code to leave with.
pub fn run(a: RunArgs) -> Result<i32, String> {
    let lib = crate::locate::lib()?;
    let dir = std::env::temp_dir().join(format!("stratalloc-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (prog, args) = a.command.split_first().ok_or("no program given")?;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", lib.display()),
        _ => lib.display().to_string(),
    };
    cmd.env("LD_PRELOAD", preload);
    if let Some(s) = &a.strategy {
        cmd.env("STRATALLOC_STRATEGY", s);
    }
    if a.stats {
        cmd.env("STRATALLOC_STATS", dir.join("stats.%p.txt"));
    }
    if a.leaks {
        cmd.env("STRATALLOC_LEAKS", dir.join("leaks.%p.txt"));
    }
    if a.check {
        cmd.env("STRATALLOC_CHECK", "1");
    }
    let trace = match &a.trace {
        Some(t) => {
            let t = std::path::absolute(t).map_err(|e| format!("{}: {e}", t.display()))?;
            // The wrapper appends (a program's children share the file).
            let _ = std::fs::remove_file(&t);
            cmd.env("STRATALLOC_TRACE", &t);
            Some(t)
        }
        None => None,
    };
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {prog}: {e}"))?;
    let mut reports: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    reports.sort();
    for r in &reports {
        if let Ok(text) = std::fs::read_to_string(r) {
            eprint!("{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(t) = trace {
        match std::fs::metadata(&t) {
            Ok(m) => eprintln!(
                "stratalloc: trace written to {} ({} bytes); try `stratalloc replay {}`",
                t.display(),
                m.len(),
                t.display()
            ),
            Err(_) => eprintln!("stratalloc: no trace was written to {}", t.display()),
        }
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => {
            eprintln!("stratalloc: {prog} was killed by signal {sig}");
            128 + sig
        }
        _ => 1,
    })
}
