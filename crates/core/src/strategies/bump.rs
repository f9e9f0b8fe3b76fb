//! # Bump: the simplest heap there is
//!
//! Each region keeps a `top`. Allocating aligns `top` up, writes a 16-byte
//! header, hands out the bytes after it and moves `top` past them. Nothing
//! freed in the middle is reused; freeing the *last* block moves `top` back,
//! and when the last live block goes the whole heap resets.
//!
//! ```text
//!  region: | chunk | pad | hdr | payload | hdr | payload |  ...free...  |
//!          ^span.start                              top ^        span.end ^
//!  hdr  = [ usable size | state bits , start of this block's span ]
//!  pad  = [ pad length  | PAD bit    , 0 ]   (only when alignment skipped bytes)
//! ```
//!
//! - **Time**: allocate O(1) while the newest region has room, O(regions)
//!   when it must look at older ones; free O(1); `reset` O(regions).
//! - **Space**: 16 bytes of header per block, plus alignment padding.
//! - **Drawbacks**: memory freed out of order is not reused until every block
//!   is freed or [`Bump::reset`] is called; it shows as overhead in `walk`.
//!
//! Invariants (checked by [`RegionHeap::check`]):
//! - in each region, spans from the chunk header to `top` parse as a sequence
//!   of pad records and block headers, ending exactly at `top`;
//! - every header's span-start word equals where its span really starts;
//! - the sum of usable sizes of `USED` blocks equals `counters.in_use`, and
//!   their count equals `counters.live()`.

use core::ptr::NonNull;

use crate::heap::{BlockInfo, BlockState, CheckError, HeapError, HeapErrorKind, RegionHeap};
use crate::region::{Region, RegionError, RegionList, Span};
use crate::stats::{Counters, HeapStats};
use crate::util::{align_up, checked_request};

const HDR: usize = 16;
const USED: usize = 1;
const DEAD: usize = 2;
const PAD: usize = 4;
const STATE_MASK: usize = 15;

/// Per-region bookkeeping at the start of each managed span.
#[repr(C, align(16))]
struct Chunk {
    top: usize,
    _reserved: usize,
}
const CHUNK: usize = core::mem::size_of::<Chunk>();

/// A bump allocator over any number of regions.
pub struct Bump {
    regions: RegionList,
    counters: Counters,
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

impl Bump {
    /// An empty heap; give it memory with [`RegionHeap::add_region`].
    pub const fn new() -> Self {
        Bump {
            regions: RegionList::new(),
            counters: Counters::new(),
        }
    }

    fn chunk(span: &Span) -> *mut Chunk {
        span.start as *mut Chunk
    }

    fn data_start(span: &Span) -> usize {
        span.start + CHUNK
    }

    /// Forget every allocation at once: every region becomes one free span.
    /// Pointers handed out before are dangling afterwards.
    pub fn reset(&mut self) {
        for span in self.regions.spans(16) {
            // SAFETY: the chunk record was written by add_region in memory
            // this heap owns.
            unsafe { (*Self::chunk(&span)).top = Self::data_start(&span) };
        }
        self.counters.frees = self.counters.allocs;
        self.counters.in_use = 0;
    }

    fn try_region(&mut self, span: &Span, size: usize, align: usize) -> Option<NonNull<u8>> {
        let chunk = Self::chunk(span);
        // SAFETY: chunk records live at the start of spans we own.
        let top = unsafe { (*chunk).top };
        let payload = align_up(top.checked_add(HDR)?, align)?;
        let end = payload.checked_add(size)?;
        if end > span.end {
            return None;
        }
        let hdr = payload - HDR;
        if hdr > top {
            // SAFETY: `top..hdr` is inside the span, 16-aligned, at least 16 long.
            unsafe { write_words(top, (hdr - top) | PAD, 0) };
        }
        // SAFETY: `hdr..end` is inside the span and unused.
        unsafe {
            write_words(hdr, size | USED, top);
            (*chunk).top = end;
        }
        // SAFETY: payload is inside a region, so non-null.
        Some(unsafe { NonNull::new_unchecked(payload as *mut u8) })
    }

