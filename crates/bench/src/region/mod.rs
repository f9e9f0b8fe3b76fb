//! Region-heap benchmarks (issue 2): every stratalloc strategy and four peer
//! crates on the same 32 MiB region, fed the same seeded request stream.
//!
//! ```text
//!   region-bench ──for rep, contender──> region-bench --child <name> --phase rep
//!        │                                  one throughput replay, thread CPU time
//!        ├──────for contender──────────> region-bench --child <name> --phase rest
//!        │                                  efficiency rounds (fill until refusal),
//!        │                                  latency replay (rdtsc per call)
//!        │ <──────── result lines ──────────┘
//!        └─> tables (stdout, region.md), CSV, JSON in the output dir
//! ```
//!
//! Each measurement runs in its own process, so a strategy that crashes or
//! hangs costs one row ("failed: …"), not the whole run, and no contender
//! inherits another's heap or cache state. Repetitions are interleaved
//! (rep 1 of every contender, then rep 2, …) so a burst of load from other
//! processes is spread over all of them, and the rate is computed from the
//! benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which does not
//! count time spent preempted; wall time is recorded alongside.
//!
//! Cost: O(contenders × reps) process starts; each start faults in the
//! 32 MiB arena once (outside every timing).

pub mod heaps;
pub mod workload;

use std::fmt::Write as _;
use std::path::Path;

use crate::out::{ratio, si, write_csv, Json, Table};
use crate::stats::median;
use heaps::{contenders, Arena, BenchHeap, Kind, Visit};
use workload::{efficiency_round, gen_ops, latency, throughput, Counts, Percentiles};

/// Above this share of refused requests a throughput figure gets no ratio.
pub const REFUSING: f64 = 0.01;

/// What to run, and how much of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Bytes in the region every heap gets.
    pub region: usize,
    /// Steps in the random-actions stream.
    pub ops: usize,
    /// Live-block slots the stream acts on.
    pub slots: usize,
    /// Timed repetitions of the random-actions stream.
    pub reps: usize,
    /// Rounds of the heap-efficiency workload.
    pub eff_rounds: usize,
    /// Steps of the stream replayed for latency (at most `ops`).
    pub lat_ops: usize,
    /// Latency replays; each percentile is the median over them.
    pub lat_reps: usize,
    /// Seed of every random stream.
    pub seed: u64,
    /// Stop repeating once a contender's throughput reps took this long.
    pub budget_secs: f64,
}

impl Config {
    /// The full run (a few minutes on 2 cores).
    pub fn full() -> Config {
        Config {
            region: 32 << 20,
            ops: 1_000_000,
            slots: 4096,
            reps: 7,
            eff_rounds: 25,
            lat_ops: 1_000_000,
            lat_reps: 3,
            seed: 0x5EED_2026,
            budget_secs: 30.0,
        }
    }

    /// A shorter run for `--quick`.
    pub fn quick() -> Config {
        Config {
            ops: 150_000,
            reps: 3,
            eff_rounds: 4,
            lat_ops: 150_000,
            budget_secs: 8.0,
            ..Config::full()
        }
    }

    /// Tiny parameters that prove the harness works (tests, `--smoke`).
    pub fn smoke() -> Config {
        Config {
            region: 4 << 20,
            ops: 3_000,
            slots: 128,
            reps: 1,
            eff_rounds: 1,
            lat_ops: 3_000,
            lat_reps: 1,
            budget_secs: 5.0,
            ..Config::full()
        }
    }

