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
//! | `STRATALLOC_TRACE` | a path | every event to a binary trace file |

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
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.is_empty() || b.len() > 255 {
            return None;
        }
        let mut bytes = [0u8; 256];
        bytes[..b.len()].copy_from_slice(b);
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
    /// Trace file.
    pub trace: Option<PathBuf>,
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
        trace: None,
    };

    /// `true` when any wrapper is asked for.
    pub fn any_wrapper(&self) -> bool {
        self.stats != Output::Off || self.leaks != Output::Off || self.check || self.trace.is_some()
    }

    /// Parse from a lookup function (the environment in production, a table
    /// in tests).
    pub fn parse<'e>(get: impl Fn(&str) -> Option<&'e [u8]>) -> Options {
        let mut o = Options::DEFAULT;
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
        let output = |v: Option<&[u8]>| match v {
            None | Some(b"") | Some(b"0") => Output::Off,
            Some(b"1") | Some(b"stderr") => Output::Stderr,
            Some(p) => PathBuf::from_bytes(p).map_or(Output::Stderr, Output::Path),
        };
        o.stats = output(get("STRATALLOC_STATS"));
        o.leaks = output(get("STRATALLOC_LEAKS"));
        o.leak.reachable = !matches!(
            get("STRATALLOC_LEAKS_REACHABLE"),
            None | Some(b"") | Some(b"0")
        );
        if let Some(v) = get("STRATALLOC_LEAKS_EXITCODE") {
            let n = core::str::from_utf8(v)
                .ok()
                .and_then(|t| t.trim().parse::<u8>().ok());
            o.leak.exitcode = n.unwrap_or(LeakOptions::DEFAULT.exitcode);
        }
        o.leak.suppress = get("STRATALLOC_LEAKS_SUPPRESS").and_then(PathBuf::from_bytes);
        o.check = !matches!(get("STRATALLOC_CHECK"), None | Some(b"") | Some(b"0"));
        o.trace = get("STRATALLOC_TRACE").and_then(PathBuf::from_bytes);
        o
    }

    /// Read the process environment. Does not allocate.
    pub fn from_env() -> Options {
        Options::parse(|name: &str| -> Option<&'static [u8]> {
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
    }
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
        ]));
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
}
