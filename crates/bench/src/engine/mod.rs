//! Process-level benchmarks (issue 3): the engine against glibc, mimalloc
//! and jemalloc.
//!
//! ```text
//!   engine-bench ──for rep, case, allocator──> LD_PRELOAD=<lib> engine-workload <case>
//!        │                                        │ checks dladdr(malloc) is <lib>
//!        │                                        │ runs the workload, prints secs, ru_maxrss
//!        │ <──────────── result lines ────────────┘
//!        └─> medians; time and peak-RSS ratios against mimalloc (+ geometric mean)
//! ```
//!
//! Repetitions are interleaved (rep 1 of every allocator, then rep 2, …) so
//! a burst of load from elsewhere on the machine lands on all of them.
//! Each child checks which shared object its `malloc` symbol resolves to and
//! refuses to run if the preload did not take, so a row can never silently
//! measure glibc under another allocator's name.
//!
//! A second table runs a smaller `churn` under `libstratalloc.so` with
//! `STRATALLOC_STRATEGY=<s>` for every strategy, so the strategies can be
//! compared as whole-process allocators.

pub mod workloads;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::out::{ratio, write_csv, Json, Table};
use crate::stats::{geomean, median};

/// The environment variable a workload child reads to know which shared
/// object must serve its `malloc`.
pub const EXPECT_ENV: &str = "BENCH_EXPECT_MALLOC_FROM";

/// An allocator to preload.
#[derive(Debug, Clone)]
pub struct Allocator {
    /// Column title.
    pub name: String,
    /// The shared object to preload; `None` for the C library's own.
    pub lib: Option<PathBuf>,
}

impl Allocator {
    /// The file name `malloc` must resolve to.
    fn expect(&self) -> String {
        match &self.lib {
            None => "libc.so".to_string(),
            Some(p) => p
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// One row of the main table.
#[derive(Debug, Clone)]
pub struct Case {
    /// Row title.
    pub label: String,
    /// Workload name (see [`workloads::NAMES`]).
    pub workload: &'static str,
    /// Threads for the workloads that take a count.
    pub threads: usize,
}

/// The rows: every workload, larson and the false-sharing tests at 2
/// threads, scaling at 1, 2, 4.
pub fn cases() -> Vec<Case> {
    let c = |label: &str, workload, threads| Case {
        label: label.to_string(),
        workload,
        threads,
    };
    vec![
        c("churn (1 thread)", "churn", 1),
        c("producer/consumer (2 threads)", "prodcons", 2),
        c("larson exchange (2 threads)", "larson", 2),
        c("realloc growth (1 thread)", "realloc", 1),
        c("fragmentation (1 thread)", "frag", 1),
        c("threads x1", "threads", 1),
        c("threads x2", "threads", 2),
        c("threads x4", "threads", 4),
        c("thread churn (10 at a time)", "thread-churn", 10),
        c("huge blocks 5-25 MiB (1 thread)", "huge", 1),
        c("passive false sharing (2 threads)", "false-passive", 2),
        c("active false sharing (2 threads)", "false-active", 2),
        c("wide churn, 20 000 slots (1 thread)", "churn-wide", 1),
        c("realloc growth to 1 MiB (1 thread)", "realloc-wide", 1),
    ]
}

/// How much to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Work multiplier of the main table's workloads.
    pub scale: f64,
    /// Work multiplier of the strategy table's `churn`.
    pub strategy_scale: f64,
    /// Repetitions (median taken).
    pub reps: usize,
    /// A child running longer than this is killed and its cell marked.
    pub timeout: Duration,
    /// The same for the strategy table (some strategies are O(n) per call).
    pub strategy_timeout: Duration,
    /// Workload names to run (empty: all); with a filter the strategy
    /// table is skipped.
    pub only: Vec<String>,
}

impl Config {
    /// The full run.
    pub fn full() -> Config {
        Config {
            scale: 1.0,
            strategy_scale: 0.1,
            reps: 9,
            timeout: Duration::from_secs(120),
            strategy_timeout: Duration::from_secs(30),
            only: Vec::new(),
        }
    }
    /// `--quick`.
    pub fn quick() -> Config {
        Config {
            scale: 0.25,
            strategy_scale: 0.03,
            reps: 3,
            timeout: Duration::from_secs(60),
            strategy_timeout: Duration::from_secs(15),
            only: Vec::new(),
        }
    }
    /// `--smoke`: proves the harness works.
    pub fn smoke() -> Config {
        Config {
            scale: 0.002,
            strategy_scale: 0.002,
            reps: 1,
            timeout: Duration::from_secs(20),
            strategy_timeout: Duration::from_secs(20),
            only: Vec::new(),
        }
    }
}

/// Every run of one (row, allocator) cell.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// Seconds per successful run.
    pub secs: Vec<f64>,
    /// Peak RSS (KiB) per successful run.
    pub rss_kb: Vec<f64>,
    /// The workload's checksum in each run.
    pub checksums: Vec<u64>,
    /// The first failure, if any run failed.
    pub error: Option<String>,
}

impl Cell {
    /// Add a run's figures.
    pub fn record(&mut self, run: Run) {
        self.secs.push(run.secs);
        self.rss_kb.push(run.rss_kb);
        self.checksums.push(run.checksum);
    }

