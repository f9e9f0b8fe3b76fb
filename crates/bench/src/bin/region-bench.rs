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

use stratalloc_bench::region::heaps::{contender_names, Kind};
use stratalloc_bench::region::workload::timer_overhead;
use stratalloc_bench::region::{run_contender, run_phase, Config, ContenderResult, Phase, Report};

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
    let mut phase = Phase::All;
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
                    "--phase" => phase = Phase::from_name(v).unwrap_or_else(|| usage()),
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
        match run_phase(&name, &cfg, phase) {
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
    let results = if in_process {
        names
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                eprintln!("region-bench: [{}/{}] {name}", i + 1, names.len());
                run_contender(name, &cfg).expect("listed contender")
            })
            .collect()
    } else {
        run_children(&names, &cfg)
    };
    for r in &results {
        match &r.error {
            None => eprintln!(
                "region-bench: {}: {:.2} Mops/s, efficiency {:.1}%",
                r.name,
                r.ops_per_sec() / 1e6,
                r.efficiency() * 100.0
            ),
            Some(e) => eprintln!("region-bench: {}: failed: {e}", r.name),
        }
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

/// One child process per throughput repetition, repetitions interleaved
/// across contenders (so a burst of load from elsewhere is shared), then
/// one child per contender for efficiency and latency.
fn run_children(names: &[(String, Kind)], cfg: &Config) -> Vec<ContenderResult> {
    let exe = std::env::current_exe().expect("own path");
    let mut results: Vec<ContenderResult> = names
        .iter()
        .map(|(n, k)| ContenderResult::named(n, *k))
        .collect();
    let mut spent = vec![0.0f64; names.len()];
    let limit = Duration::from_secs_f64(cfg.budget_secs * 4.0 + 240.0);
    let child = |name: &str, phase: Phase| -> Result<ContenderResult, String> {
        let mut cmd = Command::new(&exe);
        cmd.arg("--child")
            .arg(name)
            .arg("--phase")
            .arg(phase.name())
            .args(cfg.to_args());
        match stratalloc_bench::proc::run(cmd, limit) {
            Ok(o) if o.ok() => ContenderResult::from_lines(&o.stdout)
                .ok_or_else(|| "unreadable child output".to_string()),
            Ok(o) => Err(o.failure()),
            Err(e) => Err(format!("spawn: {e}")),
        }
    };
    // Progress lines "[K/N] what": one step per child (a skipped one
    // counts as done); `stratalloc bench` draws its progress bar from them.
    let total = (cfg.reps + 1) * names.len();
    let mut step = 0;
    for rep in 0..cfg.reps {
        for (i, (name, _)) in names.iter().enumerate() {
            step += 1;
            // A slow heap gets fewer repetitions once it used its budget.
            if results[i].error.is_some() || (rep > 0 && spent[i] > cfg.budget_secs) {
                continue;
            }
            eprintln!(
                "region-bench: [{step}/{total}] rep {}/{} {name}",
                rep + 1,
                cfg.reps
            );
            match child(name, Phase::OneRep) {
                Ok(r) => {
                    spent[i] += r.wall.iter().sum::<f64>();
                    results[i].merge(r);
                }
                Err(e) => results[i].error = Some(e),
            }
        }
    }
    for (i, (name, _)) in names.iter().enumerate() {
        step += 1;
        if results[i].error.is_some() {
            continue;
        }
        eprintln!("region-bench: [{step}/{total}] efficiency and latency: {name}");
        match child(name, Phase::Rest) {
            Ok(r) => results[i].merge(r),
            Err(e) => results[i].error = Some(e),
        }
    }
    results
}
