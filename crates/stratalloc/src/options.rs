//! Options read from the environment at start-up, without allocating:
//! `libc::getenv` returns a pointer into the environment block, and paths are
//! copied into fixed buffers.
//!
//! | variable | values | meaning |
//! |---|---|---|
//! | `STRATALLOC_STRATEGY` | `engine` or a core strategy name | which allocator serves the process |
//! | `STRATALLOC_STATS` | `1` or a path | statistics report at exit (stderr or the file) |
//! | `STRATALLOC_LEAKS` | `1` or a path | leak check at exit: blocks no pointer reaches, grouped by call site |
//! | `STRATALLOC_LEAKS_REACHABLE` | `1` | the leak report also lists the blocks still reachable |
//! | `STRATALLOC_LEAKS_SUPPRESS` | a path | suppressions: lines `leak:NAME` (a function or library name in the stack) |
//! | `STRATALLOC_LEAKS_EXITCODE` | a number | exit status when leaks are found (default 23; 0: leave it) |
//! | `STRATALLOC_CHECK` | `1` | canaries, poisoning, double/invalid free checks |
//! | `STRATALLOC_THP` | `1` | the engine asks for transparent huge pages on its segments (`madvise(MADV_HUGEPAGE)`) |
//! | `STRATALLOC_TRACE` | a path | every event to a binary trace file |
//! | `STRATALLOC_PROFILE` | `1` or a path | allocation profile at exit: JSON, or HTML and JSON if the path ends in `.html` (`1`: `stratalloc-profile.<pid>.html`) |
//! | `STRATALLOC_PROFILE_SAMPLE` | `N` | profile: capture the stack of one allocation in `N` (at random) |
//! | `STRATALLOC_SUMMARY` | `1` or a path | a one-line summary at exit (peak heap, peak RSS, allocations) |
//! | `STRATALLOC_ONLY_CHILD_OF` | a pid | set by `stratalloc run`: only a process whose parent has this pid reports; in any other (the started program's descendants) every wrapper is off |

use core::ffi::CStr;

use stratalloc_core::Strategy;

/// Which allocator serves the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The thread-caching engine (the default).
    Engine,
    /// A core strategy over regions mapped from the OS.
    Strategy(Strategy),
}

/// Where a report goes.
// The path is held inline (257 bytes in all): options are parsed inside the
// first `malloc`, where boxing it would allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// No report.
    Off,
    /// The wrapper runs but writes no report at exit (a Rust program reads
    /// the figures with `stratalloc::stats()`).
    Quiet,
    /// Standard error.
    Stderr,
    /// A file (NUL-terminated path in a fixed buffer).
    Path(PathBuf),
}

/// A NUL-terminated path of at most 255 bytes, held without allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PathBuf {
    bytes: [u8; 256],
}

impl PathBuf {
    /// `b` as a path, or `None` if it is empty, longer than 255 bytes or
    /// holds a NUL byte. A `const fn`, so a `static` can hold one.
    pub const fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.is_empty() || b.len() > 255 {
            return None;
        }
        let mut bytes = [0u8; 256];
        let mut i = 0;
        while i < b.len() {
            if b[i] == 0 {
                return None;
            }
            bytes[i] = b[i];
            i += 1;
        }
        Some(PathBuf { bytes })
    }

    /// The path as a C string.
    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }
}

impl core::fmt::Debug for PathBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_cstr())
    }
}

impl core::fmt::Debug for Output {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Output::Off => f.write_str("Off"),
            Output::Quiet => f.write_str("Quiet"),
            Output::Stderr => f.write_str("Stderr"),
            Output::Path(p) => write!(f, "Path({p:?})"),
        }
    }
}

/// How the leak check reports (`STRATALLOC_LEAKS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakOptions {
    /// List the blocks still reachable too.
    pub reachable: bool,
    /// Exit status when leaks are found (0: the program's own).
    pub exitcode: u8,
    /// Suppressions file.
    pub suppress: Option<PathBuf>,
}

