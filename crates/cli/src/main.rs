//! `stratalloc`: see the heap.
//!
//! ```text
//!   stratalloc run [--strategy S] [--stats] [--leaks [--show-reachable]] [--check] [--trace F]
//!                  [--profile F.html [--sample N]] [--follow-children] -- PROGRAM ARGS…
//!   stratalloc replay [TRACE] [--strategy S…|--all]
//!   stratalloc viz [TRACE] [--strategy S] [--out PREFIX] [--text]
//!   stratalloc bench [--quick|--smoke] [--out DIR]
//! ```

mod bench;
mod replay;
mod run;
mod viz;
mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stratalloc::__private::trace::Trace;
use stratalloc_core::Strategy;

#[derive(Parser)]
#[command(
    name = "stratalloc",
    version,
    about = "Run programs on stratalloc and see their heap"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a program with libstratalloc.so preloaded, then show the reports.
    Run {
        /// Allocator: `engine` or a strategy name.
        #[arg(long)]
        strategy: Option<String>,
        /// Statistics report at exit.
        #[arg(long)]
        stats: bool,
        /// Leak check at exit: blocks no pointer reaches any more (direct
        /// and indirect leaks, by call site); exit status 23 if any.
        #[arg(long)]
        leaks: bool,
        /// With --leaks: list the blocks still reachable at exit too.
        #[arg(long)]
        show_reachable: bool,
        /// Guards, quarantine, double/invalid free checks.
        #[arg(long)]
        check: bool,
        /// Write every allocator event to this file.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Allocation profile: FILE.html (one self-contained page) and
        /// FILE.json; a path not ending in .html gets the JSON only.
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// Profile: capture the call stack of one allocation in N (site
        /// figures become estimates; process totals stay exact).
        #[arg(long, value_name = "N", requires = "profile")]
        sample: Option<u32>,
        /// Report every process the program starts too (each report names
        /// its process); by default only the program itself reports.
        #[arg(long)]
        follow_children: bool,
        /// The program and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Replay a trace on core strategies and compare them.
    Replay {
        /// A trace file (STRATALLOC_TRACE / `run --trace`); the built-in
        /// workload if absent.
        trace: Option<PathBuf>,
        /// Strategies to replay on (repeatable); all of them if none.
        #[arg(long = "strategy", short = 's', value_parser = parse_strategy)]
        strategies: Vec<Strategy>,
        /// Every strategy (the default).
        #[arg(long)]
        all: bool,
        /// Which process of the trace file (the one with the most events by default).
        #[arg(long)]
        pid: Option<u32>,
        /// Operations of the built-in workload.
        #[arg(long, default_value_t = 50_000)]
        ops: usize,
    },
    /// Draw the heap map of a strategy replaying a trace (PNG, SVG, text).
    Viz {
        /// A trace file; the built-in workload if absent.
        trace: Option<PathBuf>,
        /// The strategy to draw.
        #[arg(long, short = 's', default_value = "tlsf", value_parser = parse_strategy)]
        strategy: Strategy,
        /// Output prefix: writes PREFIX.png and PREFIX.svg.
        #[arg(long, default_value = "heap-map")]
        out: PathBuf,
        /// Snapshots (columns of the picture).
        #[arg(long, default_value_t = 160)]
        snapshots: usize,
        /// Address bins (rows of the picture).
        #[arg(long, default_value_t = 400)]
        rows: usize,
        /// Only print the text map (no files).
        #[arg(long)]
        text: bool,
        /// Which process of the trace file.
        #[arg(long)]
        pid: Option<u32>,
        /// Operations of the built-in workload.
        #[arg(long, default_value_t = 20_000)]
        ops: usize,
    },
    /// Run the benchmark suites (stratalloc-bench) with a progress bar.
    Bench {
        /// Fewer steps and repetitions.
        #[arg(long, conflicts_with = "smoke")]
        quick: bool,
        /// Tiny parameters: proves the harness works.
        #[arg(long)]
        smoke: bool,
        /// Where CSV/JSON/Markdown go.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
        .map_err(|e: stratalloc_core::UnknownStrategy| e.to_string())
}

fn load(trace: &Option<PathBuf>, pid: Option<u32>, ops: usize) -> Result<(Trace, String), String> {
    match trace {
        Some(p) => {
            let t = Trace::read(p, pid).map_err(|e| format!("{}: {e}", p.display()))?;
            if !t.other_pids.is_empty() {
                eprintln!(
                    "note: the file also holds processes {:?} (choose with --pid)",
                    t.other_pids
                );
            }
            let what = format!(
                "{} (pid {}, {} events, {} threads, {} blocks, {} unmatched frees)",
                p.display(),
                t.pid,
                t.events.len(),
                t.threads,
                t.ids,
                t.unmatched
            );
            Ok((t, what))
        }
        None => Ok((
            workload::mixed(ops, 1),
            format!("built-in mixed workload ({ops} operations)"),
        )),
    }
}

fn main_inner() -> Result<i32, String> {
    match Cli::parse().cmd {
        Cmd::Run {
            strategy,
            stats,
            leaks,
            show_reachable,
            check,
            trace,
            profile,
            sample,
            follow_children,
            command,
        } => run::run(run::RunArgs {
            strategy,
            stats,
            leaks: leaks || show_reachable,
            show_reachable,
            check,
            trace,
            profile,
            sample,
            follow_children,
            command,
        }),
        Cmd::Replay {
            trace,
            strategies,
            all,
            pid,
            ops,
        } => {
            let (t, what) = load(&trace, pid, ops)?;
            let list: Vec<Strategy> = if all || strategies.is_empty() {
                Strategy::ALL.to_vec()
            } else {
                strategies
            };
            println!("replaying {what}");
            println!(
                "peak live (requested) {:.2} MiB; region per strategy {} MiB",
                t.peak_requested() as f64 / (1 << 20) as f64,
                replay::region_len(&t) >> 20
            );
            let outcomes: Vec<_> = list.iter().map(|&s| replay::replay(&t, s)).collect();
            print!("{}", replay::table(&outcomes));
            println!(
                "footprint = 4 KiB pages ever covered by a block; top = highest block end; \
                 overhead = footprint / peak live - 1; frag = 1 - largest free / free (sampled)"
            );
            let bad = outcomes
                .iter()
                .any(|o| matches!(o, Ok(o) if o.check.is_err() || o.errors != 0));
            for o in outcomes.iter().flatten() {
                if let Err(e) = &o.check {
                    eprintln!("{}: check failed: {e}", o.strategy);
                }
            }
            Ok(if bad { 1 } else { 0 })
        }
        Cmd::Viz {
            trace,
            strategy,
            out,
            snapshots,
            rows,
            text,
            pid,
            ops,
        } => {
            let (t, what) = load(&trace, pid, ops)?;
            let g = viz::grid(&t, strategy, snapshots, rows)?;
            let tty = std::io::stdout().is_terminal();
            println!(
                "{strategy} replaying {what}; high-water mark {:.2} MiB",
                g.high_water as f64 / (1 << 20) as f64
            );
            print!("{}", viz::text_map(&g, 24, 100, tty));
            if !text {
                let png = out.with_extension("png");
                let svg = out.with_extension("svg");
                let title = format!("{strategy}: heap map, {what}");
                viz::write_png(&g, &png, &title)?;
                viz::write_svg(&g, &svg, &title)?;
                println!("wrote {} and {}", png.display(), svg.display());
                if !viz::png_fonts_ready() {
                    eprintln!(
                        "note: no TrueType font found (install fonts-dejavu-core or set STRATALLOC_FONT); the PNG has no text, the SVG does"
                    );
                }
            }
            Ok(0)
        }
        Cmd::Bench { quick, smoke, out } => {
            let mode = if smoke {
                Some("smoke")
            } else if quick {
                Some("quick")
            } else {
                None
            };
            bench::bench(mode, &out)?;
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(c) => ExitCode::from(c.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("stratalloc: {e}");
            ExitCode::from(2)
        }
    }
}
