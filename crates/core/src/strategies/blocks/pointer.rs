//! Exact pointer checks: the live map first, then the block's header and
//! its neighbour, and a diagnosis of a refused pointer that reads only
//! words the heap wrote.

use super::*;

impl<I: FreeIndex, P: Profile> BoundaryHeap<I, P> {
    /// Validate a pointer the caller says is a live block; return its header
    /// address and header word.
    ///
    /// The fast path handles a plausible block in the hot region with a few
    /// compares and no error bookkeeping; anything else (another region, or
    /// a pointer that fails a check) goes to [`diagnose`](Self::diagnose),
    /// which repeats the checks in full and names the problem.
    #[inline(always)]
    pub(super) fn lookup(&self, ptr: *const u8) -> Result<(usize, usize), HeapError> {
        if let Some(found) = self.lookup_fast(ptr) {
            return Ok(found);
        }
        if self.multi {
            if let Some((b, h, _)) = self.lookup_other(ptr) {
                return Ok((b, h));
            }
        }
        self.diagnose(ptr)
    }

    /// [`lookup_fast`](Self::lookup_fast) for a heap of several regions,
    /// whichever region `ptr` lies in: the region's span from [`Env`]'s
    /// table, then the same checks against it. Also returns the span's
    /// start, where its live map lies. `None`: ask
    /// [`diagnose`](Self::diagnose).
    #[inline(never)]
    pub(super) fn lookup_other(&self, ptr: *const u8) -> Option<(usize, usize, usize)> {
        let span = self.env.span_of(ptr as usize)?;
        // `add_region` takes no span shorter than GRAN + MIN_BLOCK.
        let max = (span.len() - GRAN - MIN_BLOCK) >> GRAN_SHIFT;
        // SAFETY: `span` is one of the heap's, `max` its `fast_max`.
        let (b, h) = unsafe { Self::lookup_in(span.start, max, ptr as usize) }?;
        Some((b, h, span.start))
    }

    /// The fast stage of [`lookup`](Self::lookup) alone: `None` means
    /// "ask [`diagnose`](Self::diagnose)" (another region, or not plausibly
    /// a used block).
    #[inline(always)]
    pub(super) fn lookup_fast(&self, ptr: *const u8) -> Option<(usize, usize)> {
        let p = ptr as usize;
        if !P::CHECKED {
            // SAFETY: the trusting profile's contract: `ptr` is a live
            // block of this heap, so the word before it is its header.
            return Some((p - WORD, unsafe { rd(p - WORD) }));
        }
        // SAFETY: with no region the test accepts only `p == 0`, which
        // no caller passes (every caller has a `NonNull`).
        unsafe { Self::lookup_in(self.fast_base, self.fast_max, p) }
    }

    /// [`lookup_fast`](Self::lookup_fast)'s test and checks for `p` against
    /// the span starting at `base` whose `fast_max` (see `fast_base`) is
    /// `max`.
    ///
    /// # Safety
    /// `base` and `max` describe one of the heap's spans.
    #[inline(always)]
    pub(super) unsafe fn lookup_in(base: usize, max: usize, p: usize) -> Option<(usize, usize)> {
        let off = p.wrapping_sub(base);
        // A payload is 16-aligned, at least 16 bytes into the span (the
        // first block's payload) and at most `len - MIN_BLOCK` (the last
        // possible block ends at the sentinel): one compare for the three
        // (see `fast_base`).
        let r = off.wrapping_sub(GRAN).rotate_right(GRAN_SHIFT);
        if r > max {
            return None;
        }
        // `r = (off - GRAN) / GRAN` now, so `max - r` is `(len - off -
        // MIN_BLOCK) / GRAN`: how far a block at `p` may exceed MIN_BLOCK,
        // in granules, and still end at the sentinel.
        // SAFETY: `p` is a payload slot of the span (the test above).
        unsafe { Self::validate(base, p, off, max - r) }
    }

