//! `stratalloc`: see the heap.
//!
//! ```text
//!   stratalloc run [--strategy S] [--stats] [--leaks [--show-reachable]] [--check] [--trace F]
//!                  [--profile F.html [--sample N]] [--follow-children] -- PROGRAM ARGS…
//!   stratalloc replay [TRACE] [--strategy S…|--all]
//!   stratalloc viz [TRACE] [--strategy S…] [--out PREFIX] [--text]
//!   stratalloc bench [--quick|--smoke] [--out DIR]
//!   stratalloc paths
//! ```

mod bench;
mod locate;
mod replay;
mod run;
mod viz;
mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use stratalloc::__private::trace::Trace;
use stratalloc_core::Strategy;

#[derive(Parser)]
#[command(
    name = "stratalloc",
    version,
    about = "Run programs on stratalloc and see their heap",
    after_help = "Finds libstratalloc.so in STRATALLOC_LIB, else beside this executable, in ../lib, \
                  in ../lib/stratalloc, then in target/release/ of the source tree it was built from \
                  (`stratalloc paths` shows what it found)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a program with libstratalloc.so preloaded, then show the reports.
    #[command(
        after_help = "Put -- before the program. libstratalloc.so is taken from \
                            STRATALLOC_LIB, else found beside this executable, in ../lib, in \
                            ../lib/stratalloc, or in target/release/ of the source tree it was built \
                            from (`stratalloc paths` shows which)."
    )]
    Run {
        /// Allocator: `engine` (the default) or a strategy.
        #[arg(long, value_parser = PossibleValuesParser::new(strategy_names(true)))]
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
        #[arg(long = "strategy", short = 's', value_parser = strategy_parser())]
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
    /// Draw heap maps of strategies replaying a trace (PNG, SVG, text).
    Viz {
        /// A trace file; the built-in workload if absent.
        trace: Option<PathBuf>,
        /// The strategies to draw (repeatable): side by side, to one
        /// address scale.
        #[arg(long, short = 's', default_value = "tlsf", value_parser = strategy_parser())]
        strategy: Vec<Strategy>,
        /// Output prefix: writes PREFIX.png and PREFIX.svg.
        #[arg(long, default_value = "heap-map")]
        out: PathBuf,
        /// Snapshots (columns of each map).
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
    /// Show where the library and the benchmark binaries were found.
    Paths,
}

/// The strategy names, `engine` first if `engine`.
fn strategy_names(engine: bool) -> Vec<&'static str> {
    let core = Strategy::ALL.iter().map(|s| s.name());
    engine.then_some("engine").into_iter().chain(core).collect()
}

/// A core strategy by name; help and errors list the names.
fn strategy_parser() -> impl TypedValueParser<Value = Strategy> {
    PossibleValuesParser::new(strategy_names(false))
        .map(|s| s.parse().expect("a name from Strategy::ALL"))
}

/// Parse the command line; a `run` without `--` before the program gets a
/// hint besides clap's message.
fn parse() -> Cli {
    let e = match Cli::try_parse() {
        Ok(c) => return c,
        Err(e) => e,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hint = args.first().map(String::as_str) == Some("run")
        && !args.iter().any(|a| a == "--")
        && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    let _ = e.print();
    if hint {
        eprintln!("\nhint: put -- before the program: stratalloc run [OPTIONS] -- PROGRAM [ARGS…]");
    }
    std::process::exit(e.exit_code());
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

/// What was replayed, for a picture's title: the trace's file name (no
/// directory) and its size, or the built-in workload.
fn short(trace: &Option<PathBuf>, t: &Trace, ops: usize) -> String {
    match trace {
        Some(p) => format!(
            "{} ({} events, {} blocks)",
            p.file_name().map_or(p.as_os_str(), |f| f).to_string_lossy(),
            t.events.len(),
            t.ids
        ),
        None => format!("the built-in workload ({ops} operations)"),
    }
}

fn main_inner() -> Result<i32, String> {
    match parse().cmd {
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
            println!("{}", replay::LEGEND);
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
            let snaps = strategy
                .iter()
                .map(|&s| viz::snapshots(&t, s, snapshots))
                .collect::<Result<Vec<_>, _>>()?;
            let top = snaps.iter().map(|s| s.top).max().unwrap_or(0);
            let grids: Vec<viz::Grid> = snaps
                .iter()
                .map(|s| viz::grid(s, top + top / 20, rows))
                .collect();
            let tty = std::io::stdout().is_terminal();
            println!("replaying {what}");
            for g in &grids {
                println!(
                    "{}: top {:.2} MiB above {:.2} MiB of region metadata (not drawn)",
                    g.strategy,
                    g.top as f64 / (1 << 20) as f64,
                    g.base as f64 / (1 << 20) as f64
                );
                print!("{}", viz::text_map(g, 24, 100, tty));
            }
            if !text {
                let png = out.with_extension("png");
                let svg = out.with_extension("svg");
                let names: Vec<&str> = strategy.iter().map(|s| s.name()).collect();
                let title = format!(
                    "heap maps: {} replaying {}",
                    names.join(", "),
                    short(&trace, &t, ops)
                );
                viz::write_png(&grids, &png, &title)?;
                viz::write_svg(&grids, &svg, &title)?;
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
        Cmd::Paths => {
            let show = |what: &str, r: Result<PathBuf, String>| match r {
                Ok(p) => println!("{what:16} {}", p.display()),
                Err(e) => println!("{what:16} not found: {e}"),
            };
            show("libstratalloc.so", locate::lib());
            for b in ["region-bench", "engine-bench", "engine-workload"] {
                show(b, locate::bench_bin(b));
            }
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