    /// Mark the cell failed if any run's checksum differs from `want`.
    fn verify(&mut self, want: Option<u64>, reference: &str) {
        if let (None, Some(w)) = (&self.error, want) {
            if let Some(bad) = self.checksums.iter().find(|c| **c != w) {
                self.error = Some(format!(
                    "checksum {bad} differs from {reference}'s {w}: block contents were not kept"
                ));
            }
        }
    }

    /// Median seconds.
    pub fn time(&self) -> f64 {
        median(&self.secs)
    }
    /// Median peak RSS in KiB.
    pub fn rss(&self) -> f64 {
        median(&self.rss_kb)
    }
}

/// What one workload child reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// Seconds in the workload.
    pub secs: f64,
    /// Peak RSS, KiB.
    pub rss_kb: f64,
    /// The workload's checksum of block contents.
    pub checksum: u64,
}

/// Run one workload child.
pub fn run_child(
    workload_exe: &Path,
    alloc: &Allocator,
    workload: &str,
    threads: usize,
    scale: f64,
    extra_env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Run, String> {
    let mut cmd = Command::new(workload_exe);
    cmd.arg(workload)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--scale")
        .arg(scale.to_string())
        .env_remove("LD_PRELOAD")
        .env(EXPECT_ENV, alloc.expect());
    // Only the options a row asks for: none leak in from the caller's shell.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STRATALLOC_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    if let Some(lib) = &alloc.lib {
        cmd.env("LD_PRELOAD", lib);
    }
    let o = crate::proc::run(cmd, timeout).map_err(|e| format!("spawn: {e}"))?;
    if o.status.is_none() {
        return Err(format!("did not finish within {} s", timeout.as_secs()));
    }
    if !o.ok() {
        return Err(o.failure());
    }
    let mut secs = None;
    let mut rss = None;
    let mut checksum = None;
    for line in o.stdout.lines() {
        match line.split_once(' ') {
            Some(("secs", v)) => secs = v.trim().parse().ok(),
            Some(("maxrss_kb", v)) => rss = v.trim().parse().ok(),
            Some(("checksum", v)) => checksum = v.trim().parse().ok(),
            _ => {}
        }
    }
    match (secs, rss, checksum) {
        (Some(secs), Some(rss_kb), Some(checksum)) => Ok(Run {
            secs,
            rss_kb,
            checksum,
        }),
        _ => Err(format!("unreadable output: {:?}", o.stdout)),
    }
}

/// A whole engine run's results.
pub struct Report {
    /// The config measured with.
    pub cfg: Config,
    /// Column order.
    pub allocators: Vec<Allocator>,
    /// Allocators that were asked for but are missing, with the reason.
    pub missing: Vec<(String, String)>,
    /// Row order.
    pub cases: Vec<Case>,
    /// (row label, allocator name) → cell.
    pub cells: BTreeMap<(String, String), Cell>,
    /// Strategy rows: (label, cell) in order.
    pub strategies: Vec<(String, Cell)>,
    /// The reference allocator of the ratios.
    pub baseline: String,
}