    /// Validate `ptr` and return (span, header word 0, header address).
    fn lookup(&self, ptr: *const u8) -> Result<(Span, usize, usize), HeapError> {
        let p = ptr as usize;
        let span = self
            .regions
            .find(p, 16)
            .ok_or(HeapError::new(HeapErrorKind::NotOwned, ptr))?;
        if p % 16 != 0 || p < Self::data_start(&span) + HDR {
            return Err(HeapError::new(HeapErrorKind::InvalidPointer, ptr));
        }
        // SAFETY: chunk record at span start.
        let top = unsafe { (*Self::chunk(&span)).top };
        if p >= top {
            return Err(HeapError::new(HeapErrorKind::InvalidPointer, ptr));
        }
        let hdr = p - HDR;
        // SAFETY: `hdr` is inside the span's allocated part, 16-aligned.
        let (w0, w1) = unsafe { read_words(hdr) };
        let size = w0 & !STATE_MASK;
        let state = w0 & STATE_MASK;
        if (state != USED && state != DEAD) || !p.checked_add(size).is_some_and(|e| e <= top) {
            return Err(HeapError::new(HeapErrorKind::InvalidPointer, ptr));
        }
        // Freeing the last block moves `top` back to the span start the
        // header names, so that word must be exact: the header itself, or a
        // pad record that ends at it. (A header lies where an overflow of
        // the block before can reach it; trusting a damaged start would let
        // later blocks overlap live ones.)
        if !Self::start_ok(&span, w1, hdr) {
            return Err(HeapError::new(HeapErrorKind::Corrupted, ptr));
        }
        if state == DEAD {
            return Err(HeapError::new(HeapErrorKind::DoubleFree, ptr));
        }
        Ok((span, w0, hdr))
    }

    /// Whether `start`, the span-start word of the header at `hdr`, is
    /// `hdr` itself or a pad record of `span` that ends at `hdr`.
    fn start_ok(span: &Span, start: usize, hdr: usize) -> bool {
        if start == hdr {
            return true;
        }
        if start < Self::data_start(span) || start > hdr || start % 16 != 0 {
            return false;
        }
        // SAFETY: `start` is 16-aligned inside the span's allocated part,
        // below `hdr`.
        let (w0, w1) = unsafe { read_words(start) };
        w0 == (hdr - start) | PAD && w1 == 0
    }
}

/// # Safety
/// `at` must be 16-aligned and point at 16 writable bytes the heap owns.
unsafe fn write_words(at: usize, w0: usize, w1: usize) {
    let p = at as *mut usize;
    // SAFETY: per the function contract.
    unsafe {
        p.write(w0);
        p.add(1).write(w1);
    }
}

/// # Safety
/// `at` must be 16-aligned and point at 16 readable bytes.
unsafe fn read_words(at: usize) -> (usize, usize) {
    let p = at as *const usize;
    // SAFETY: per the function contract.
    unsafe { (p.read(), p.add(1).read()) }
}

impl RegionHeap for Bump {
    fn name(&self) -> &'static str {
        "bump"
    }

    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError> {
        // SAFETY: forwarded from the caller.
        let span = unsafe { self.regions.push(region, 16, CHUNK + HDR + 16)? };
        // SAFETY: the span is ours and starts 16-aligned.
        unsafe {
            Self::chunk(&span).write(Chunk {
                top: Self::data_start(&span),
                _reserved: 0,
            })
        };
        Ok(())
    }

