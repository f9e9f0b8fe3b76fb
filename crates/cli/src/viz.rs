//! Heap maps: a strategy replays a trace, and at evenly spaced moments the
//! heap is walked (`RegionHeap::walk`); each walk becomes one column of a
//! picture whose vertical axis is the address (offset above the region's
//! own metadata, low at the top) and whose colour says what the bytes are:
//!
//! ```text
//!   time →   col 0  col 1  col 2 ...
//!   addr 0   ████   ████   ████      █ used: bytes the program asked for (blue)
//!     ↓      ░░░░   ████   ░░░░      ▓ overhead: headers, padding, rounding (orange)
//!            ▓▓▓▓   ▓▓▓▓   ▓▓▓▓      ░ free (light grey)
//!                          ████        never reached: white
//! ```
//!
//! "Overhead" means what the replay table's column means: bytes a strategy
//! holds for live blocks beyond the bytes asked for. The index a strategy
//! keeps over its whole region (sized by the replay's region, not by the
//! program) is left out: the axis starts after it and ends a little above
//! the top block end, so the picture shows the part of the region the
//! program used. Several strategies are drawn side by side to one address
//! scale, so a strategy that spreads out looks taller. Each cell shows the
//! state holding most bytes of its address range; free bytes above the
//! top reached so far are "never reached". Written as PNG and SVG (plotters;
//! the SVG also gets text labels) and as a text map for the terminal
//! (there, time runs down and addresses across).

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

/// One strategy replaying a trace, walked at evenly spaced moments; each
/// walk is kept binned finely (bytes of each state per `fine` bytes of
/// address), so maps of several strategies can share one address scale.
pub struct Snapshots {
    /// The strategy.
    pub strategy: Strategy,
    /// Bytes of address per fine bin.
    fine: usize,
    /// Per snapshot, per fine bin: bytes used, free, overhead.
    bins: Vec<Vec<[u32; 3]>>,
    /// Per snapshot: the top reached so far (above `base`).
    reached: Vec<usize>,
    /// Event index of each snapshot.
    pub at: Vec<usize>,
    /// The final top: highest block end above the region's metadata.
    pub top: usize,
    /// The region's own metadata before the first block (not drawn).
    pub base: usize,
}

/// Replay `trace` on `s`, walking the heap `cols` times. Each used block is
/// split into the bytes the program asked for (used) and the rest of the
/// block, its header included (overhead), as in the replay table.
pub fn snapshots(trace: &Trace, s: Strategy, cols: usize) -> Result<Snapshots, String> {
    let n = trace.events.len();
    let cols = cols.clamp(1, n.max(1));
    let mut r = Replayer::new(s, region_len(trace), trace.ids, true)?;
    let base = r.base;
    // About 64 Ki fine bins over 8 times the peak of live bytes.
    let fine = ((trace.peak_requested() as usize * 8) >> 16)
        .next_power_of_two()
        .clamp(16, 1 << 20);
    let mut snap = Snapshots {
        strategy: s,
        fine,
        bins: Vec::with_capacity(cols),
        reached: Vec::with_capacity(cols),
        at: Vec::with_capacity(cols),
        top: 0,
        base,
    };
    let mut next = 0;
    for c in 0..cols {
        let target = (c + 1) * n / cols;
        while next < target {
            r.step(&trace.events[next].op);
            next += 1;
        }
        let top = r.top();
        let requested = r.requested();
        let mut bins = vec![[0u32; 3]; top.div_ceil(fine)];
        let mut add = |st: u8, lo: usize, hi: usize| {
            let (mut lo, hi) = (lo.max(base) - base, hi.min(base + top).saturating_sub(base));
            while lo < hi {
                let b = lo / fine;
                let end = ((b + 1) * fine).min(hi);
                bins[b][st as usize - 1] += (end - lo) as u32;
                lo = end;
            }
        };
        for span in r.walk() {
            let end = span.addr + span.size;
            match span.state {
                BlockState::Used => {
                    let want = requested.get(&span.payload).copied().unwrap_or(0) as usize;
                    let mid = (span.payload + want).clamp(span.addr, end);
                    add(OVERHEAD, span.addr, span.payload.clamp(span.addr, end));
                    add(USED, span.payload.clamp(span.addr, end), mid);
                    add(OVERHEAD, mid, end);
                }
                BlockState::Free => add(FREE, span.addr, end),
                BlockState::Overhead => add(OVERHEAD, span.addr, end),
            }
        }
        snap.bins.push(bins);
        snap.reached.push(top);
        snap.at.push(next);
        snap.top = top;
    }
    Ok(snap)
}

