//! `stratalloc bench`: run the benchmark suites of `stratalloc-bench`
//! (`region-bench`, then `engine-bench`), found as `locate` says,
//! with a progress bar, then print the tables they wrote.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Run the suites in `mode` (`None` = full, `"quick"`, `"smoke"`), writing
/// CSV/JSON/Markdown into `out`.
pub fn bench(mode: Option<&str>, out: &Path) -> Result<(), String> {
    let region = crate::locate::bench_bin("region-bench")?;
    let engine = crate::locate::bench_bin("engine-bench")?;
    let workload = crate::locate::bench_bin("engine-workload")?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mode_flag: Vec<String> = mode.map(|m| format!("--{m}")).into_iter().collect();
    let mut suites: Vec<(&str, Command)> = Vec::new();
    let mut c = Command::new(&region);
    c.args(&mode_flag).arg("--out").arg(out);
    suites.push(("region heaps", c));
    let mut c = Command::new(&engine);
    c.args(&mode_flag).arg("--out").arg(out);
    c.arg("--workload-exe").arg(&workload);
    if let Ok(lib) = crate::locate::lib() {
        c.arg("--stratalloc-lib").arg(lib);
    }
    suites.push(("engine vs glibc/mimalloc/jemalloc", c));

    // One bar per suite, advanced by its "[K/N] what" lines (K-1
    // measurements done when the K-th starts), with an ETA.
    let style = ProgressStyle::with_template(
        "{spinner} {prefix:34} [{elapsed_precise}] {bar:25} {pos}/{len} ETA {eta} {msg}",
    )
    .map_err(|e| e.to_string())?;
    for (name, mut cmd) in suites {
        let pb = ProgressBar::new(0).with_style(style.clone());
        pb.set_prefix(name);
        pb.enable_steady_tick(Duration::from_millis(120));
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                match step(&line) {
                    Some((k, n, what)) => {
                        pb.set_length(n);
                        pb.set_position(k.saturating_sub(1));
                        pb.set_message(what.chars().take(40).collect::<String>());
                    }
                    None => pb.set_message(line.chars().take(40).collect::<String>()),
                }
            }
        }
        let st = child.wait().map_err(|e| e.to_string())?;
        if !st.success() {
            pb.abandon_with_message(format!("failed ({st})"));
            return Err(format!("{name} failed ({st})"));
        }
        pb.set_position(pb.length().unwrap_or(0));
        pb.finish_with_message("done");
    }
    for f in ["region.md", "engine.md"] {
        let p = out.join(f);
        match std::fs::read_to_string(&p) {
            Ok(t) => println!("\n{t}"),
            Err(e) => println!("\n({}: {e})", p.display()),
        }
    }
    println!("CSV/JSON in {}", out.display());
    Ok(())
}

/// A progress line of the suites, `TOOL: [K/N] what`: `(K, N, what)`.
fn step(line: &str) -> Option<(u64, u64, &str)> {
    let rest = line.split_once(": [")?.1;
    let (k, rest) = rest.split_once('/')?;
    let (n, what) = rest.split_once("] ")?;
    Some((k.parse().ok()?, n.parse().ok()?, what))
}

#[cfg(test)]
mod tests {
    use super::step;

    #[test]
    fn progress_lines_parse() {
        assert_eq!(
            step("engine-bench: [3/40] rep 1/3 churn under glibc"),
            Some((3, 40, "rep 1/3 churn under glibc"))
        );
        assert_eq!(step("region-bench: wrote target/bench"), None);
        assert_eq!(step("region-bench: talc: failed: x"), None);
    }
}