impl LeakOptions {
    /// LeakSanitizer's defaults: leaks only, exit status 23.
    pub const DEFAULT: LeakOptions = LeakOptions {
        reachable: false,
        exitcode: 23,
        suppress: None,
    };
}

/// Everything the environment asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Which allocator.
    pub choice: Choice,
    /// `STRATALLOC_STRATEGY` held a name that is no strategy (the engine is
    /// used, and the front end prints the valid names once).
    pub unknown_strategy: bool,
    /// Statistics report.
    pub stats: Output,
    /// Leak report.
    pub leaks: Output,
    /// How the leak check reports.
    pub leak: LeakOptions,
    /// Check mode.
    pub check: bool,
    /// The engine's segments are mapped with `MADV_HUGEPAGE`.
    pub thp: bool,
    /// Trace file.
    pub trace: Option<PathBuf>,
    /// Allocation profile.
    pub profile: Output,
    /// Profile: one allocation in this many has its stack captured (1: all).
    pub profile_sample: u32,
    /// One-line summary at exit.
    pub summary: Output,
    /// Only a process whose parent has this pid reports.
    pub only_child_of: Option<u32>,
}

impl Options {
    /// The defaults: the engine, no wrappers.
    pub const DEFAULT: Options = Options {
        choice: Choice::Engine,
        unknown_strategy: false,
        stats: Output::Off,
        leaks: Output::Off,
        leak: LeakOptions::DEFAULT,
        check: false,
        thp: false,
        trace: None,
        profile: Output::Off,
        profile_sample: 1,
        summary: Output::Off,
        only_child_of: None,
    };

    /// `true` when any wrapper is asked for.
    pub fn any_wrapper(&self) -> bool {
        self.stats != Output::Off
            || self.leaks != Output::Off
            || self.check
            || self.trace.is_some()
            || self.profile != Output::Off
            || self.summary != Output::Off
    }

    /// These options as they apply to a process whose parent is `ppid`:
    /// with [`only_child_of`](Self::only_child_of) set to another pid, the
    /// strategy alone (no wrapper, no report).
    pub fn for_parent(self, ppid: u32) -> Options {
        match self.only_child_of {
            Some(p) if p != ppid => Options {
                choice: self.choice,
                unknown_strategy: self.unknown_strategy,
                ..Options::DEFAULT
            },
            _ => self,
        }
    }