/// A heap map: `cols` snapshots × `rows` address bins.
pub struct Grid {
    /// The strategy drawn.
    pub strategy: Strategy,
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
    /// The strategy's top (highest block end above its metadata).
    pub top: usize,
    /// The region's metadata, not drawn.
    pub base: usize,
}

/// Bin `snap` into `rows` address ranges over `span` bytes (at least its
/// top; pass the largest top of several strategies to draw them to one
/// scale). A cell shows the state holding most bytes of its range; free
/// bytes above the top reached so far count as never reached.
pub fn grid(snap: &Snapshots, span: usize, rows: usize) -> Grid {
    let rows = rows.max(1);
    let span = span.max(snap.top).max(4096);
    // A whole number of fine bins per row.
    let per = span.div_ceil(rows).div_ceil(snap.fine).max(1);
    let bin = per * snap.fine;
    let cols = snap.bins.len();
    let mut cells = vec![UNTOUCHED; cols * rows];
    for (c, bins) in snap.bins.iter().enumerate() {
        for row in 0..rows {
            let (lo, hi) = (
                (row * per).min(bins.len()),
                ((row + 1) * per).min(bins.len()),
            );
            let mut b = [0u64; 3];
            for f in &bins[lo..hi] {
                for k in 0..3 {
                    b[k] += f[k] as u64;
                }
            }
            let never_reached = row * bin >= snap.reached[c];
            let mut best = UNTOUCHED;
            let mut most = 0;
            for st in [USED, FREE, OVERHEAD] {
                let v = b[st as usize - 1];
                if v > most && !(never_reached && st == FREE) {
                    best = st;
                    most = v;
                }
            }
            cells[c * rows + row] = best;
        }
    }
    Grid {
        strategy: snap.strategy,
        cols,
        rows,
        bin,
        cells,
        at: snap.at.clone(),
        top: snap.top,
        base: snap.base,
    }
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(255, 255, 255),
    RGBColor(49, 104, 176),
    RGBColor(214, 214, 214),
    RGBColor(230, 126, 34),
];

/// The legend, in drawing order: one entry per colour.
const LEGEND: [(u8, &str); 4] = [
    (USED, "used: bytes the program asked for"),
    (OVERHEAD, "overhead: headers, padding, rounding"),
    (FREE, "free"),
    (UNTOUCHED, "never reached"),
];

const LEFT: u32 = 80;
const TOP: u32 = 70;
const BOTTOM: u32 = 90;
const RIGHT: u32 = 24;
const GAP: u32 = 18;
/// About how wide all panels are together, pixels.
const PANELS_W: u32 = 800;

/// Where each part of a picture of `grids` (side by side) goes.
struct Layout {
    cell_w: u32,
    panel_w: u32,
    rows: u32,
    width: u32,
    height: u32,
}

fn legend_step(label: &str) -> u32 {
    30 + 7 * label.len() as u32
}