    /// The config as command-line arguments [`Config::apply_arg`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (k, x) in [
            ("--region", self.region as u64),
            ("--ops", self.ops as u64),
            ("--slots", self.slots as u64),
            ("--reps", self.reps as u64),
            ("--eff-rounds", self.eff_rounds as u64),
            ("--lat-ops", self.lat_ops as u64),
            ("--lat-reps", self.lat_reps as u64),
            ("--seed", self.seed),
        ] {
            v.push(k.to_string());
            v.push(x.to_string());
        }
        v.push("--budget".into());
        v.push(self.budget_secs.to_string());
        v
    }

    /// Apply one `--key value` pair; `Ok(false)` if the key is not a config key.
    pub fn apply_arg(&mut self, key: &str, val: &str) -> Result<bool, String> {
        let num = || {
            val.parse::<u64>()
                .map_err(|_| format!("{key}: not a number: {val}"))
        };
        match key {
            "--region" => self.region = num()? as usize,
            "--ops" => self.ops = num()? as usize,
            "--slots" => self.slots = num()?.max(1) as usize,
            "--reps" => self.reps = num()?.max(1) as usize,
            "--eff-rounds" => self.eff_rounds = num()? as usize,
            "--lat-ops" => self.lat_ops = num()? as usize,
            "--lat-reps" => self.lat_reps = num()?.max(1) as usize,
            "--seed" => self.seed = num()?,
            "--budget" => self.budget_secs = val.parse().map_err(|_| format!("--budget: {val}"))?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Everything measured for one contender.
#[derive(Debug, Clone, PartialEq)]
pub struct ContenderResult {
    /// Name as the tables show it.
    pub name: String,
    /// Family.
    pub kind: Kind,
    /// Why the run stopped early, if it did (the figures before it stand).
    pub error: Option<String>,
    /// Steps per throughput repetition.
    pub ops: usize,
    /// Thread CPU seconds of each throughput repetition (the rate is
    /// computed from these).
    pub secs: Vec<f64>,
    /// Wall-clock seconds of each throughput repetition.
    pub wall: Vec<f64>,
    /// What the first repetition did (failures included).
    pub counts: Counts,
    /// Heap efficiency of each round (fraction of the region).
    pub eff: Vec<f64>,
    /// Allocation latency.
    pub alloc: Percentiles,
    /// Free latency.
    pub free: Percentiles,
}

impl ContenderResult {
    fn empty(name: &str, kind: Kind) -> Self {
        ContenderResult {
            name: name.to_string(),
            kind,
            error: None,
            ops: 0,
            secs: Vec::new(),
            wall: Vec::new(),
            counts: Counts::default(),
            eff: Vec::new(),
            alloc: Percentiles::default(),
            free: Percentiles::default(),
        }
    }

    /// Fold in the figures of another run of the same contender: its
    /// repetitions are appended, its other figures taken where it has them.
    pub fn merge(&mut self, o: ContenderResult) {
        if self.secs.is_empty() {
            self.counts = o.counts;
        }
        self.ops = self.ops.max(o.ops);
        self.secs.extend(o.secs);
        self.wall.extend(o.wall);
        if !o.eff.is_empty() {
            self.eff = o.eff;
        }
        if o.alloc.n > 0 || o.free.n > 0 {
            self.alloc = o.alloc;
            self.free = o.free;
        }
        if self.error.is_none() {
            self.error = o.error;
        }
    }

    /// An empty result for `name` (figures are merged into it).
    pub fn named(name: &str, kind: Kind) -> Self {
        Self::empty(name, kind)
    }

    /// Median operations per second over the repetitions (`NaN` if none).
    pub fn ops_per_sec(&self) -> f64 {
        let v: Vec<f64> = self.secs.iter().map(|s| self.ops as f64 / s).collect();
        median(&v)
    }

    /// Share of the random-actions steps the heap refused (first repetition).
    pub fn refused_share(&self) -> f64 {
        self.counts.fails as f64 / self.ops.max(1) as f64
    }

    /// Median heap efficiency (`NaN` if none).
    pub fn efficiency(&self) -> f64 {
        median(&self.eff)
    }

    /// The result as text lines (how a child process hands it back).
    pub fn to_lines(&self) -> String {
        let mut s = String::new();
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:e}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let pct = |p: &Percentiles| format!("{} {} {} {} {}", p.p50, p.p99, p.p999, p.max, p.n);
        let c = &self.counts;
        let _ = writeln!(s, "name {}", self.name);
        let _ = writeln!(s, "kind {}", self.kind.label());
        if let Some(e) = &self.error {
            let _ = writeln!(s, "error {}", e.replace('\n', " "));
        }
        let _ = writeln!(s, "ops {}", self.ops);
        let _ = writeln!(s, "secs {}", list(&self.secs));
        let _ = writeln!(s, "wall {}", list(&self.wall));
        let _ = writeln!(
            s,
            "counts {} {} {} {}",
            c.allocs, c.frees, c.reallocs, c.fails
        );
        let _ = writeln!(s, "eff {}", list(&self.eff));
        let _ = writeln!(s, "alloc {}", pct(&self.alloc));
        let _ = writeln!(s, "free {}", pct(&self.free));
        s
    }

    /// Parse [`to_lines`](Self::to_lines) output; `None` if malformed.
    pub fn from_lines(text: &str) -> Option<Self> {
        let mut r = ContenderResult::empty("", Kind::Peer);
        let nums = |s: &str| -> Option<Vec<u64>> {
            s.split_whitespace().map(|x| x.parse().ok()).collect()
        };
        let floats = |s: &str| -> Option<Vec<f64>> {
            s.split_whitespace().map(|x| x.parse().ok()).collect()
        };
        let pct = |s: &str| -> Option<Percentiles> {
            let v = nums(s)?;
            (v.len() == 5).then(|| Percentiles {
                p50: v[0],
                p99: v[1],
                p999: v[2],
                max: v[3],
                n: v[4],
            })
        };
        for line in text.lines() {
            let (k, rest) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "name" => r.name = rest.to_string(),
                "kind" => r.kind = Kind::from_label(rest)?,
                "error" => r.error = Some(rest.to_string()),
                "ops" => r.ops = rest.parse().ok()?,
                "secs" => r.secs = floats(rest)?,
                "wall" => r.wall = floats(rest)?,
                "eff" => r.eff = floats(rest)?,
                "counts" => {
                    let v = nums(rest)?;
                    if v.len() != 4 {
                        return None;
                    }
                    r.counts = Counts {
                        allocs: v[0],
                        frees: v[1],
                        reallocs: v[2],
                        fails: v[3],
                    };
                }
                "alloc" => r.alloc = pct(rest)?,
                "free" => r.free = pct(rest)?,
                _ => {}
            }
        }
        (!r.name.is_empty()).then_some(r)
    }
}