    /// Parse from a lookup function (the environment in production, a table
    /// in tests).
    pub fn parse<'e>(get: impl Fn(&str) -> Option<&'e [u8]>) -> Options {
        Options::parse_over(Options::DEFAULT, get)
    }

    /// `base` with every variable that `get` finds applied over it (a
    /// variable that is not set leaves `base`'s setting; one set to `0` or
    /// the empty string turns it off).
    pub fn parse_over<'e>(base: Options, get: impl Fn(&str) -> Option<&'e [u8]>) -> Options {
        let mut o = base;
        if let Some(v) = get("STRATALLOC_STRATEGY") {
            if v == b"engine" || v.is_empty() {
                o.choice = Choice::Engine;
            } else {
                match Strategy::from_bytes(v) {
                    Ok(s) => o.choice = Choice::Strategy(s),
                    Err(_) => o.unknown_strategy = true,
                }
            }
        }
        let output = |v: &[u8]| match v {
            b"" | b"0" => Output::Off,
            b"1" | b"stderr" => Output::Stderr,
            p => PathBuf::from_bytes(p).map_or(Output::Stderr, Output::Path),
        };
        if let Some(v) = get("STRATALLOC_STATS") {
            o.stats = output(v);
        }
        if let Some(v) = get("STRATALLOC_LEAKS") {
            o.leaks = output(v);
        }
        if let Some(v) = get("STRATALLOC_CHECK") {
            o.check = !matches!(v, b"" | b"0");
        }
        if let Some(v) = get("STRATALLOC_THP") {
            o.thp = v == b"1";
        }
        if let Some(v) = get("STRATALLOC_TRACE") {
            o.trace = PathBuf::from_bytes(v);
        }
        o.profile = match get("STRATALLOC_PROFILE").map(output) {
            None => o.profile,
            // The profile is a file (JSON or HTML), never text on stderr.
            Some(Output::Stderr) => {
                PathBuf::from_bytes(DEFAULT_PROFILE).map_or(Output::Off, Output::Path)
            }
            Some(p) => p,
        };
        if let Some(n) = get("STRATALLOC_PROFILE_SAMPLE") {
            o.profile_sample = parse_u32(n).map_or(1, |n| n.max(1));
        }
        if let Some(v) = get("STRATALLOC_SUMMARY") {
            o.summary = output(v);
        }
        if let Some(v) = get("STRATALLOC_ONLY_CHILD_OF") {
            o.only_child_of = parse_u32(v);
        }
        if let Some(v) = get("STRATALLOC_LEAKS_REACHABLE") {
            o.leak.reachable = !matches!(v, b"" | b"0");
        }
        if let Some(v) = get("STRATALLOC_LEAKS_EXITCODE") {
            let n = core::str::from_utf8(v)
                .ok()
                .and_then(|t| t.trim().parse::<u8>().ok());
            o.leak.exitcode = n.unwrap_or(LeakOptions::DEFAULT.exitcode);
        }
        if let Some(v) = get("STRATALLOC_LEAKS_SUPPRESS") {
            o.leak.suppress = PathBuf::from_bytes(v);
        }
        o
    }

    /// Read the process environment, as it applies to this process (see
    /// [`for_parent`](Self::for_parent)). Does not allocate.
    pub fn from_env() -> Options {
        Options::from_env_over(Options::DEFAULT)
    }

    /// `base` with the process environment applied over it (see
    /// [`parse_over`](Self::parse_over)), as it applies to this process (see
    /// [`for_parent`](Self::for_parent)). Does not allocate.
    pub fn from_env_over(base: Options) -> Options {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as u32;
        Options::parse_over(base, |name: &str| -> Option<&'static [u8]> {
            let mut key = [0u8; 64];
            key[..name.len()].copy_from_slice(name.as_bytes());
            // SAFETY: `key` is NUL-terminated; getenv returns null or a
            // pointer to a NUL-terminated string in the environment block,
            // which lives for the process (we do not call setenv).
            let v = unsafe { libc::getenv(key.as_ptr().cast()) };
            if v.is_null() {
                None
            } else {
                // SAFETY: as above.
                Some(unsafe { CStr::from_ptr(v) }.to_bytes())
            }
        })
        .for_parent(ppid)
    }
}

/// Where `STRATALLOC_PROFILE=1` writes (in the working directory).
pub const DEFAULT_PROFILE: &[u8] = b"stratalloc-profile.%p.html";

