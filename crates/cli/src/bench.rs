//! `stratalloc bench`: run the benchmark suites of `stratalloc-bench`
//! (`region-bench`, then `engine-bench`), found beside this executable,
//! with a progress bar, then print the tables they wrote.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let p = exe.parent().unwrap_or(Path::new(".")).join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found; build the suites with `cargo build --release -p stratalloc-bench --bins` \
             (or run scripts/bench.sh)",
            p.display()
        ))
    }
}

/// Run the suites in `mode` (`None` = full, `"quick"`, `"smoke"`), writing
/// CSV/JSON/Markdown into `out`.
pub fn bench(mode: Option<&str>, out: &Path) -> Result<(), String> {
    let region = sibling("region-bench")?;
    let engine = sibling("engine-bench")?;
    let workload = sibling("engine-workload")?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mode_flag: Vec<String> = mode.map(|m| format!("--{m}")).into_iter().collect();
    let mut suites: Vec<(&str, Command)> = Vec::new();
    let mut c = Command::new(&region);
    c.args(&mode_flag).arg("--out").arg(out);
    suites.push(("region heaps", c));
    let mut c = Command::new(&engine);
    c.args(&mode_flag).arg("--out").arg(out);
    c.arg("--workload-exe").arg(&workload);
    if let Ok(lib) = crate::run::find_lib() {
        c.arg("--stratalloc-lib").arg(lib);
    }
    suites.push(("engine vs glibc/mimalloc/jemalloc", c));

    let pb = ProgressBar::new(suites.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .map_err(|e| e.to_string())?,
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    for (name, mut cmd) in suites {
        pb.set_message(name.to_string());
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let line: String = line.chars().take(70).collect();
                pb.set_message(format!("{name}: {line}"));
            }
        }
        let st = child.wait().map_err(|e| e.to_string())?;
        if !st.success() {
            pb.abandon_with_message(format!("{name} failed ({st})"));
            return Err(format!("{name} failed ({st})"));
        }
        pb.inc(1);
    }
    pb.finish_with_message("done");
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