fn layout(grids: &[Grid]) -> Layout {
    let n = grids.len().max(1) as u32;
    let cols = grids.iter().map(|g| g.cols).max().unwrap_or(1) as u32;
    let cell_w = (PANELS_W / (cols * n)).clamp(1, 5);
    let panel_w = cols * cell_w;
    let rows = grids.iter().map(|g| g.rows).max().unwrap_or(1) as u32;
    let legend: u32 = LEGEND.iter().map(|(_, l)| legend_step(l)).sum();
    let panels = n * panel_w + (n - 1) * GAP;
    Layout {
        cell_w,
        panel_w,
        rows,
        width: LEFT + RIGHT + panels.max(legend),
        height: TOP + BOTTOM + rows,
    }
}

impl Layout {
    fn panel_x(&self, i: usize) -> u32 {
        LEFT + i as u32 * (self.panel_w + GAP)
    }
}

/// A tick step: the first of 1, 2, 5 × 10^k (or a power of two for
/// `binary`) with at most `most` steps in `span`.
fn tick_step(span: usize, most: usize, binary: bool) -> usize {
    let want = span.div_ceil(most.max(1)).max(1);
    if binary {
        return want.next_power_of_two();
    }
    let mut p = 1usize;
    loop {
        for m in [1, 2, 5] {
            if p * m >= want {
                return p * m;
            }
        }
        p *= 10;
    }
}

/// Address ticks (pixel row, label) and event ticks (offset into a
/// panel, label), shared by every panel.
/// Tick marks: (pixels from the axis start, label).
type Ticks = Vec<(u32, String)>;

fn ticks(grids: &[Grid], l: &Layout) -> (Ticks, Ticks) {
    let Some(g) = grids.first() else {
        return (Vec::new(), Vec::new());
    };
    let span = g.rows * g.bin;
    let step = tick_step(span, 6, true);
    let y = (0..=span / step)
        .map(|i| ((i * step / g.bin) as u32, human(i * step)))
        .collect();
    let events = g.at.last().copied().unwrap_or(0).max(1);
    let step = tick_step(events, 4, false);
    let x = (0..=events / step)
        .map(|i| {
            let v = i * step;
            (
                (v as u64 * l.panel_w as u64 / events as u64) as u32,
                count(v),
            )
        })
        .collect();
    (y, x)
}

/// 1500 -> "1.5k", 2000000 -> "2M".
fn count(v: usize) -> String {
    let (d, unit) = match v {
        0..=999 => return v.to_string(),
        1000..=999_999 => (1e3, "k"),
        _ => (1e6, "M"),
    };
    let x = v as f64 / d;
    if x.fract() == 0.0 {
        format!("{x:.0}{unit}")
    } else {
        format!("{x:.1}{unit}")
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    grids: &[Grid],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let l = layout(grids);
    root.fill(&WHITE).map_err(err)?;
    let y0 = TOP as i32;
    let y1 = y0 + l.rows as i32;
    let (yticks, xticks) = ticks(grids, &l);
    for (i, g) in grids.iter().enumerate() {
        let x0 = l.panel_x(i) as i32;
        let x1 = x0 + l.panel_w as i32;
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
                    let x = x0 + (c as u32 * l.cell_w) as i32;
                    root.draw(&Rectangle::new(
                        [
                            (x, y0 + start as i32),
                            (x + l.cell_w as i32, y0 + end as i32),
                        ],
                        COLOURS[st as usize].filled(),
                    ))
                    .map_err(err)?;
                }
                start = end;
            }
        }
        root.draw(&Rectangle::new([(x0 - 1, y0 - 1), (x1 + 1, y1 + 1)], BLACK))
            .map_err(err)?;
        for (dy, _) in &yticks {
            let y = y0 + *dy as i32;
            root.draw(&PathElement::new([(x0 - 5, y), (x0 - 1, y)], BLACK))
                .map_err(err)?;
        }
        for (dx, _) in &xticks {
            let x = x0 + *dx as i32;
            root.draw(&PathElement::new([(x, y1 + 1), (x, y1 + 5)], BLACK))
                .map_err(err)?;
        }
    }
    // Legend swatches (their labels come from `labels`), white included.
    let mut x = LEFT as i32;
    for (st, label) in LEGEND {
        let y = y1 + 52;
        root.draw(&Rectangle::new(
            [(x, y), (x + 16, y + 16)],
            COLOURS[st as usize].filled(),
        ))
        .map_err(err)?;
        root.draw(&Rectangle::new([(x, y), (x + 16, y + 16)], BLACK))
            .map_err(err)?;
        x += legend_step(label) as i32;
    }
    root.present().map_err(err)
}

