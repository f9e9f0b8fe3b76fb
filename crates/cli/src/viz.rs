//! Heap maps: a strategy replays a trace, and at evenly spaced moments the
//! heap is walked (`RegionHeap::walk`); each walk becomes one column of a
//! picture whose vertical axis is the address (offset in the region, low at
//! the top) and whose colour says what the bytes are:
//!
//! ```text
//!   time →   col 0  col 1  col 2 ...
//!   addr 0   ████   ████   ████      █ used   (blue)
//!     ↓      ░░░░   ████   ░░░░      ░ free   (light grey)
//!            ▓▓▓▓   ▓▓▓▓   ▓▓▓▓      ▓ overhead: headers, padding (orange)
//!                          ████        untouched: white (above the high-water mark)
//! ```
//!
//! Each cell shows the state holding most bytes of its address range; free
//! bytes above the highest block end reached so far count as untouched. The
//! address axis stops a little above the replay's final high-water mark, so
//! the untouched rest of the region does not swamp the picture. Written as
//! PNG and SVG (plotters; the SVG also gets text labels) and as a text map
//! for the terminal (there, time runs down and addresses across).

use std::path::Path;

use plotters::prelude::*;
use stratalloc::__private::trace::Trace;
use stratalloc_core::{BlockState, Strategy};

use crate::replay::{region_len, Replayer};

/// Cell states.
pub const UNTOUCHED: u8 = 0;
/// A used block.
pub const USED: u8 = 1;
/// A free block.
pub const FREE: u8 = 2;
/// Metadata and padding.
pub const OVERHEAD: u8 = 3;

/// A heap map: `cols` snapshots × `rows` address bins.
pub struct Grid {
    /// Snapshots (time).
    pub cols: usize,
    /// Address bins.
    pub rows: usize,
    /// Bytes of address space per bin.
    pub bin: usize,
    /// `cells[col * rows + row]`, one of the state constants.
    pub cells: Vec<u8>,
    /// Event index of each column's snapshot.
    pub at: Vec<usize>,
    /// High-water mark of the replay, bytes.
    pub high_water: usize,
}

/// Replay `trace` on `s`, walking the heap `cols` times, and bin each walk
/// into `rows` address ranges.
pub fn grid(trace: &Trace, s: Strategy, cols: usize, rows: usize) -> Result<Grid, String> {
    let n = trace.events.len();
    let cols = cols.clamp(1, n.max(1));
    let mut r = Replayer::new(s, region_len(trace), trace.ids, true)?;
    let mut walks = Vec::with_capacity(cols);
    let mut at = Vec::with_capacity(cols);
    let mut reached = Vec::with_capacity(cols);
    let mut next = 0;
    for c in 0..cols {
        let target = (c + 1) * n / cols;
        while next < target {
            r.step(&trace.events[next].op);
            next += 1;
        }
        walks.push(r.walk());
        at.push(next);
        reached.push(r.high_water);
    }
    let high = r.high_water.max(4096);
    let top = high + high / 20;
    let rows = rows.max(1);
    let bin = top.div_ceil(rows);
    let mut cells = vec![UNTOUCHED; cols * rows];
    let mut bytes = vec![[0usize; 4]; rows];
    for (c, w) in walks.iter().enumerate() {
        for b in bytes.iter_mut() {
            *b = [0; 4];
        }
        for span in w {
            let st = match span.state {
                BlockState::Used => USED,
                BlockState::Free => FREE,
                BlockState::Overhead => OVERHEAD,
            } as usize;
            let (mut lo, hi) = (span.addr, (span.addr + span.size).min(top));
            while lo < hi {
                let row = lo / bin;
                let end = ((row + 1) * bin).min(hi);
                bytes[row][st] += end - lo;
                lo = end;
            }
        }
        for (row, b) in bytes.iter().enumerate() {
            // Above the high-water mark reached so far nothing was ever
            // handed out: free bytes there are the untouched rest of the
            // region.
            let untouched_free = row * bin >= reached[c];
            let mut best = UNTOUCHED;
            let mut most = 0;
            for st in [USED, FREE, OVERHEAD] {
                let v = b[st as usize];
                if v > most && !(untouched_free && st == FREE) {
                    best = st;
                    most = v;
                }
            }
            cells[c * rows + row] = best;
        }
    }
    Ok(Grid {
        cols,
        rows,
        bin,
        cells,
        at,
        high_water: high,
    })
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(255, 255, 255),
    RGBColor(49, 104, 176),
    RGBColor(214, 214, 214),
    RGBColor(230, 126, 34),
];

