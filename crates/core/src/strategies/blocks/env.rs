//! Where a heap's blocks can lie: the regions' spans, kept inline and
//! sorted so a link's region is found without a walk.

use super::*;

/// Spans of a multi-region heap that [`Env`] keeps inline, sorted by
/// address; a heap with more regions keeps the newest and the largest
/// there and looks the rest up in its region list.
const ENV_SPANS: usize = 64;
/// Up to this many inline spans, [`Env::span_of`] tests each in turn
/// (branch-free); past it, a binary search.
const ENV_LINEAR: usize = 8;

/// Where a heap's blocks can lie. Free-list links are checked against it
/// before they are read (see `list::next_checked`): a link that is not a
/// header slot inside one of the heap's regions is damage. The fast test
/// is against the span of the region added last (exact for a heap of one
/// region); in a heap of several, a link that fails it is looked up in the
/// others (`span_of`: up to `ENV_SPANS` inline, sorted,
/// then the region list), so a link into a gap between two regions is
/// never read. A free-list search checks every link it follows, so the
/// lookup must stay cheap however many regions the heap has: O(1) for up
/// to `ENV_LINEAR` regions, O(log regions) up to `ENV_SPANS`, and a
/// region-list walk only for links into the smallest older regions past
/// that.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    /// Start of the hot span.
    lo: usize,
    /// Highest offset from `lo` at which a block header (with its two link
    /// words) still fits below the hot span's end.
    room: usize,
    /// The newest region's header: the head of the heap's region list,
    /// which lives in region memory and so stays put when the heap moves.
    regions: usize,
    /// Regions in the heap.
    count: usize,
    /// (start, end) of `min(count, ENV_SPANS)` spans in address order:
    /// every span while there are at most `ENV_SPANS`, then the newest
    /// and the largest others.
    spans: [(usize, usize); ENV_SPANS],
    /// The heap's [`Profile::CHECKED`](super::Profile::CHECKED): the
    /// indexes check links only when it is set.
    checked: bool,
}

impl Env {
    /// No memory: only the null link passes.
    pub const EMPTY: Env = Env {
        lo: 0,
        room: 0,
        regions: 0,
        count: 0,
        spans: [(0, 0); ENV_SPANS],
        checked: true,
    };

    /// `self`, telling the indexes whether to check links
    /// ([`Profile::CHECKED`](super::Profile::CHECKED) of the heap).
    pub(super) const fn with_checks(mut self, checked: bool) -> Env {
        self.checked = checked;
        self
    }

    /// Whether links are checked before they are followed (the checked
    /// profile); the trusting profile follows them as they are.
    #[inline(always)]
    pub(crate) fn checks(&self) -> bool {
        self.checked
    }

    /// `self` with `hot` (`hot.len() >= MIN_BLOCK`) added as the newest
    /// span of a heap whose region list now starts at `head`.
    pub(super) fn with_span(mut self, hot: Span, head: usize) -> Env {
        self.lo = hot.start;
        self.room = hot.len() - MIN_BLOCK;
        let mut n = self.count.min(ENV_SPANS);
        self.count += 1;
        self.regions = head;
        if n == ENV_SPANS {
            // Full: drop the smallest span (the fewest blocks to look up
            // the slow way); the new one, the hot span, always stays.
            let (i, _) = self
                .spans
                .iter()
                .enumerate()
                .min_by_key(|(_, &(s, e))| e - s)
                .unwrap_or((0, &(0, 0)));
            self.spans.copy_within(i + 1..n, i);
            n -= 1;
        }
        let at = self.spans[..n].partition_point(|&(s, _)| s < hot.start);
        self.spans.copy_within(at..n, at + 1);
        self.spans[at] = (hot.start, hot.end);
        self
    }

    /// Whether `b` is a header slot (`LEAD` past a granule) inside the hot
    /// span, with room for a minimal block after it.
    #[inline(always)]
    pub(crate) fn holds(&self, b: usize) -> bool {
        b.wrapping_sub(self.lo) <= self.room && b & (GRAN - 1) == LEAD
    }

    /// Whether `b` is a header slot, with room for a minimal block after
    /// it, in any region of the heap (the cold test behind
    /// [`holds`](Self::holds)).
    #[inline(always)]
    pub(super) fn holds_anywhere(&self, b: usize) -> bool {
        b & (GRAN - 1) == LEAD
            && self
                .span_of(b)
                .is_some_and(|s| s.len() >= MIN_BLOCK && b - s.start <= s.len() - MIN_BLOCK)
    }

    /// The span holding `addr`: the inline spans first, then (a heap of
    /// more than [`ENV_SPANS`] regions) the region list.
    #[inline(always)]
    pub(super) fn span_of(&self, addr: usize) -> Option<Span> {
        let n = self.count.min(ENV_SPANS);
        let (start, end) = if n <= ENV_LINEAR {
            // Every inline span is tested and the hit kept without a
            // branch: which region an address falls in is data a predictor
            // guesses badly, while the trip count is fixed for the heap.
            let (mut start, mut end) = (0, 0);
            for &(s, e) in &self.spans[..n] {
                let m = ((addr.wrapping_sub(s) < e - s) as usize).wrapping_neg();
                start = (s & m) | (start & !m);
                end = (e & m) | (end & !m);
            }
            (start, end)
        } else {
            // The last span starting at or before `addr` (branch-free
            // halving), then one test.
            let (mut base, mut len) = (0, n);
            while len > 1 {
                let half = len / 2;
                let m = ((self.spans[base + half].0 <= addr) as usize).wrapping_neg();
                base += half & m;
                len -= half;
            }
            let (s, e) = self.spans[base];
            if addr.wrapping_sub(s) < e - s {
                (s, e)
            } else {
                (0, 0)
            }
        };
        if end != 0 {
            return Some(Span { start, end });
        }
        if self.count <= ENV_SPANS {
            return None;
        }
        self.span_in_list(addr)
    }

    /// [`span_of`](Self::span_of) past the inline spans: the region list.
    #[cold]
    #[inline(never)]
    fn span_in_list(&self, addr: usize) -> Option<Span> {
        // SAFETY: `regions` is the head of the heap's region list, set by
        // `add_region` after the last change to the list; the regions stay
        // handed over while the heap (and so this index) lives.
        unsafe { RegionList::find_from(self.regions, addr, GRAN) }
    }
}