    /// [`RegionHeap::deallocate`] for a pointer the fast stage did not
    /// accept: diagnose it, and free it if it is a live block of another
    /// region. Out of line, so the fast path makes no call that returns.
    ///
    /// # Safety
    /// As for [`RegionHeap::deallocate`].
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn deallocate_slow<const MULTI: bool>(
        &mut self,
        ptr: NonNull<u8>,
        size: Option<usize>,
    ) -> Result<(), HeapError> {
        let (b, h) = self.diagnose(ptr.as_ptr())?;
        self.check_size(b, h, size);
        self.counters.on_free((h & !FLAGS) - WORD);
        // SAFETY: `diagnose` validated `b` as a used block.
        unsafe {
            self.clear_live(b + WORD);
            self.release::<MULTI>(b, h);
        }
        Ok(())
    }

    /// The fast checks of [`lookup`](Self::lookup) for `p` at offset `off`
    /// into the span starting at `base`, where a block at `p` may be at
    /// most `MIN_BLOCK + room * GRAN` bytes. `None`: not a live block, or
    /// damaged metadata (the caller diagnoses it).
    ///
    /// The live map is read first: only when it says a used block starts at
    /// `p` is the header read, so no word the heap did not write is read.
    ///
    /// # Safety
    /// `base` is the start of one of the heap's spans, `end` its end, `p`
    /// is 16-aligned, `GRAN <= off = p - base <= end - base - MIN_BLOCK`
    /// and `room = (end - p - MIN_BLOCK) / GRAN`.
    #[inline(always)]
    pub(super) unsafe fn validate(
        base: usize,
        p: usize,
        off: usize,
        room: usize,
    ) -> Option<(usize, usize)> {
        let (w, m) = map_slot(base, p);
        // SAFETY: `p` lies in the span, so its map word lies in the span's
        // live map, which the heap zeroed when it took the region.
        let word = unsafe { rd(w) };
        if word & m == 0 {
            return None;
        }
        let b = p - WORD;
        // SAFETY: the map says a used block starts at `b`: a header the heap
        // wrote, inside the span.
        let h = unsafe { rd(b) };
        // The map settles whether `p` is a live block; what is left to
        // check is the header and footer that freeing will follow, so that
        // a damaged one (an overrun of the block before) is refused and
        // cannot send the writes outside the span. The header must say
        // USED with MIN_BLOCK <= size <= end - p (`room`), so the block
        // ends at or before the sentinel. One compare for both: `v` is the
        // size iff the kind bits read exactly USED, and has low bits set
        // otherwise, which the rotation moves to the top.
        let v = (h ^ USED) & !PREV_FREE;
        let r = v.wrapping_sub(MIN_BLOCK).rotate_right(GRAN_SHIFT);
        if r > room {
            return None;
        }
        // The size must lead to the next block's header: `r == room` is the
        // sentinel; anything else a block whose header does not say we
        // are free and whose own live bit agrees, with no payload between.
        // SAFETY: `b + v` ends at or before the sentinel (just checked),
        // and the map words lie in the span's live map.
        if r != room && !unsafe { Self::next_is_a_block(base, p, v, word) } {
            return None;
        }
        if h & PREV_FREE != 0 {
            // SAFETY: `b - W >= span.start` since `off >= GRAN`.
            let ps = unsafe { rd(b - WORD) };
            // The free block before must start inside the span:
            // `b - ps >= span.start + LEAD`, i.e. `ps <= off - GRAN` (a
            // footer that passes this and the header test below but points
            // into the live map is damage only `check` finds).
            if ps & FLAGS != 0 || ps < MIN_BLOCK || ps > off - GRAN {
                return None;
            }
            // SAFETY: `b - ps` is a word in the span (just checked).
            if unsafe { rd(b - ps) } != ps | FREE {
                return None;
            }
        }
        Some((b, h))
    }