/// A row of the strategy table: label, library, extra environment.
type StrategyRow = (String, Allocator, Vec<(&'static str, String)>);

/// Run the main table and the strategy table.
///
/// `stratalloc`, if given and present, is the `libstratalloc.so` the
/// strategy table runs under; `progress` is told of each run, as
/// `[K/N] what` (K counts skipped runs too; `stratalloc bench` draws its
/// progress bar from these).
pub fn run_all(
    cfg: &Config,
    workload_exe: &Path,
    candidates: Vec<Allocator>,
    strategies: &[&str],
    stratalloc: Option<&Allocator>,
    mut progress: impl FnMut(&str),
) -> Report {
    let mut allocators = Vec::new();
    let mut missing = Vec::new();
    for a in candidates {
        match &a.lib {
            Some(p) if !p.exists() => {
                missing.push((a.name.clone(), format!("{} not found", p.display())))
            }
            _ => allocators.push(a),
        }
    }
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| cfg.only.is_empty() || cfg.only.iter().any(|o| o == c.workload))
        .collect();
    // The strategy table: references first, then each strategy.
    let mut rows: Vec<StrategyRow> = Vec::new();
    for a in &allocators {
        if cfg.only.is_empty() && (a.name == "glibc" || a.name == "mimalloc") {
            rows.push((a.name.clone(), a.clone(), Vec::new()));
        }
    }
    let stratalloc = stratalloc.filter(|_| cfg.only.is_empty());
    if let Some(sa) = stratalloc.filter(|s| s.lib.as_ref().is_some_and(|p| p.exists())) {
        rows.push((
            "stratalloc engine".into(),
            sa.clone(),
            vec![("STRATALLOC_STRATEGY", "engine".to_string())],
        ));
        for s in strategies {
            rows.push((
                format!("stratalloc {s}"),
                sa.clone(),
                vec![("STRATALLOC_STRATEGY", s.to_string())],
            ));
        }
    }
    // Progress: one step per measurement (a skipped one counts as done).
    let total = cfg.reps * (cases.len() * allocators.len() + rows.len());
    let mut step = 0;
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    for rep in 0..cfg.reps {
        for case in &cases {
            for a in &allocators {
                let cell = cells
                    .entry((case.label.clone(), a.name.clone()))
                    .or_default();
                step += 1;
                if cell.error.is_some() {
                    continue;
                }
                progress(&format!(
                    "[{step}/{total}] rep {}/{} {} under {}",
                    rep + 1,
                    cfg.reps,
                    case.label,
                    a.name
                ));
                match run_child(
                    workload_exe,
                    a,
                    case.workload,
                    case.threads,
                    cfg.scale,
                    &[],
                    cfg.timeout,
                ) {
                    Ok(run) => cell.record(run),
                    Err(e) => cell.error = Some(e),
                }
            }
        }
    }
    // Every workload is deterministic: the same checksum under every
    // allocator, or an allocator lost or mixed up block contents.
    let reference = allocators
        .first()
        .map(|a| a.name.clone())
        .unwrap_or_default();
    for case in &cases {
        let want = cells
            .get(&(case.label.clone(), reference.clone()))
            .and_then(|c| c.checksums.first().copied());
        for a in &allocators {
            if let Some(c) = cells.get_mut(&(case.label.clone(), a.name.clone())) {
                c.verify(want, &reference);
            }
        }
    }
    let mut strat_cells: Vec<(String, Cell)> = rows
        .iter()
        .map(|r| (r.0.clone(), Cell::default()))
        .collect();
    for rep in 0..cfg.reps {
        for (i, (label, a, env)) in rows.iter().enumerate() {
            let cell = &mut strat_cells[i].1;
            step += 1;
            // A row that failed stops; a slow row stops repeating after
            // about the time limit's worth of runs.
            if cell.error.is_some()
                || cell.secs.iter().sum::<f64>() > cfg.strategy_timeout.as_secs_f64()
            {
                continue;
            }
            progress(&format!(
                "[{step}/{total}] rep {}/{} strategies: {label}",
                rep + 1,
                cfg.reps
            ));
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match run_child(
                workload_exe,
                a,
                "churn",
                1,
                cfg.strategy_scale,
                &env,
                cfg.strategy_timeout,
            ) {
                Ok(run) => cell.record(run),
                Err(e) => cell.error = Some(e),
            }
        }
    }
    let want = strat_cells
        .first()
        .and_then(|(_, c)| c.checksums.first().copied());
    let first = rows.first().map(|r| r.0.clone()).unwrap_or_default();
    for (_, c) in strat_cells.iter_mut() {
        c.verify(want, &first);
    }
    Report {
        cfg: cfg.clone(),
        allocators,
        missing,
        cases,
        cells,
        strategies: strat_cells,
        baseline: "mimalloc".into(),
    }
}

fn mib(kb: f64) -> String {
    if kb.is_finite() {
        format!("{:.1} MiB", kb / 1024.0)
    } else {
        "-".into()
    }
}

fn secs(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.3} s")
    } else {
        "-".into()
    }
}

impl Report {
    fn cell(&self, case: &str, alloc: &str) -> Option<&Cell> {
        self.cells.get(&(case.to_string(), alloc.to_string()))
    }

