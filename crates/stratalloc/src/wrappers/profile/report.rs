//! The profile at exit: JSON (the data), and the HTML page (`report.html`
//! with the JSON inlined) when the path ends in `.html`. Runs after tracking
//! stopped, so it may allocate; symbolizes with the leak wrapper's
//! [`symbolize`].
//!
//! The JSON (`"format": "stratalloc-profile"`, version 1):
//!
//! ```text
//!   pid, cmdline, backend, duration_ns, sample_every, leaks ("live at exit")
//!   totals    allocations, frees, bytes_allocated, temporary, peak_heap,
//!             peak_blocks, peak_time_ns, peak_rss, live_at_exit,
//!             live_blocks_at_exit, untracked
//!   timeline  [[t_ns, heap bytes (max since the previous point), rss], …]
//!   frames    [{function, file, line, object}, …]   (each logical frame once)
//!   sites     [{allocations, bytes, peak, peak_blocks, temporary, leaked,
//!              leaked_blocks, stack: [frame index, innermost first]}, …]
//! ```
//!
//! Site figures are multiplied by `sample_every` (see the module docs of
//! the wrapper); the internal frames (this library, the allocation
//! functions) at the top of each stack are left out.

use std::collections::HashMap;
use std::fmt::Write;

use super::{rss, Profile};
use crate::options::Output;
use crate::wrappers::leaks::{symbolize, DEPTH};
use crate::wrappers::sys::{cmdline, expand_path, peak_rss, pid};

/// The page, with `__STRATALLOC_PROFILE_DATA__` where the JSON goes.
const PAGE: &str = include_str!("report.html");
const PLACEHOLDER: &str = "__STRATALLOC_PROFILE_DATA__";

/// A JSON string literal of `s`; `<` is escaped so the JSON can sit inside
/// a `<script>` element.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Logical frames, each written once, in the order stacks use them.
#[derive(Default)]
struct Frames {
    json: Vec<String>,
    index: HashMap<String, usize>,
    /// Per address: its logical frames (as JSON), innermost first, and
    /// whether each is internal.
    by_ip: HashMap<usize, Vec<(String, bool)>>,
}

impl Frames {
    /// The logical frames at `ip`, innermost first: (JSON, internal).
    fn at(&mut self, ip: usize) -> Vec<(String, bool)> {
        self.by_ip
            .entry(ip)
            .or_insert_with(|| {
                symbolize(ip)
                    .into_iter()
                    .map(|f| {
                        // An unnamed function keeps its offset: two of
                        // them are two call sites, not one.
                        let object = if f.name == "??" {
                            &f.object[..]
                        } else {
                            f.object.split('+').next().unwrap_or("?")
                        };
                        let mut j = String::from("{\"function\":");
                        json_str(&mut j, &f.name);
                        j.push_str(",\"file\":");
                        match &f.file {
                            Some(file) => json_str(&mut j, file),
                            None => j.push_str("null"),
                        }
                        let _ = write!(j, ",\"line\":{},\"object\":", f.line.unwrap_or(0));
                        json_str(&mut j, object);
                        j.push('}');
                        (j, f.internal)
                    })
                    .collect()
            })
            .clone()
    }

    /// The index of a frame (added if new).
    fn index(&mut self, json: String) -> usize {
        let n = self.json.len();
        *self.index.entry(json).or_insert_with_key(|j| {
            self.json.push(j.clone());
            n
        })
    }
}

/// The profile as JSON.
pub(super) fn json(p: &Profile) -> String {
    let now = p.clock.now();
    let mut st = p.state.lock();
    // The largest heap since the last point, then the heap at exit.
    let rss_now = rss();
    st.sample(now, rss_now);
    st.sample(now, rss_now);
    st.settle();
    let n = p.sample as u64;
    let mut out = String::with_capacity(1 << 16);
    let mut buf = [0u8; 4096];
    let _ = write!(
        out,
        "{{\"format\":\"stratalloc-profile\",\"version\":1,\"pid\":{},\"cmdline\":",
        pid()
    );
    json_str(&mut out, cmdline(&mut buf));
    out.push_str(",\"backend\":");
    json_str(&mut out, p.name);
    let _ = write!(
        out,
        ",\"duration_ns\":{now},\"sample_every\":{n},\"leaks\":\"live at exit\",\
         \"totals\":{{\"allocations\":{},\"frees\":{},\"bytes_allocated\":{},\"temporary\":{},\
         \"peak_heap\":{},\"peak_blocks\":{},\"peak_time_ns\":{},\"peak_rss\":{},\
         \"live_at_exit\":{},\"live_blocks_at_exit\":{},\"untracked\":{}}},\"timeline\":[",
        st.allocs,
        st.frees,
        st.bytes,
        st.temporary,
        st.peak,
        st.peak_blocks,
        st.peak_t,
        peak_rss(),
        st.live,
        st.live_blocks,
        p.untracked.load(core::sync::atomic::Ordering::Relaxed)
    );
    for (i, s) in st.samples().iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}[{},{},{}]", s.t, s.heap, s.rss);
    }
    out.push_str("],\"sites\":[");
    let mut sites = Vec::new();
    st.for_each_site(|id, s| sites.push((id, *s)));
    drop(st);
    let mut frames = Frames::default();
    for (i, (id, s)) in sites.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"allocations\":{},\"bytes\":{},\"peak\":{},\"peak_blocks\":{},\"temporary\":{},\
             \"leaked\":{},\"leaked_blocks\":{},\"stack\":[",
            if i == 0 { "" } else { "," },
            s.allocs * n,
            s.bytes * n,
            s.peak * n,
            s.peak_blocks * n,
            s.temporary * n,
            s.live * n,
            s.live_blocks * n
        );
        let mut ips = [0usize; DEPTH];
        let k = p.stacks.frames(*id, &mut ips);
        let mut leading = true;
        let mut first = true;
        for &ip in &ips[..k] {
            for (f, internal) in frames.at(ip) {
                if leading && internal {
                    continue;
                }
                leading = false;
                let f = frames.index(f);
                let _ = write!(out, "{}{f}", if first { "" } else { "," });
                first = false;
            }
        }
        out.push_str("]}");
    }
    out.push_str("],\"frames\":[");
    out.push_str(&frames.json.join(","));
    out.push_str("]}\n");
    out
}

/// The page with `json` inlined.
pub(super) fn html(json: &str) -> String {
    PAGE.replacen(PLACEHOLDER, json.trim_end(), 1)
}

/// Write the profile where the options said (at exit).
pub(super) fn write(p: &Profile) {
    let Output::Path(path) = &p.out else {
        return;
    };
    let mut buf = [0u8; 300];
    expand_path(path, &mut buf);
    let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let Ok(path) = std::str::from_utf8(&buf[..len]) else {
        return;
    };
    let data = json(p);
    let result = match path.strip_suffix(".html") {
        Some(stem) => std::fs::write(format!("{stem}.json"), &data)
            .and_then(|_| std::fs::write(path, html(&data))),
        None => std::fs::write(path, &data),
    };
    if let Err(e) = result {
        crate::eprint_noalloc!("stratalloc: cannot write the profile to {}: {}\n", path, e);
    }
}