    /// Whether the used block with payload `p` (in the span whose live map
    /// starts at `base`) and size `v` is followed by a block that starts
    /// at `b + v`, not the sentinel: its header says USED (and its payload
    /// is live) or FREE, without PREV_FREE (this block is used); and no
    /// payload starts strictly inside this block. A used block's size is
    /// in memory an overflow of the block before can rewrite: a size
    /// changed to another plausible value would otherwise have `free`
    /// merge across live blocks. One header read and, for a block up to
    /// 1 KiB, one or two map words.
    ///
    /// `word` is the live-map word holding `p`'s bit: a block whose
    /// next payload's bit lies in the same word (up to 1 KiB) needs no
    /// other map read.
    ///
    /// # Safety
    /// `p - WORD + v` is a header slot before the span's sentinel;
    /// `base` is the span's start; `word` as said.
    #[inline(always)]
    pub(super) unsafe fn next_is_a_block(base: usize, p: usize, v: usize, word: usize) -> bool {
        let n = p - WORD + v;
        // SAFETY: per the function contract.
        let nh = unsafe { rd(n) };
        let bits = usize::BITS as usize;
        let at = ((p - base) >> GRAN_SHIFT) % bits;
        // Granules from `p`'s to the next payload's (`v / GRAN >= 2`).
        let k = v >> GRAN_SHIFT;
        let (inner, next_live) = if at + k < bits {
            (
                (word >> (at + 1)) & ((1 << (k - 1)) - 1),
                (word >> (at + k)) & 1,
            )
        } else if at + k < 2 * bits {
            // The next payload's bit is in the following map word.
            let e = at + k - bits;
            // SAFETY: that word holds the bit of `n + WORD`, a payload
            // slot of the span.
            let next = unsafe { rd(map_slot(base, p).0 + WORD) };
            ((word >> at >> 1) | (next & ((1 << e) - 1)), (next >> e) & 1)
        } else {
            // SAFETY: `p + GRAN ..= n + WORD` lies in the span.
            unsafe { Self::live_bits_across(base, p, n) }
        };
        // A used next block's payload is live, a free one's is not; either
        // header has PREV_FREE clear (this block is used).
        let kind = nh & (KIND | PREV_FREE);
        inner == 0 && ((kind == USED && next_live == 1) || (kind == FREE && next_live == 0))
    }