    /// Ratio of `alloc`'s median to the baseline's for one row (time or RSS).
    pub fn ratio(&self, case: &str, alloc: &str, rss: bool) -> f64 {
        let get = |a: &str| {
            self.cell(case, a)
                .filter(|c| c.error.is_none())
                .map_or(f64::NAN, |c| if rss { c.rss() } else { c.time() })
        };
        get(alloc) / get(&self.baseline)
    }

    /// The geometric mean over rows of `alloc`'s ratio (time or RSS).
    pub fn geomean(&self, alloc: &str, rss: bool) -> f64 {
        let v: Vec<f64> = self
            .cases
            .iter()
            .map(|c| self.ratio(&c.label, alloc, rss))
            .collect();
        geomean(&v)
    }

    fn table(&self, rss: bool) -> Table {
        let mut header = vec!["workload".to_string()];
        header.extend(self.allocators.iter().map(|a| a.name.clone()));
        let mut t = Table::new(&header);
        for case in &self.cases {
            let mut row = vec![case.label.clone()];
            for a in &self.allocators {
                let s = match self.cell(&case.label, &a.name) {
                    None => "-".to_string(),
                    Some(c) if c.error.is_some() => {
                        format!("failed ({})", c.error.as_deref().unwrap_or_default())
                    }
                    Some(c) => {
                        let v = if rss { mib(c.rss()) } else { secs(c.time()) };
                        format!("{v} ({})", ratio(self.ratio(&case.label, &a.name, rss)))
                    }
                };
                row.push(s);
            }
            t.push(row);
        }
        let mut row = vec![format!("geometric mean of ratios vs {}", self.baseline)];
        for a in &self.allocators {
            row.push(ratio(self.geomean(&a.name, rss)));
        }
        t.push(row);
        t
    }

