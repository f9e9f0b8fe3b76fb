//! The command's habits, as a user meets them: bad values are errors that
//! name the bad value and the valid ones, help lists the names, a missing
//! `--` gets a hint.

use std::process::{Command, Output};

fn stratalloc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stratalloc"))
        .args(args)
        .output()
        .expect("stratalloc runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const NAMES: [&str; 10] = [
    "engine",
    "bump",
    "first-fit",
    "next-fit",
    "best-fit",
    "worst-fit",
    "segregated",
    "tlsf",
    "buddy",
    "slab",
];

#[test]
fn run_rejects_an_unknown_strategy_naming_it_and_the_valid_ones() {
    let o = stratalloc(&["run", "--strategy", "nope", "--", "/bin/true"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("'nope'"), "{e}");
    for n in NAMES {
        assert!(e.contains(n), "{n} missing from: {e}");
    }
}

#[test]
fn replay_and_viz_reject_an_unknown_strategy_the_same_way() {
    for cmd in ["replay", "viz"] {
        let o = stratalloc(&[cmd, "--strategy", "nope"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {e}");
        assert!(e.contains("'nope'") && e.contains("tlsf"), "{cmd}: {e}");
    }
}

#[test]
fn run_help_lists_the_strategy_names() {
    let o = stratalloc(&["run", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for n in NAMES {
        assert!(help.contains(n), "{n} missing from: {help}");
    }
}

#[test]
fn a_program_without_dashes_gets_a_hint() {
    for args in [
        &["run", "--stats", "python3", "-c", "pass"][..],
        &["run", "/bin/true"][..],
    ] {
        let o = stratalloc(args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains("put -- before the program"), "{args:?}: {e}");
        assert!(e.contains("stratalloc run"), "{args:?}: {e}");
    }
}
