//! Inspection: the spans and blocks of a heap, and the whole-heap check.

use super::*;

impl<I: FreeIndex, P: Profile> BoundaryHeap<I, P> {
    #[cold]
    #[inline(never)]
    pub(super) fn find_span(&self, addr: usize) -> Option<Span> {
        self.env.span_of(addr)
    }

    pub(super) fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        self.regions.spans(GRAN)
    }

    /// Blocks of one span in address order: (address, header word). Stops
    /// early at a header that would not advance or would overrun.
    pub(super) fn blocks(span: Span) -> impl Iterator<Item = (usize, usize)> {
        let mut b = first_block(span);
        let end = span.end - WORD;
        core::iter::from_fn(move || {
            if b >= end {
                return None;
            }
            // SAFETY: `b` is a header slot inside the span: the first block,
            // or the end of a block that did not overrun `end`.
            let h = unsafe { rd(b) };
            let size = h & !FLAGS;
            if size == 0 || size > end - b {
                return None;
            }
            let item = (b, h);
            b += size;
            Some(item)
        })
    }

    /// Verify a block the index claims is free; return its size.
    pub(super) fn check_indexed(&self, b: usize) -> Result<usize, CheckError> {
        let Some(span) = self.regions.find(b, GRAN) else {
            return Err(CheckError::new(
                b,
                "indexed block lies outside every region",
            ));
        };
        if b % GRAN != LEAD || b < first_block(span) || b >= span.end - WORD {
            return Err(CheckError::new(
                b,
                "indexed block is not on a block boundary",
            ));
        }
        // SAFETY: `b` is a word-aligned address inside the span.
        let h = unsafe { rd(b) };
        let size = h & !FLAGS;
        if h & FLAGS != FREE || size < I::MIN_BLOCK || size > span.end - WORD - b {
            return Err(CheckError::new(b, "indexed block is not free"));
        }
        // SAFETY: the footer slot lies inside the block, inside the span.
        if unsafe { rd(b + size - WORD) } != size {
            return Err(CheckError::new(b, "indexed block's footer disagrees"));
        }
        Ok(size)
    }

    /// Walk every span, checking invariants 1–5 and 7; with `indexed`, also
    /// that each free block is in the index. Returns the free block count.
    pub(super) fn check_blocks(&self, indexed: Option<usize>) -> Result<usize, CheckError> {
        let mut free_blocks = 0usize;
        let mut in_use = 0usize;
        let mut live = 0u64;
        for span in self.spans() {
            let sentinel = span.end - WORD;
            let mut b = first_block(span);
            let mut prev_free = false;
            let mut span_live = 0u64;
            while b < sentinel {
                // SAFETY: `b` is a header slot below the sentinel.
                let h = unsafe { rd(b) };
                let size = h & !FLAGS;
                let free = match h & KIND {
                    FREE => true,
                    USED => false,
                    _ => return Err(CheckError::new(b, "header is neither used nor free")),
                };
                if size < I::MIN_BLOCK || size > sentinel - b {
                    return Err(CheckError::new(b, "block size out of range"));
                }
                if (h & PREV_FREE != 0) != prev_free {
                    return Err(CheckError::new(
                        b,
                        "PREV_FREE bit disagrees with the previous block",
                    ));
                }
                if free {
                    if prev_free {
                        return Err(CheckError::new(b, "two adjacent free blocks"));
                    }
                    // SAFETY: footer slot inside the block.
                    if unsafe { rd(b + size - WORD) } != size {
                        return Err(CheckError::new(
                            b,
                            "free block's footer disagrees with its header",
                        ));
                    }
                    if let Some(budget) = indexed {
                        if !self.index.contains(b, size, budget) {
                            return Err(CheckError::new(b, "free block is not in the index"));
                        }
                    }
                    free_blocks += 1;
                } else {
                    let (w, m) = map_slot(span.start, b + WORD);
                    // SAFETY: the payload lies in the span; its map word in
                    // the span's live map.
                    if P::CHECKED && unsafe { rd(w) } & m == 0 {
                        return Err(CheckError::new(b, "used block is not in the live map"));
                    }
                    in_use += size - WORD;
                    live += 1;
                    span_live += 1;
                }
                prev_free = free;
                b += size;
            }
            if b != sentinel {
                return Err(CheckError::new(b, "blocks do not end at the sentinel"));
            }
            // SAFETY: the sentinel slot is the span's last word.
            let sh = unsafe { rd(sentinel) };
            if sh & !PREV_FREE != USED {
                return Err(CheckError::new(sentinel, "region sentinel is damaged"));
            }
            if (sh & PREV_FREE != 0) != prev_free {
                return Err(CheckError::new(
                    sentinel,
                    "sentinel's PREV_FREE bit disagrees",
                ));
            }
            // Every used block has its bit; no other bit is set.
            let mut bits = 0u64;
            let mut w = span.start;
            while w < first_block(span) - LEAD {
                // SAFETY: a word of the span's live map.
                bits += u64::from(unsafe { rd(w) }.count_ones());
                w += WORD;
            }
            // (The trusting profile keeps no live map: all bits clear.)
            if bits != if P::CHECKED { span_live } else { 0 } {
                return Err(CheckError::new(
                    span.start,
                    "live map has bits that are no used block's",
                ));
            }
        }
        if in_use != self.counters.in_use {
            return Err(CheckError::new(
                0,
                "sum of used block sizes != in_use counter",
            ));
        }
        if live != self.counters.live() {
            return Err(CheckError::new(0, "used block count != live counter"));
        }
        Ok(free_blocks)
    }
}