/// Which part of the measurements a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One throughput repetition (the parent interleaves repetitions across
    /// contenders, one child process each).
    OneRep,
    /// Heap efficiency and latency.
    Rest,
    /// Everything, repetitions included (in-process runs and tests).
    All,
}

impl Phase {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Phase::OneRep => "rep",
            Phase::Rest => "rest",
            Phase::All => "all",
        }
    }
    /// Parse [`name`](Self::name).
    pub fn from_name(s: &str) -> Option<Phase> {
        [Phase::OneRep, Phase::Rest, Phase::All]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// Run every workload for the contender called `name`, in this process.
/// `None` if there is no such contender.
pub fn run_contender(name: &str, cfg: &Config) -> Option<ContenderResult> {
    run_phase(name, cfg, Phase::All)
}

/// Run `phase` of the workloads for the contender called `name`, in this
/// process. `None` if there is no such contender.
pub fn run_phase(name: &str, cfg: &Config, phase: Phase) -> Option<ContenderResult> {
    struct Runner<'a> {
        want: &'a str,
        cfg: &'a Config,
        phase: Phase,
        arena: Option<Arena>,
        out: Option<ContenderResult>,
    }
    impl Visit for Runner<'_> {
        fn visit<H: BenchHeap>(
            &mut self,
            name: &str,
            kind: Kind,
            make: &dyn Fn(&Arena) -> Result<Box<H>, String>,
        ) {
            if name != self.want || self.out.is_some() {
                return;
            }
            let arena = self
                .arena
                .get_or_insert_with(|| Arena::new(self.cfg.region));
            let mut r = ContenderResult::empty(name, kind);
            if let Err(e) = measure(self.cfg, self.phase, arena, make, &mut r) {
                r.error = Some(e);
            }
            self.out = Some(r);
        }
    }
    let mut runner = Runner {
        want: name,
        cfg,
        phase,
        arena: None,
        out: None,
    };
    contenders(&mut runner);
    runner.out
}