    /// [`next_is_a_block`](Self::next_is_a_block)'s map bits for a block
    /// whose next payload's bit is in another map word: (bits of the
    /// payload slots strictly inside, the next payload's bit).
    ///
    /// # Safety
    /// `p + GRAN ..= n + WORD` lies in the span starting at `base`.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn live_bits_across(base: usize, p: usize, n: usize) -> (usize, usize) {
        // SAFETY: per the function contract.
        unsafe {
            (
                Self::live_bits(base, p + GRAN, n + WORD),
                usize::from(Self::live_bits(base, n + WORD, n + WORD + GRAN) != 0),
            )
        }
    }

    /// Whether any live-map bit is set for the payload slots in `[from,
    /// to)` (16-aligned addresses of the span starting at `base`): non-zero
    /// if so.
    ///
    /// # Safety
    /// `from..to` lies in the span.
    #[inline(always)]
    pub(super) unsafe fn live_bits(base: usize, from: usize, to: usize) -> usize {
        if from >= to {
            return 0;
        }
        let bits = usize::BITS as usize;
        let (g0, g1) = ((from - base) >> GRAN_SHIFT, (to - base) >> GRAN_SHIFT);
        let (w0, w1) = (g0 / bits, (g1 - 1) / bits);
        let lo = usize::MAX << (g0 % bits);
        let hi = usize::MAX >> (bits - 1 - (g1 - 1) % bits);
        // SAFETY: the words of granules g0..g1 lie in the span's live map.
        unsafe {
            if w0 == w1 {
                return rd(base + w0 * WORD) & lo & hi;
            }
            let mut any = rd(base + w0 * WORD) & lo;
            for w in w0 + 1..w1 {
                any |= rd(base + w * WORD);
            }
            any | (rd(base + w1 * WORD) & hi)
        }
    }

    /// The slow, complete form of [`lookup`](Self::lookup): any region, and
    /// the precise error for a pointer that is not a live block.
    ///
    /// Reads only words the heap wrote: the live map, then (if the map says
    /// a used block starts there) the header and its neighbours' tags, or
    /// (if not) the headers of the span's blocks, found by walking them.
    #[cold]
    #[inline(never)]
    pub(super) fn diagnose(&self, ptr: *const u8) -> Result<(usize, usize), HeapError> {
        let p = ptr as usize;
        let span = self
            .find_span(p)
            .ok_or(HeapError::new(HeapErrorKind::NotOwned, ptr))?;
        let invalid = Err(HeapError::new(HeapErrorKind::InvalidPointer, ptr));
        // A payload is 16-aligned, at or after the first block's payload,
        // and leaves room for a block before the sentinel.
        if p % GRAN != 0 || p < first_block(span) + WORD || p > span.end - MIN_BLOCK {
            return invalid;
        }
        let (w, m) = map_slot(span.start, p);
        // SAFETY: `p` lies in the span, so its map word lies in the span's
        // live map, which the heap zeroed when it took the region.
        if unsafe { rd(w) } & m == 0 {
            return Err(HeapError::new(Self::classify_dead(span, p), ptr));
        }
        // The map says a used block starts here: from now on, anything
        // inconsistent is damaged metadata.
        let corrupted = Err(HeapError::new(HeapErrorKind::Corrupted, ptr));
        let b = p - WORD;
        // SAFETY: a header the heap wrote, inside the span.
        let h = unsafe { rd(b) };
        let size = h & !FLAGS;
        // USED, and the block ends at or before the sentinel.
        if h & KIND != USED || size < MIN_BLOCK || size > span.end - WORD - b {
            return corrupted;
        }
        // The size must lead to the next block (see `next_is_a_block`);
        // when it does not, this block overflowed into the next header, or
        // its own size was overwritten: report it.
        if b + size != span.end - WORD {
            let (w, _) = map_slot(span.start, p);
            // SAFETY: `b + size < span.end - W`, a header slot before the
            // sentinel; `w` is `p`'s word of the span's live map.
            if !unsafe { Self::next_is_a_block(span.start, p, size, rd(w)) } {
                crate::corruption::report(
                    p,
                    "the boundary tag of the block after this one, or this block's size, was \
                     overwritten (a heap buffer overflow of this block?)",
                );
            }
        }
        if h & PREV_FREE != 0 {
            // SAFETY: `b - W >= span.start`, inside the span.
            let ps = unsafe { rd(b - WORD) };
            let first = first_block(span);
            if ps & FLAGS != 0 || ps < MIN_BLOCK || ps > b - first {
                return corrupted;
            }
            // SAFETY: `b - ps >= first`, a word inside the span.
            if unsafe { rd(b - ps) } != ps | FREE {
                return corrupted;
            }
        }
        Ok((b, h))
    }

    /// Why the 16-aligned `p` (inside `span`'s blocks) is not a live
    /// payload, by walking the span's headers to the block holding `p -
    /// W`: a free block means the pointer was freed already
    /// ([`DoubleFree`](HeapErrorKind::DoubleFree): freed blocks merge, so a
    /// pointer freed twice may now lie inside a larger free block, which
    /// cannot be told from any other point of free memory); inside a used
    /// block, [`InvalidPointer`](HeapErrorKind::InvalidPointer); a used
    /// block that starts exactly there but is not in the live map,
    /// [`Corrupted`](HeapErrorKind::Corrupted). O(blocks of the span): only
    /// an error takes this path.
    #[cold]
    #[inline(never)]
    pub(super) fn classify_dead(span: Span, p: usize) -> HeapErrorKind {
        let target = p - WORD;
        for (b, h) in Self::blocks(span) {
            if target < b + (h & !FLAGS) {
                return match (h & FREE != 0, b == target) {
                    (true, _) => HeapErrorKind::DoubleFree,
                    (false, true) => HeapErrorKind::Corrupted,
                    (false, false) => HeapErrorKind::InvalidPointer,
                };
            }
        }
        HeapErrorKind::InvalidPointer
    }
}