const LEFT: u32 = 90;
const TOP: u32 = 40;
const BOTTOM: u32 = 60;
const RIGHT: u32 = 20;
const CELL_W: u32 = 5;

fn size_of(g: &Grid) -> (u32, u32) {
    (
        LEFT + RIGHT + g.cols as u32 * CELL_W,
        TOP + BOTTOM + g.rows as u32,
    )
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    g: &Grid,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    // Frame.
    let (x0, y0) = (LEFT as i32, TOP as i32);
    let (x1, y1) = (x0 + (g.cols as u32 * CELL_W) as i32, y0 + g.rows as i32);
    for c in 0..g.cols {
        let col = &g.cells[c * g.rows..(c + 1) * g.rows];
        let mut start = 0;
        while start < g.rows {
            let st = col[start];
            let mut end = start + 1;
            while end < g.rows && col[end] == st {
                end += 1;
            }
            if st != UNTOUCHED {
                let x = x0 + (c as u32 * CELL_W) as i32;
                root.draw(&Rectangle::new(
                    [(x, y0 + start as i32), (x + CELL_W as i32, y0 + end as i32)],
                    COLOURS[st as usize].filled(),
                ))
                .map_err(err)?;
            }
            start = end;
        }
    }
    root.draw(&Rectangle::new([(x0 - 1, y0 - 1), (x1 + 1, y1 + 1)], BLACK))
        .map_err(err)?;
    // Legend swatches (their labels come from `labels`).
    for (i, st) in [USED, FREE, OVERHEAD].into_iter().enumerate() {
        let x = x0 + i as i32 * 130;
        let y = y1 + 30;
        root.draw(&Rectangle::new(
            [(x, y), (x + 16, y + 16)],
            COLOURS[st as usize].filled(),
        ))
        .map_err(err)?;
        root.draw(&Rectangle::new([(x, y), (x + 16, y + 16)], BLACK))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Render the map into an RGB buffer (for tests).
#[cfg(test)]
pub fn render_rgb(g: &Grid) -> Result<(Vec<u8>, (u32, u32)), String> {
    let dims = size_of(g);
    let mut buf = vec![0u8; (dims.0 * dims.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, dims).into_drawing_area();
        draw(root, g)?;
    }
    Ok((buf, dims))
}

fn human(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// Where a label is anchored horizontally.
#[derive(Clone, Copy)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// The title, axis labels and legend text, with their positions: one list
/// for both the SVG and the PNG.
fn labels(g: &Grid, title: &str) -> Vec<(u32, u32, Anchor, String)> {
    let (x1, y1) = (LEFT + g.cols as u32 * CELL_W, TOP + g.rows as u32);
    let mut v = vec![
        (LEFT, 24, Anchor::Start, title.to_string()),
        (LEFT - 6, TOP + 10, Anchor::End, "0".to_string()),
        (LEFT - 6, y1, Anchor::End, human(g.rows * g.bin)),
        (
            LEFT - 6,
            TOP + g.rows as u32 / 2,
            Anchor::End,
            "address".to_string(),
        ),
        (LEFT, y1 + 18, Anchor::Start, "event 0".to_string()),
        (
            x1,
            y1 + 18,
            Anchor::End,
            format!("event {}", g.at.last().copied().unwrap_or(0)),
        ),
        (
            (LEFT + x1) / 2,
            y1 + 18,
            Anchor::Middle,
            "time (operations) →".to_string(),
        ),
    ];
    for (i, label) in ["used", "free", "overhead"].iter().enumerate() {
        v.push((
            LEFT + i as u32 * 130 + 22,
            y1 + 43,
            Anchor::Start,
            label.to_string(),
        ));
    }
    v
}

/// Fonts for the PNG's text: plotters draws bitmap text with a TrueType
/// font registered at run time (DejaVu Sans from Debian's
/// fonts-dejavu-core, which scripts/deps.sh installs; `STRATALLOC_FONT`
/// names another file). `false` when no font could be loaded: the PNG is
/// then drawn without text and the caller says so.
pub fn png_fonts_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        let mut candidates: Vec<std::path::PathBuf> = Vec::new();
        if let Some(f) = std::env::var_os("STRATALLOC_FONT") {
            candidates.push(f.into());
        }
        candidates.push("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into());
        candidates.push("/usr/share/fonts/TTF/DejaVuSans.ttf".into());
        for c in candidates {
            if let Ok(bytes) = std::fs::read(&c) {
                // plotters keeps a &'static reference to the font for the
                // life of the process; this runs once.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn draw_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    g: &Grid,
    title: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    for (x, y, anchor, s) in labels(g, title) {
        let h = match anchor {
            Anchor::Start => HPos::Left,
            Anchor::Middle => HPos::Center,
            Anchor::End => HPos::Right,
        };
        let style = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(h, VPos::Bottom));
        root.draw(&Text::new(s, (x as i32, y as i32), style))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Write the map as a PNG, with a title, axis labels and a legend when a
/// font is available (see [`png_fonts_ready`]).
pub fn write_png(g: &Grid, path: &Path, title: &str) -> Result<(), String> {
    let root = BitMapBackend::new(path, size_of(g)).into_drawing_area();
    draw(root.clone(), g)?;
    if png_fonts_ready() {
        draw_labels(&root, g, title)?;
    }
    Ok(())
}

/// Write the map as an SVG with a title, axis labels and a legend.
pub fn write_svg(g: &Grid, path: &Path, title: &str) -> Result<(), String> {
    let dims = size_of(g);
    let mut body = String::new();
    {
        let root = SVGBackend::with_string(&mut body, dims).into_drawing_area();
        draw(root, g)?;
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut text = String::new();
    for (x, y, anchor, s) in labels(g, title) {
        let anchor = match anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        text += &format!(
            "<text x=\"{x}\" y=\"{y}\" font-family=\"sans-serif\" font-size=\"12\" text-anchor=\"{anchor}\">{}</text>\n",
            esc(&s)
        );
    }
    let body = match body.rfind("</svg>") {
        Some(i) => format!("{}{}{}", &body[..i], text, &body[i..]),
        None => body,
    };
    std::fs::write(path, body).map_err(|e| format!("{}: {e}", path.display()))
}

/// The terminal map: `lines` snapshots (time down), `width` address bins
/// across; ANSI colours when `colour`.
pub fn text_map(g: &Grid, lines: usize, width: usize, colour: bool) -> String {
    let lines = lines.clamp(1, g.cols);
    let width = width.max(1);
    let mut s = String::new();
    for l in 0..lines {
        let c = (l + 1) * g.cols / lines - 1;
        s.push_str(&format!("{:>8} |", g.at[c]));
        for x in 0..width {
            let lo = x * g.rows / width;
            let hi = ((x + 1) * g.rows / width).max(lo + 1).min(g.rows);
            let mut count = [0usize; 4];
            for r in lo..hi {
                count[g.cells[c * g.rows + r] as usize] += 1;
            }
            let mut st = UNTOUCHED;
            for k in [USED, FREE, OVERHEAD] {
                if count[k as usize] > count[st as usize] {
                    st = k;
                }
            }
            let ch = [' ', '#', '.', '+'][st as usize];
            if colour && st != UNTOUCHED {
                let code = [0, 34, 37, 33][st as usize];
                s.push_str(&format!("\x1b[{code}m{ch}\x1b[0m"));
            } else {
                s.push(ch);
            }
        }
        s.push_str("|\n");
    }
    s.push_str(&format!(
        "{:>8}  0{:>w$}\n",
        "event",
        human(g.rows * g.bin),
        w = width
    ));
    s.push_str("          # used   . free   + overhead   (blank: never reached)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload;
    use std::collections::HashSet;

    #[test]
    fn maps_show_used_free_and_overhead() {
        let t = workload::mixed(4000, 3);
        for &s in Strategy::ALL {
            let g = grid(&t, s, 40, 120).unwrap();
            assert_eq!(g.cells.len(), 40 * 120);
            assert!(g.cells.contains(&USED), "{s}: no used cell");
            let (buf, _) = render_rgb(&g).unwrap();
            let colours: HashSet<&[u8]> = buf.chunks(3).collect();
            assert!(colours.len() >= 3, "{s}: {} colours", colours.len());
            let text = text_map(&g, 10, 60, false);
            assert_eq!(text.lines().count(), 12);
            assert!(text.contains('#'));
        }
    }
}