/// The workloads of `phase` on one heap type; fills `r` as it goes.
fn measure<H: BenchHeap>(
    cfg: &Config,
    phase: Phase,
    arena: &Arena,
    make: &dyn Fn(&Arena) -> Result<Box<H>, String>,
    r: &mut ContenderResult,
) -> Result<(), String> {
    let ops = gen_ops(cfg.seed, cfg.ops, cfg.slots);
    r.ops = ops.len();
    if phase != Phase::Rest {
        let reps = if phase == Phase::OneRep { 1 } else { cfg.reps };
        let mut spent = 0.0;
        for rep in 0..reps {
            // Each heap is dropped before the next is built on the same arena.
            let mut h = make(arena)?;
            let (cpu, wall, c) = throughput(&mut *h, &ops, cfg.slots)?;
            drop(h);
            if rep == 0 {
                r.counts = c;
            }
            r.secs.push(cpu);
            r.wall.push(wall);
            spent += wall;
            if spent > cfg.budget_secs {
                break;
            }
        }
    }
    if phase == Phase::OneRep {
        return Ok(());
    }
    let start = std::time::Instant::now();
    for round in 0..cfg.eff_rounds {
        let mut h = make(arena)?;
        let seed = cfg.seed ^ (0xEFF1_C1E0_u64 + round as u64);
        let (frac, _) = efficiency_round(&mut *h, seed, arena.len())?;
        drop(h);
        r.eff.push(frac);
        // A slow heap gets fewer rounds (at least three), not an hour.
        if round >= 2 && start.elapsed().as_secs_f64() > cfg.budget_secs {
            break;
        }
    }
    let lat_ops = &ops[..cfg.lat_ops.min(ops.len())];
    if !lat_ops.is_empty() {
        let start = std::time::Instant::now();
        let (mut allocs, mut frees) = (Vec::new(), Vec::new());
        for _ in 0..cfg.lat_reps.max(1) {
            let mut h = make(arena)?;
            let (a, f) = latency(&mut *h, lat_ops, cfg.slots)?;
            drop(h);
            allocs.push(a);
            frees.push(f);
            if start.elapsed().as_secs_f64() > cfg.budget_secs {
                break;
            }
        }
        r.alloc = Percentiles::median_of(&allocs);
        r.free = Percentiles::median_of(&frees);
    }
    Ok(())
}

/// Results of a whole run, with the ratios against the best peer.
pub struct Report {
    /// The config measured with.
    pub cfg: Config,
    /// One per contender, in list order.
    pub results: Vec<ContenderResult>,
    /// Median cost of the timer itself, in ticks (included in each sample).
    pub timer_overhead: u64,
}

/// The best peer by `f` (highest if `max`, else lowest): (value, name);
/// `(NaN, "")` if no peer has a figure.
fn best<F: Fn(&ContenderResult) -> f64>(rs: &[ContenderResult], f: F, max: bool) -> (f64, String) {
    let mut out = (f64::NAN, String::new());
    for r in rs.iter().filter(|r| !r.kind.is_ours()) {
        let x = f(r);
        if !(x.is_finite() && x > 0.0) {
            continue;
        }
        if out.0.is_nan() || (max && x > out.0) || (!max && x < out.0) {
            out = (x, r.name.clone());
        }
    }
    out
}

