//! Options read from the environment at start-up, without allocating:
//! `libc::getenv` returns a pointer into the environment block, and paths are
//! copied into fixed buffers.
//!
//! | variable | values | meaning |
//! |---|---|---|
//! | `STRATALLOC_STRATEGY` | `engine` or a core strategy name | which allocator serves the process |
//! | `STRATALLOC_STATS` | `1` or a path | statistics report at exit (stderr or the file) |
//! | `STRATALLOC_LEAKS` | `1` or a path | leak report at exit, grouped by call site |
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
        if let Some(v) = get("STRATALLOC_TRACE") {
            o.trace = PathBuf::from_bytes(v);
        }
        o
    }

    /// Read the process environment. Does not allocate.
    pub fn from_env() -> Options {
        Options::from_env_over(Options::DEFAULT)
    }

    /// `base` with the process environment applied over it (see
    /// [`parse_over`](Self::parse_over)). Does not allocate.
    pub fn from_env_over(base: Options) -> Options {
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
}
