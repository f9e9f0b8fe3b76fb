//! `stratalloc run`: start a program with `libstratalloc.so` preloaded and
//! the wrappers asked for, then show their reports.
//!
//! The library is found as `locate` says (`STRATALLOC_LIB`, beside this
//! executable, `../lib`, `../lib/stratalloc`). Reports go to files
//! in a temporary directory (`%p` in the path keeps the processes a program
//! starts apart) and are printed, to standard error, once the program has
//! exited, so they do not mix with its output.
//!
//! Only the program started reports (across `exec`: it keeps its pid),
//! unless `--follow-children` is given: the library reads
//! `STRATALLOC_ONLY_CHILD_OF` (this command's pid) and turns its wrappers
//! off in any process whose parent is not this command. With no report
//! asked for, the program's summary line is printed (`STRATALLOC_SUMMARY`),
//! followed by its exit status and wall time, as `/usr/bin/time` does.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What `run` was asked for.
pub struct RunArgs {
    /// `STRATALLOC_STRATEGY`.
    pub strategy: Option<String>,
    /// Statistics report.
    pub stats: bool,
    /// Leak check.
    pub leaks: bool,
    /// List the still-reachable blocks too.
    pub show_reachable: bool,
    /// Check mode.
    pub check: bool,
    /// Trace file.
    pub trace: Option<PathBuf>,
    /// Profile file (`.html`: the page and the JSON beside it).
    pub profile: Option<PathBuf>,
    /// Profile: one stack captured in this many allocations.
    pub sample: Option<u32>,
    /// Every descendant reports, not only the program started.
    pub follow_children: bool,
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
    if a.show_reachable {
        cmd.env("STRATALLOC_LEAKS_REACHABLE", "1");
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
    let profile = match &a.profile {
        Some(p) => Some(profile_env(&mut cmd, p, a.sample, a.follow_children)?),
        None => None,
    };
    let summary = !(a.stats || a.leaks || a.check || a.trace.is_some() || a.profile.is_some());
    if summary {
        cmd.env("STRATALLOC_SUMMARY", dir.join("summary.%p.txt"));
    }
    if !a.follow_children {
        cmd.env("STRATALLOC_ONLY_CHILD_OF", std::process::id().to_string());
    }
    let started = std::time::Instant::now();
    let started_at = std::time::SystemTime::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {prog}: {e}"))?;
    let elapsed = started.elapsed();
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
    if let Some(p) = &profile {
        report_profiles(p, started_at);
    }
    if summary {
        eprintln!(
            "stratalloc: {prog} {status} after {:.2} s",
            elapsed.as_secs_f64()
        );
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

/// Where the profile of each process goes: `path` itself, or with
/// `--follow-children` `STEM.%p.EXT` (one per process).
pub struct ProfilePaths {
    dir: PathBuf,
    stem: String,
    ext: String,
    per_process: bool,
}

/// Set `STRATALLOC_PROFILE` (and the sampling) for `cmd`.
fn profile_env(
    cmd: &mut Command,
    path: &Path,
    sample: Option<u32>,
    follow: bool,
) -> Result<ProfilePaths, String> {
    let path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.clone(), String::new()),
    };
    let target = if follow {
        dir.join(format!("{stem}.%p{ext}"))
    } else {
        let _ = std::fs::remove_file(&path);
        path.clone()
    };
    cmd.env("STRATALLOC_PROFILE", target);
    if let Some(n) = sample {
        cmd.env("STRATALLOC_PROFILE_SAMPLE", n.max(1).to_string());
    }
    Ok(ProfilePaths {
        dir,
        stem,
        ext,
        per_process: follow,
    })
}

/// Say which profiles were written (files of the right name modified
/// since `since`).
fn report_profiles(p: &ProfilePaths, since: std::time::SystemTime) {
    let whole = format!("{}{}", p.stem, p.ext);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&p.dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    let fresh = std::fs::metadata(f)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t >= since);
                    let n = f.file_name().unwrap_or_default().to_string_lossy();
                    if !fresh {
                        return false;
                    }
                    if p.per_process {
                        n.strip_prefix(&format!("{}.", p.stem))
                            .and_then(|r| r.strip_suffix(&p.ext))
                            .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
                    } else {
                        n == whole
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if found.is_empty() {
        eprintln!(
            "stratalloc: no profile was written to {} (did the program allocate?)",
            p.dir.join(whole).display()
        );
    }
    for f in found {
        let json = if p.ext == ".html" {
            format!(" (data: {})", f.with_extension("json").display())
        } else {
            String::new()
        };
        eprintln!("stratalloc: profile written to {}{json}", f.display());
        let data = std::fs::read_to_string(f.with_extension("json")).unwrap_or_default();
        if let Some(n) = sampling_hint(&data) {
            eprintln!(
                "stratalloc: {n} allocations had their stacks captured; `--sample 64` makes a run \
                 like this one many times faster (call-site figures become estimates)"
            );
        }
    }
}

/// The number of allocations of a profile (JSON) that captured every
/// stack, if it is large enough for sampling to pay.
fn sampling_hint(json: &str) -> Option<u64> {
    if !json.contains("\"sample_every\":1,") {
        return None;
    }
    // The totals come before the call sites.
    let at = json.find("\"totals\":{\"allocations\":")? + "\"totals\":{\"allocations\":".len();
    let n: u64 = json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    (n >= 1_000_000).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::sampling_hint;

    #[test]
    fn the_hint_is_given_for_big_exact_profiles_only() {
        let exact = |n: u64| {
            format!("{{\"sample_every\":1,\"totals\":{{\"allocations\":{n},\"frees\":0}}}}")
        };
        assert_eq!(sampling_hint(&exact(2_000_000)), Some(2_000_000));
        assert_eq!(sampling_hint(&exact(5000)), None);
        let sampled = exact(2_000_000).replace("\"sample_every\":1,", "\"sample_every\":64,");
        assert_eq!(sampling_hint(&sampled), None);
        assert_eq!(sampling_hint(""), None);
    }
}