impl Report {
    /// Best peer throughput (ops/s) and its name (peers refusing requests
    /// are not compared).
    pub fn best_peer_throughput_named(&self) -> (f64, String) {
        best(
            &self.results,
            |r| {
                if r.refused_share() > REFUSING {
                    f64::NAN
                } else {
                    r.ops_per_sec()
                }
            },
            true,
        )
    }
    /// Best peer efficiency and its name.
    pub fn best_peer_efficiency_named(&self) -> (f64, String) {
        best(&self.results, |r| r.efficiency(), true)
    }
    /// Lowest peer p99.9 allocation latency and its name.
    pub fn best_peer_alloc_p999_named(&self) -> (f64, String) {
        best(&self.results, |r| r.alloc.p999 as f64, false)
    }
    /// Lowest peer p99.9 free latency and its name.
    pub fn best_peer_free_p999_named(&self) -> (f64, String) {
        best(&self.results, |r| r.free.p999 as f64, false)
    }
    /// Best peer throughput (ops/s).
    pub fn best_peer_throughput(&self) -> f64 {
        self.best_peer_throughput_named().0
    }
    /// Best peer efficiency.
    pub fn best_peer_efficiency(&self) -> f64 {
        self.best_peer_efficiency_named().0
    }
    /// Lowest peer p99.9 allocation latency.
    pub fn best_peer_alloc_p999(&self) -> f64 {
        self.best_peer_alloc_p999_named().0
    }
    /// Lowest peer p99.9 free latency.
    pub fn best_peer_free_p999(&self) -> f64 {
        self.best_peer_free_p999_named().0
    }

    /// One line per stratalloc contender named in `names` (if present):
    /// its ratios against the best peer, naming that peer.
    pub fn headline(&self, names: &[&str]) -> String {
        let (bt, bt_n) = self.best_peer_throughput_named();
        let (be, be_n) = self.best_peer_efficiency_named();
        let (ba, ba_n) = self.best_peer_alloc_p999_named();
        let (bf, bf_n) = self.best_peer_free_p999_named();
        let mut s = String::new();
        for r in self
            .results
            .iter()
            .filter(|r| names.contains(&r.name.as_str()))
        {
            if r.error.is_some() {
                continue;
            }
            let _ = writeln!(
                s,
                "- **{}** vs the best peer: throughput {} ({} ops/s vs {bt_n} {} ops/s), \
                 efficiency {} ({:.1}% vs {be_n} {:.1}%), alloc p99.9 {} ({} vs {ba_n} {}), \
                 free p99.9 {} ({} vs {bf_n} {})",
                r.name,
                ratio(r.ops_per_sec() / bt),
                si(r.ops_per_sec()),
                si(bt),
                ratio(r.efficiency() / be),
                r.efficiency() * 100.0,
                be * 100.0,
                ratio(r.alloc.p999 as f64 / ba),
                r.alloc.p999,
                ba,
                ratio(r.free.p999 as f64 / bf),
                r.free.p999,
                bf,
            );
        }
        s
    }