    fn allocate(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let Some((size, align)) = checked_request(size, align, 16, HDR) else {
            self.counters.on_fail();
            return None;
        };
        // Newest region first: that is where `top` usually has room.
        let hit = self.regions.spans(16).find(|span| {
            // SAFETY: chunk record at span start.
            let top = unsafe { (*Self::chunk(span)).top };
            top.checked_add(HDR)
                .and_then(|t| align_up(t, align))
                .and_then(|p| p.checked_add(size))
                .is_some_and(|e| e <= span.end)
        });
        if let Some(span) = hit {
            if let Some(p) = self.try_region(&span, size, align) {
                self.counters.on_alloc(size);
                return Some(p);
            }
        }
        self.counters.on_fail();
        None
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError> {
        let (span, w0, hdr) = self.lookup(ptr.as_ptr())?;
        let size = w0 & !STATE_MASK;
        let chunk = Self::chunk(&span);
        // SAFETY: chunk record and header are in memory we own; lookup
        // validated the header.
        unsafe {
            let (_, block_start) = read_words(hdr);
            if ptr.as_ptr() as usize + size == (*chunk).top {
                (*chunk).top = block_start;
            } else {
                write_words(hdr, size | DEAD, block_start);
            }
        }
        self.counters.on_free(size);
        if self.counters.live() == 0 {
            self.reset();
        }
        Ok(())
    }

    unsafe fn resize_in_place(&mut self, ptr: NonNull<u8>, new_size: usize) -> bool {
        let Ok((span, w0, hdr)) = self.lookup(ptr.as_ptr()) else {
            return false;
        };
        let Some((new_size, _)) = checked_request(new_size, 16, 16, HDR) else {
            return false;
        };
        let old = w0 & !STATE_MASK;
        let p = ptr.as_ptr() as usize;
        let chunk = Self::chunk(&span);
        // SAFETY: chunk record at span start.
        let top = unsafe { (*chunk).top };
        if p + old == top {
            match p.checked_add(new_size) {
                Some(end) if end <= span.end => {}
                _ => return false,
            }
            // SAFETY: header and chunk are ours; the new extent is inside the span.
            unsafe {
                let (_, start) = read_words(hdr);
                write_words(hdr, new_size | USED, start);
                (*chunk).top = p + new_size;
            }
            self.counters.on_resize(old, new_size);
            true
        } else {
            new_size <= old
        }
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, HeapError> {
        let (_, w0, _) = self.lookup(ptr.as_ptr())?;
        Ok(w0 & !STATE_MASK)
    }

    fn owns(&self, ptr: *const u8) -> bool {
        self.regions.contains(ptr as usize, 16)
    }

    fn stats(&self) -> HeapStats {
        let mut s = HeapStats {
            region_bytes: self.regions.bytes(),
            ..HeapStats::default()
        };
        for span in self.regions.spans(16) {
            // SAFETY: chunk record at span start.
            let top = unsafe { (*Self::chunk(&span)).top };
            let room = span.end.saturating_sub(top + HDR);
            if room > 0 {
                s.free += room;
                s.free_blocks += 1;
                s.largest_free = s.largest_free.max(room);
            }
        }
        s.with_counters(&self.counters)
    }

    fn walk(&self, f: &mut dyn FnMut(BlockInfo)) {
        for span in self.regions.spans(16) {
            // SAFETY: chunk record at span start.
            let top = unsafe { (*Self::chunk(&span)).top };
            f(BlockInfo {
                addr: span.start,
                size: CHUNK,
                state: BlockState::Overhead,
                payload: 0,
            });
            let mut at = Self::data_start(&span);
            while at < top {
                // SAFETY: `at` walks the parsed sequence below `top`, which
                // `check` verifies; each step lands on a record.
                let (w0, _) = unsafe { read_words(at) };
                let len = w0 & !STATE_MASK;
                let (size, state, payload) = match w0 & STATE_MASK {
                    PAD => (len, BlockState::Overhead, 0),
                    USED => (HDR + len, BlockState::Used, at + HDR),
                    _ => (HDR + len, BlockState::Overhead, 0),
                };
                if size == 0 || at + size > top {
                    break;
                }
                f(BlockInfo {
                    addr: at,
                    size,
                    state,
                    payload,
                });
                at += size;
            }
            if span.end > top {
                f(BlockInfo {
                    addr: top,
                    size: span.end - top,
                    state: BlockState::Free,
                    payload: 0,
                });
            }
        }
    }

    fn check(&self) -> Result<(), CheckError> {
        self.regions.check()?;
        let mut in_use = 0usize;
        let mut live = 0u64;
        for span in self.regions.spans(16) {
            // SAFETY: chunk record at span start.
            let top = unsafe { (*Self::chunk(&span)).top };
            if top < Self::data_start(&span) || top > span.end || top % 16 != 0 {
                return Err(CheckError::new(span.start, "bump top outside its region"));
            }
            let mut at = Self::data_start(&span);
            let mut block_start = at;
            while at < top {
                // SAFETY: `at` is 16-aligned and below `top`, inside the span.
                let (w0, w1) = unsafe { read_words(at) };
                let len = w0 & !STATE_MASK;
                match w0 & STATE_MASK {
                    PAD => {
                        if len == 0 || len % 16 != 0 || at + len > top {
                            return Err(CheckError::new(at, "bad padding record"));
                        }
                        at += len;
                        continue;
                    }
                    USED | DEAD => {
                        if w1 != block_start {
                            return Err(CheckError::new(at, "header's span start is wrong"));
                        }
                        if len == 0 || len % 16 != 0 || at + HDR + len > top {
                            return Err(CheckError::new(at, "block runs past top"));
                        }
                        if w0 & USED != 0 {
                            in_use += len;
                            live += 1;
                        }
                        at += HDR + len;
                        block_start = at;
                    }
                    _ => return Err(CheckError::new(at, "unknown record state bits")),
                }
            }
            if at != top {
                return Err(CheckError::new(at, "records do not end at top"));
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
        Ok(())
    }
}