/// Render the maps into an RGB buffer (for tests).
#[cfg(test)]
pub fn render_rgb(grids: &[Grid]) -> Result<(Vec<u8>, (u32, u32)), String> {
    let l = layout(grids);
    let dims = (l.width, l.height);
    let mut buf = vec![0u8; (dims.0 * dims.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, dims).into_drawing_area();
        draw(root, grids)?;
    }
    Ok((buf, dims))
}

fn human(b: usize) -> String {
    if b == 0 {
        "0".to_string()
    } else if b >= 1 << 20 {
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

/// The title, panel names, tick labels, axis captions and legend text, with
/// their positions: one list for both the SVG and the PNG.
fn labels(grids: &[Grid], title: &str) -> Vec<(u32, u32, Anchor, String)> {
    let l = layout(grids);
    let y1 = TOP + l.rows;
    let mut v = vec![
        (LEFT, 20, Anchor::Start, title.to_string()),
        (
            LEFT,
            38,
            Anchor::Start,
            "addresses from the end of each strategy's index over its region (not drawn); \
             overhead as in `stratalloc replay`"
                .to_string(),
        ),
    ];
    let (yticks, xticks) = ticks(grids, &l);
    for (dy, s) in yticks {
        v.push((LEFT - 8, TOP + dy + 4, Anchor::End, s));
    }
    v.push((LEFT - 8, TOP - 8, Anchor::End, "address ↓".to_string()));
    for (i, g) in grids.iter().enumerate() {
        let x0 = l.panel_x(i);
        v.push((
            x0,
            TOP - 8,
            Anchor::Start,
            format!("{}: top {}", g.strategy, human(g.top)),
        ));
        for (dx, s) in &xticks {
            v.push((x0 + dx, y1 + 18, Anchor::Middle, s.clone()));
        }
    }
    v.push((
        LEFT,
        y1 + 36,
        Anchor::Start,
        "time (allocator calls replayed) →".to_string(),
    ));
    let mut x = LEFT;
    for (_, label) in LEGEND {
        v.push((x + 22, y1 + 65, Anchor::Start, label.to_string()));
        x += legend_step(label);
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
    grids: &[Grid],
    title: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    for (x, y, anchor, s) in labels(grids, title) {
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

/// Write the maps, side by side, as a PNG, with a title, axis labels and a
/// legend when a font is available (see [`png_fonts_ready`]).
pub fn write_png(grids: &[Grid], path: &Path, title: &str) -> Result<(), String> {
    let l = layout(grids);
    let root = BitMapBackend::new(path, (l.width, l.height)).into_drawing_area();
    draw(root.clone(), grids)?;
    if png_fonts_ready() {
        draw_labels(&root, grids, title)?;
    }
    Ok(())
}

/// Write the maps, side by side, as an SVG with a title, axis labels and a
/// legend.
pub fn write_svg(grids: &[Grid], path: &Path, title: &str) -> Result<(), String> {
    let l = layout(grids);
    let dims = (l.width, l.height);
    let mut body = String::new();
    {
        let root = SVGBackend::with_string(&mut body, dims).into_drawing_area();
        draw(root, grids)?;
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut text = String::new();
    for (x, y, anchor, s) in labels(grids, title) {
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
    s.push_str(
        "          # used (asked for)   + overhead (headers, padding, rounding)   . free   (blank: never reached)\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload;
    use std::collections::HashSet;

    fn map(t: &Trace, s: Strategy) -> Grid {
        let snap = snapshots(t, s, 40).unwrap();
        grid(&snap, snap.top + snap.top / 20, 120)
    }

    fn share(g: &Grid, st: u8) -> f64 {
        g.cells.iter().filter(|&&c| c == st).count() as f64 / g.cells.len() as f64
    }

    #[test]
    fn maps_show_used_free_and_overhead() {
        let t = workload::mixed(4000, 3);
        for &s in Strategy::ALL {
            let g = map(&t, s);
            assert_eq!(g.cells.len(), 40 * 120);
            assert!(g.cells.contains(&USED), "{s}: no used cell");
            let (buf, _) = render_rgb(std::slice::from_ref(&g)).unwrap();
            let colours: HashSet<&[u8]> = buf.chunks(3).collect();
            assert!(colours.len() >= 3, "{s}: {} colours", colours.len());
            let text = text_map(&g, 10, 60, false);
            assert_eq!(text.lines().count(), 12);
            assert!(text.contains('#'));
        }
    }

    /// The region's own metadata is not drawn, so no strategy's map is
    /// mostly overhead (with the 256 MiB replay region's index drawn, a
    /// third of TLSF's map and most of buddy's were). Bump is left out:
    /// the blocks it cannot reuse are overhead, rightly.
    #[test]
    fn maps_show_the_program_not_the_region_index() {
        let t = workload::mixed(4000, 3);
        for &s in Strategy::ALL.iter().filter(|&&s| s != Strategy::Bump) {
            let g = map(&t, s);
            let last = &g.cells[(g.cols - 1) * g.rows..];
            assert_ne!(last[0], OVERHEAD, "{s}: the map starts with overhead");
            let o = share(&g, OVERHEAD);
            assert!(o < 0.3, "{s}: {:.0}% of the map is overhead", o * 100.0);
        }
    }

    /// Drawn to one scale, worst fit spreads over more address space than
    /// best fit on the same trace.
    #[test]
    fn strategies_differ_on_the_same_trace() {
        let t = workload::mixed(6000, 5);
        let worst = snapshots(&t, Strategy::WorstFit, 40).unwrap();
        let best = snapshots(&t, Strategy::BestFit, 40).unwrap();
        assert!(
            worst.top > best.top,
            "worst {} best {}",
            worst.top,
            best.top
        );
        let span = worst.top.max(best.top);
        let (w, b) = (grid(&worst, span, 120), grid(&best, span, 120));
        assert!(share(&w, UNTOUCHED) < share(&b, UNTOUCHED));
    }

    #[test]
    fn axes_have_labelled_ticks_and_the_legend_every_colour() {
        let t = workload::mixed(4000, 3);
        let grids: Vec<Grid> = [Strategy::Tlsf, Strategy::Buddy]
            .iter()
            .map(|&s| map(&t, s))
            .collect();
        let text: Vec<String> = labels(&grids, "t").into_iter().map(|l| l.3).collect();
        let l = layout(&grids);
        let (y, x) = ticks(&grids, &l);
        assert!(y.len() >= 3 && x.len() >= 3, "{y:?} {x:?}");
        for (_, s) in y.iter().chain(&x) {
            assert!(text.contains(s), "tick {s} not labelled");
        }
        assert!(text.iter().any(|s| s.contains("never reached")));
        assert_eq!(LEGEND.len(), COLOURS.len());
        for g in &grids {
            assert!(text.iter().any(|s| s.starts_with(g.strategy.name())));
        }
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(482_459, 4, false), 200_000);
        assert_eq!(tick_step(1000, 4, false), 500);
        assert_eq!(tick_step(9 << 20, 6, true), 2 << 20);
        assert_eq!(count(200_000), "200k");
        assert_eq!(count(1_500_000), "1.5M");
    }
}