    /// The Markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Median of {} runs per cell, work scale {}; each cell: median (ratio vs {}; \
             lower is better).\n",
            self.cfg.reps, self.cfg.scale, self.baseline
        );
        for (name, why) in &self.missing {
            let _ = writeln!(s, "- **{name}** not measured: {why}");
        }
        if !self.missing.is_empty() {
            s.push('\n');
        }
        s.push_str("**Time**\n\n");
        s.push_str(&self.table(false).to_markdown());
        s.push_str("\n**Peak RSS (ru_maxrss)**\n\n");
        s.push_str(&self.table(true).to_markdown());
        let geo = |rss: bool| {
            self.allocators
                .iter()
                .map(|a| format!("{} {}", a.name, ratio(self.geomean(&a.name, rss))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "\n**Headline** (geometric mean of the per-workload ratios vs {}): time: {}; \
             peak RSS: {}.",
            self.baseline,
            geo(false),
            geo(true)
        );
        if !self.cfg.only.is_empty() {
            let _ = writeln!(
                s,
                "\nOnly {} run (`--only`): no strategy table.",
                self.cfg.only.join(", ")
            );
            return s;
        }
        let _ = writeln!(
            s,
            "\n**Strategies as the process allocator** (`STRATALLOC_STRATEGY=<s>`, `churn` at \
             scale {}, median of {})\n",
            self.cfg.strategy_scale, self.cfg.reps
        );
        if self
            .strategies
            .iter()
            .all(|(l, _)| !l.starts_with("stratalloc"))
        {
            s.push_str("_libstratalloc.so was not found: strategy runs skipped._\n\n");
        }
        let base = self
            .strategies
            .iter()
            .find(|(l, _)| *l == self.baseline)
            .map(|(_, c)| (c.time(), c.rss()));
        let mut t = Table::new(&[
            "allocator",
            "time",
            "vs mimalloc",
            "peak RSS",
            "vs mimalloc",
        ]);
        for (label, c) in &self.strategies {
            if let Some(e) = &c.error {
                t.push(vec![label.clone(), format!("failed ({e})")]);
                continue;
            }
            let (bt, br) = base.unwrap_or((f64::NAN, f64::NAN));
            let runs = if c.secs.len() < self.cfg.reps {
                format!(" (median of {})", c.secs.len())
            } else {
                String::new()
            };
            t.push(vec![
                label.clone(),
                format!("{}{runs}", secs(c.time())),
                ratio(c.time() / bt),
                mib(c.rss()),
                ratio(c.rss() / br),
            ]);
        }
        s.push_str(&t.to_markdown());
        s
    }

    /// Write the CSV and JSON files into `dir`.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let f = |x: f64| {
            if x.is_finite() {
                format!("{x}")
            } else {
                String::new()
            }
        };
        let mut runs = Vec::new();
        let mut summary = Vec::new();
        let mut jcells = Vec::new();
        let mut add = |table: &str, row: &str, alloc: &str, c: &Cell, rt: f64, rr: f64| {
            for (i, (s, r)) in c.secs.iter().zip(&c.rss_kb).enumerate() {
                runs.push(vec![
                    table.into(),
                    row.into(),
                    alloc.into(),
                    i.to_string(),
                    f(*s),
                    f(*r),
                ]);
            }
            summary.push(vec![
                table.into(),
                row.into(),
                alloc.into(),
                f(c.time()),
                f(c.rss()),
                f(rt),
                f(rr),
                c.error.clone().unwrap_or_default(),
            ]);
            jcells.push(Json::obj(vec![
                ("table", Json::str(table)),
                ("workload", Json::str(row)),
                ("allocator", Json::str(alloc)),
                (
                    "seconds",
                    Json::Arr(c.secs.iter().map(|x| Json::Num(*x)).collect()),
                ),
                (
                    "maxrss_kb",
                    Json::Arr(c.rss_kb.iter().map(|x| Json::Num(*x)).collect()),
                ),
                ("seconds_median", Json::Num(c.time())),
                ("maxrss_kb_median", Json::Num(c.rss())),
                ("time_vs_baseline", Json::Num(rt)),
                ("rss_vs_baseline", Json::Num(rr)),
                ("error", c.error.as_ref().map_or(Json::Null, Json::str)),
            ]));
        };
        for case in &self.cases {
            for a in &self.allocators {
                if let Some(c) = self.cell(&case.label, &a.name) {
                    add(
                        "main",
                        &case.label,
                        &a.name,
                        c,
                        self.ratio(&case.label, &a.name, false),
                        self.ratio(&case.label, &a.name, true),
                    );
                }
            }
        }
        let base = self
            .strategies
            .iter()
            .find(|(l, _)| *l == self.baseline)
            .map_or((f64::NAN, f64::NAN), |(_, c)| (c.time(), c.rss()));
        for (label, c) in &self.strategies {
            add(
                "strategies",
                "churn",
                label,
                c,
                c.time() / base.0,
                c.rss() / base.1,
            );
        }
        write_csv(
            &dir.join("engine-runs.csv"),
            &[
                "table",
                "workload",
                "allocator",
                "rep",
                "seconds",
                "maxrss_kb",
            ],
            &runs,
        )?;
        write_csv(
            &dir.join("engine-summary.csv"),
            &[
                "table",
                "workload",
                "allocator",
                "seconds_median",
                "maxrss_kb_median",
                "time_vs_mimalloc",
                "rss_vs_mimalloc",
                "error",
            ],
            &summary,
        )?;
        let geo = Json::Arr(
            self.allocators
                .iter()
                .map(|a| {
                    Json::obj(vec![
                        ("allocator", Json::str(&a.name)),
                        (
                            "time_geomean_vs_baseline",
                            Json::Num(self.geomean(&a.name, false)),
                        ),
                        (
                            "rss_geomean_vs_baseline",
                            Json::Num(self.geomean(&a.name, true)),
                        ),
                    ])
                })
                .collect(),
        );
        let doc = Json::obj(vec![
            (
                "config",
                Json::obj(vec![
                    ("scale", Json::Num(self.cfg.scale)),
                    ("strategy_scale", Json::Num(self.cfg.strategy_scale)),
                    ("reps", Json::Num(self.cfg.reps as f64)),
                    ("baseline", Json::str(&self.baseline)),
                ]),
            ),
            (
                "missing",
                Json::Arr(
                    self.missing
                        .iter()
                        .map(|(n, w)| {
                            Json::obj(vec![("allocator", Json::str(n)), ("why", Json::str(w))])
                        })
                        .collect(),
                ),
            ),
            ("geomeans", geo),
            ("cells", Json::Arr(jcells)),
        ]);
        std::fs::write(dir.join("engine.json"), doc.to_pretty())?;
        std::fs::write(dir.join("engine.md"), self.markdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_differing_checksum_fails_the_cell() {
        let run = |checksum| Run {
            secs: 1.0,
            rss_kb: 1.0,
            checksum,
        };
        let mut good = Cell::default();
        good.record(run(7));
        good.record(run(7));
        good.verify(Some(7), "glibc");
        assert_eq!(good.error, None);
        assert_eq!(good.time(), 1.0);
        let mut bad = Cell::default();
        bad.record(run(7));
        bad.record(run(8));
        bad.verify(Some(7), "glibc");
        assert!(bad.error.unwrap().contains("differs from glibc's"));
    }
}