/// A decimal number of at most 9 digits.
fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, d| n * 10 + (d - b'0') as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |k| pairs.iter().find(|p| p.0 == k).map(|p| p.1.as_bytes())
    }

    #[test]
    fn parses_every_variable() {
        let o = Options::parse(env(&[
            ("STRATALLOC_STRATEGY", "bump"),
            ("STRATALLOC_STATS", "1"),
            ("STRATALLOC_LEAKS", "/tmp/leaks.txt"),
            ("STRATALLOC_CHECK", "1"),
            ("STRATALLOC_TRACE", "/tmp/t.trace"),
            ("STRATALLOC_THP", "1"),
        ]));
        assert!(o.thp);
        assert!(!Options::parse(env(&[("STRATALLOC_THP", "0")])).thp);
        assert!(!Options::parse(env(&[])).thp);
        assert_eq!(o.choice, Choice::Strategy(Strategy::Bump));
        assert_eq!(o.stats, Output::Stderr);
        assert!(matches!(o.leaks, Output::Path(p) if p.as_cstr().to_bytes() == b"/tmp/leaks.txt"));
        assert!(o.check);
        assert_eq!(o.trace.unwrap().as_cstr().to_bytes(), b"/tmp/t.trace");
        assert!(o.any_wrapper());
    }

    #[test]
    fn leak_options() {
        assert_eq!(Options::parse(env(&[])).leak, LeakOptions::DEFAULT);
        let o = Options::parse(env(&[
            ("STRATALLOC_LEAKS_REACHABLE", "1"),
            ("STRATALLOC_LEAKS_EXITCODE", "0"),
            ("STRATALLOC_LEAKS_SUPPRESS", "/tmp/supp"),
        ]));
        assert!(o.leak.reachable);
        assert_eq!(o.leak.exitcode, 0);
        assert_eq!(o.leak.suppress.unwrap().as_cstr().to_bytes(), b"/tmp/supp");
        let bad = Options::parse(env(&[("STRATALLOC_LEAKS_EXITCODE", "many")]));
        assert_eq!(bad.leak.exitcode, 23);
    }

    #[test]
    fn unknown_strategy_falls_back_to_engine() {
        let o = Options::parse(env(&[("STRATALLOC_STRATEGY", "quantum")]));
        assert_eq!(o.choice, Choice::Engine);
        assert!(o.unknown_strategy);
        assert_eq!(Options::parse(env(&[])), Options::DEFAULT);
    }

    #[test]
    fn the_environment_overrides_a_base_only_where_set() {
        let mut base = Options::DEFAULT;
        base.choice = Choice::Strategy(Strategy::Tlsf);
        base.stats = Output::Quiet;
        base.check = true;
        assert_eq!(Options::parse_over(base, env(&[])), base);
        let o = Options::parse_over(
            base,
            env(&[("STRATALLOC_STATS", "0"), ("STRATALLOC_STRATEGY", "buddy")]),
        );
        assert_eq!(o.choice, Choice::Strategy(Strategy::Buddy));
        assert_eq!(o.stats, Output::Off);
        assert!(o.check);
        assert_eq!(PathBuf::from_bytes(b"a\0b"), None);
    }

    #[test]
    fn profile_summary_and_sampling() {
        let o = Options::parse(env(&[
            ("STRATALLOC_PROFILE", "/tmp/p.html"),
            ("STRATALLOC_PROFILE_SAMPLE", "16"),
            ("STRATALLOC_SUMMARY", "1"),
        ]));
        assert!(matches!(o.profile, Output::Path(p) if p.as_cstr().to_bytes() == b"/tmp/p.html"));
        assert_eq!(o.profile_sample, 16);
        assert_eq!(o.summary, Output::Stderr);
        assert!(o.any_wrapper());
        let o = Options::parse(env(&[
            ("STRATALLOC_PROFILE", "1"),
            ("STRATALLOC_PROFILE_SAMPLE", "x"),
        ]));
        assert!(matches!(o.profile, Output::Path(p) if p.as_cstr().to_bytes() == DEFAULT_PROFILE));
        assert_eq!(o.profile_sample, 1);
    }

    #[test]
    fn only_the_child_of_the_named_process_reports() {
        let o = Options::parse(env(&[
            ("STRATALLOC_STRATEGY", "tlsf"),
            ("STRATALLOC_STATS", "1"),
            ("STRATALLOC_CHECK", "1"),
            ("STRATALLOC_ONLY_CHILD_OF", "4242"),
        ]));
        assert_eq!(o.only_child_of, Some(4242));
        assert_eq!(o.for_parent(4242), o);
        let grandchild = o.for_parent(4243);
        assert!(!grandchild.any_wrapper());
        assert_eq!(grandchild.choice, Choice::Strategy(Strategy::Tlsf));
    }
}
