//! `region-bench`: the region-heap benchmarks (see `stratalloc_bench::region`).
//!
//! ```text
//! region-bench [--quick | --smoke] [--out DIR] [--only NAME,NAME] [--list]
//!              [--in-process] [--region BYTES] [--ops N] [--slots N]
//!              [--reps N] [--eff-rounds N] [--lat-ops N] [--seed N] [--budget SECS]
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use stratalloc_bench::region::heaps::contender_names;
use stratalloc_bench::region::workload::timer_overhead;
use stratalloc_bench::region::{run_contender, Config, ContenderResult, Report};

fn usage() -> ! {
    eprintln!(
        "usage: region-bench [--quick | --smoke] [--out DIR] [--only NAME,NAME] [--list] \
         [--in-process] [--region BYTES] [--ops N] [--slots N] [--reps N] [--eff-rounds N] \
         [--lat-ops N] [--seed N] [--budget SECS]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The preset comes first so explicit numbers override it.
    let mut cfg = stratalloc_bench::preset(&args, Config::full, Config::quick, Config::smoke);
    let mut out = stratalloc_bench::default_out_dir();
    let mut only: Option<Vec<String>> = None;
    let mut child: Option<String> = None;
    let mut in_process = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" | "--quick" => {}
            "--in-process" => in_process = true,
            "--list" => {
                for (n, k) in contender_names() {
                    println!("{n}\t{}", k.label());
                }
                return;
            }
            "-h" | "--help" => usage(),
            k => {
                let Some(v) = it.next() else { usage() };
                match k {
                    "--out" => out = PathBuf::from(v),
                    "--only" => only = Some(v.split(',').map(str::to_string).collect()),
                    "--child" => child = Some(v.clone()),
                    _ => match cfg.apply_arg(k, v) {
                        Ok(true) => {}
                        Ok(false) => usage(),
                        Err(e) => {
                            eprintln!("region-bench: {e}");
                            std::process::exit(2)
                        }
                    },
                }
            }
        }
    }

    if let Some(name) = child {
        match run_contender(&name, &cfg) {
            Some(r) => print!("{}", r.to_lines()),
            None => {
                eprintln!("region-bench: no contender named {name}");
                std::process::exit(2)
            }
        }
        return;
    }

    let names: Vec<_> = contender_names()
        .into_iter()
        .filter(|(n, _)| only.as_ref().map_or(true, |o| o.iter().any(|x| x == n)))
        .collect();
    if names.is_empty() {
        eprintln!("region-bench: no contender selected (see --list)");
        std::process::exit(2);
    }
    let exe = std::env::current_exe().expect("own path");
    let mut results = Vec::new();
    for (name, kind) in &names {
        eprint!("region-bench: {name} ... ");
        let r = if in_process {
            run_contender(name, &cfg).expect("listed contender")
        } else {
            let mut cmd = Command::new(&exe);
            cmd.arg("--child").arg(name).args(cfg.to_args());
            // Generous: the budget bounds the throughput reps; the rest is bounded by size.
            let limit = Duration::from_secs_f64(cfg.budget_secs * 4.0 + 240.0);
            match stratalloc_bench::proc::run(cmd, limit) {
                Ok(o) if o.ok() => ContenderResult::from_lines(&o.stdout)
                    .unwrap_or_else(|| failed(name, *kind, "unreadable child output".into())),
                Ok(o) => failed(name, *kind, o.failure()),
                Err(e) => failed(name, *kind, format!("spawn: {e}")),
            }
        };
        match &r.error {
            None => eprintln!(
                "{:.2} Mops/s, efficiency {:.1}%",
                r.ops_per_sec() / 1e6,
                r.efficiency() * 100.0
            ),
            Some(e) => eprintln!("failed: {e}"),
        }
        results.push(r);
    }
    let report = Report {
        cfg,
        results,
        timer_overhead: timer_overhead(),
    };
    print!("{}", report.markdown());
    if let Err(e) = report.write_files(&out) {
        eprintln!("region-bench: writing {}: {e}", out.display());
        std::process::exit(1);
    }
    eprintln!("region-bench: wrote {}", out.display());
}

fn failed(name: &str, kind: stratalloc_bench::region::heaps::Kind, why: String) -> ContenderResult {
    let mut r = ContenderResult::from_lines(&format!("name {name}\nkind {}\n", kind.label()))
        .expect("well-formed");
    r.error = Some(why);
    r
}