    /// The Markdown tables.
    pub fn markdown(&self) -> String {
        let bt = self.best_peer_throughput();
        let be = self.best_peer_efficiency();
        let (ba, bf) = (self.best_peer_alloc_p999(), self.best_peer_free_p999());
        let c = &self.cfg;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Region {} MiB; random actions: {} steps over {} slots, ops per CPU-second of the \
             benchmark thread, median of up to {} runs (interleaved across allocators); \
             efficiency: median of up to {} rounds; latency: {} steps, each percentile the median \
             of up to {} replays, in {} \
             (timer overhead ~{} included). Ratios are against the best peer \
             (throughput, efficiency: higher is better; p99.9: lower is better).\n",
            c.region >> 20,
            c.ops,
            c.slots,
            c.reps,
            c.eff_rounds,
            c.lat_ops,
            c.lat_reps,
            workload::TICK_UNIT,
            self.timer_overhead
        );
        let mut t = Table::new(&[
            "allocator",
            "family",
            "ops/s",
            "vs best peer",
            "refused",
            "efficiency",
            "vs best peer",
        ])
        .text_cols(2);
        for r in &self.results {
            let (tp, ef) = (r.ops_per_sec(), r.efficiency());
            let mut name = r.name.clone();
            if let Some(e) = &r.error {
                name = format!("{name} (failed: {e})");
            }
            // A heap that refuses many requests is timed mostly on failing
            // calls: show its rate, but compare no ratio.
            let refusing = r.refused_share() > REFUSING;
            t.push(vec![
                name,
                r.kind.label().to_string(),
                if refusing {
                    format!("{} (†)", si(tp))
                } else {
                    si(tp)
                },
                if refusing { "-".into() } else { ratio(tp / bt) },
                format!("{:.1}%", 100.0 * r.refused_share()),
                if ef.is_finite() {
                    format!("{:.1}%", ef * 100.0)
                } else {
                    "-".into()
                },
                ratio(ef / be),
            ]);
        }
        s.push_str("**Throughput and heap efficiency**\n\n");
        s.push_str(&t.to_markdown());
        if self.results.iter().any(|r| r.refused_share() > REFUSING) {
            let _ = writeln!(
                s,
                "\n(†) refused more than {:.0}% of the random-actions requests \
                 (a bump heap never reuses memory), so most of what was timed are failing \
                 calls; no ratio is given.",
                REFUSING * 100.0
            );
        }
        let mut t = Table::new(&[
            "allocator",
            "alloc p50",
            "p99",
            "p99.9",
            "max",
            "free p50",
            "p99",
            "p99.9",
            "max",
            "alloc p99.9 vs best peer",
            "free p99.9 vs best peer",
        ]);
        for r in &self.results {
            let (a, f) = (&r.alloc, &r.free);
            if a.n == 0 && f.n == 0 {
                t.push(vec![r.name.clone(), "-".into()]);
                continue;
            }
            t.push(vec![
                r.name.clone(),
                a.p50.to_string(),
                a.p99.to_string(),
                a.p999.to_string(),
                a.max.to_string(),
                f.p50.to_string(),
                f.p99.to_string(),
                f.p999.to_string(),
                f.max.to_string(),
                ratio(a.p999 as f64 / ba),
                ratio(f.p999 as f64 / bf),
            ]);
        }
        let _ = writeln!(s, "\n**Latency per operation ({})**\n", workload::TICK_UNIT);
        s.push_str(&t.to_markdown());
        let h = self.headline(&["tlsf", "tlsf (direct)", "tlsf (trusting)"]);
        if !h.is_empty() {
            s.push_str("\n**Headline**\n\n");
            s.push_str(&h);
        }
        s
    }

    /// Write the CSV and JSON files into `dir`.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let (bt, be) = (self.best_peer_throughput(), self.best_peer_efficiency());
        let (ba, bf) = (self.best_peer_alloc_p999(), self.best_peer_free_p999());
        let f = |x: f64| {
            if x.is_finite() {
                format!("{x}")
            } else {
                String::new()
            }
        };
        let mut summary = Vec::new();
        let mut reps = Vec::new();
        let mut effs = Vec::new();
        let mut json = Vec::new();
        for r in &self.results {
            let (tp, ef) = (r.ops_per_sec(), r.efficiency());
            summary.push(vec![
                r.name.clone(),
                r.kind.label().into(),
                f(tp),
                f(tp / bt),
                r.counts.fails.to_string(),
                f(ef),
                f(ef / be),
                r.alloc.p50.to_string(),
                r.alloc.p99.to_string(),
                r.alloc.p999.to_string(),
                r.alloc.max.to_string(),
                r.free.p50.to_string(),
                r.free.p99.to_string(),
                r.free.p999.to_string(),
                r.free.max.to_string(),
                f(r.alloc.p999 as f64 / ba),
                f(r.free.p999 as f64 / bf),
                r.error.clone().unwrap_or_default(),
            ]);
            for (i, s) in r.secs.iter().enumerate() {
                let wall = r.wall.get(i).copied().unwrap_or(f64::NAN);
                reps.push(vec![
                    r.name.clone(),
                    i.to_string(),
                    r.ops.to_string(),
                    f(*s),
                    f(wall),
                    f(r.ops as f64 / s),
                ]);
            }
            for (i, e) in r.eff.iter().enumerate() {
                effs.push(vec![r.name.clone(), i.to_string(), f(*e)]);
            }
            let pct = |p: &Percentiles| {
                Json::obj(vec![
                    ("p50", Json::Num(p.p50 as f64)),
                    ("p99", Json::Num(p.p99 as f64)),
                    ("p99_9", Json::Num(p.p999 as f64)),
                    ("max", Json::Num(p.max as f64)),
                    ("samples", Json::Num(p.n as f64)),
                ])
            };
            json.push(Json::obj(vec![
                ("name", Json::str(&r.name)),
                ("family", Json::str(r.kind.label())),
                ("error", r.error.as_ref().map_or(Json::Null, Json::str)),
                ("ops", Json::Num(r.ops as f64)),
                (
                    "cpu_seconds",
                    Json::Arr(r.secs.iter().map(|x| Json::Num(*x)).collect()),
                ),
                (
                    "wall_seconds",
                    Json::Arr(r.wall.iter().map(|x| Json::Num(*x)).collect()),
                ),
                ("ops_per_sec_median", Json::Num(tp)),
                ("ops_per_sec_vs_best_peer", Json::Num(tp / bt)),
                ("refused", Json::Num(r.counts.fails as f64)),
                (
                    "efficiency",
                    Json::Arr(r.eff.iter().map(|x| Json::Num(*x)).collect()),
                ),
                ("efficiency_median", Json::Num(ef)),
                ("efficiency_vs_best_peer", Json::Num(ef / be)),
                ("alloc_latency", pct(&r.alloc)),
                ("free_latency", pct(&r.free)),
            ]));
        }
        write_csv(
            &dir.join("region-summary.csv"),
            &[
                "allocator",
                "family",
                "ops_per_sec",
                "ops_per_sec_vs_best_peer",
                "refused",
                "efficiency",
                "efficiency_vs_best_peer",
                "alloc_p50",
                "alloc_p99",
                "alloc_p99_9",
                "alloc_max",
                "free_p50",
                "free_p99",
                "free_p99_9",
                "free_max",
                "alloc_p99_9_vs_best_peer",
                "free_p99_9_vs_best_peer",
                "error",
            ],
            &summary,
        )?;
        write_csv(
            &dir.join("region-throughput.csv"),
            &[
                "allocator",
                "rep",
                "ops",
                "cpu_seconds",
                "wall_seconds",
                "ops_per_cpu_sec",
            ],
            &reps,
        )?;
        write_csv(
            &dir.join("region-efficiency.csv"),
            &["allocator", "round", "efficiency"],
            &effs,
        )?;
        let c = &self.cfg;
        let doc = Json::obj(vec![
            (
                "config",
                Json::obj(vec![
                    ("region_bytes", Json::Num(c.region as f64)),
                    ("ops", Json::Num(c.ops as f64)),
                    ("slots", Json::Num(c.slots as f64)),
                    ("reps", Json::Num(c.reps as f64)),
                    ("efficiency_rounds", Json::Num(c.eff_rounds as f64)),
                    ("latency_ops", Json::Num(c.lat_ops as f64)),
                    ("latency_reps", Json::Num(c.lat_reps as f64)),
                    ("seed", Json::Num(c.seed as f64)),
                    ("latency_unit", Json::str(workload::TICK_UNIT)),
                    ("timer_overhead", Json::Num(self.timer_overhead as f64)),
                ]),
            ),
            ("best_peer_ops_per_sec", Json::Num(bt)),
            ("best_peer_efficiency", Json::Num(be)),
            ("best_peer_alloc_p99_9", Json::Num(ba)),
            ("best_peer_free_p99_9", Json::Num(bf)),
            ("results", Json::Arr(json)),
        ]);
        std::fs::write(dir.join("region.json"), doc.to_pretty())?;
        std::fs::write(dir.join("region.md"), self.markdown())
    }
}
