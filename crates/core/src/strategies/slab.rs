//! # Slab: pools of small objects in pages taken from a backing heap
//!
//! Small requests (at most [`MAX_SMALL`] bytes, alignment at most 16) are
//! rounded up to one of twelve **size classes** (16, 32, 48, 64, 96, 128,
//! 192, 256, 384, 512, 768, 1024 bytes: at most a third wasted above 32
//! bytes). Each class owns **slab pages**: [`PAGE`]-byte, `PAGE`-aligned
//! blocks taken from the backing heap `B`, each a small pool of objects of
//! that class. Everything else — large or strongly aligned requests — is
//! served by `B` directly. In the run-time list, `slab` is `Slab<Tlsf>`.
//!
//! ```text
//!   slab region:  | frame bitmap | backing heap B's region ....................... |
//!                                  | large block | slab page (16 KiB) | free | ...
//!   frame bitmap: one bit per PAGE-aligned frame: 1 = a slab page lives there
//!
//!   slab page:    | page header | obj | obj | obj | ... | obj | tail |
//!                   next/prev (partial list of its class), free list,
//!                   class, used, fresh, guard, used-bitmap (1 bit per obj)
//!   partial[c] -> page <-> page      (pages of class c with a free object)
//! ```
//!
//! - **allocate(small)**: class lookup in a table, take the first page on the
//!   class's partial list, pop its free list (or, while the page still has
//!   never-used objects, take the next one: a page is never threaded in
//!   full), set the object's bit. A page that fills leaves the partial list.
//!   With no partial page, one page is taken from `B` (the slow path).
//!   If `B` has no room for a page, the request goes to `B` as it is.
//! - **free(p)**: find the slab region of `p`, test the frame bit of `p`'s
//!   page frame. Set: `p` is an object; its page header is at `p` rounded
//!   down to `PAGE`. Clear: `p` belongs to `B`. The bitmap lives outside
//!   every block, so user data cannot make a large block pass for a slab
//!   page. Then the object's bit tells a double free; the offset tells an
//!   interior pointer. A page whose last object is freed goes straight back
//!   to `B`, so freeing everything restores `B` exactly.
//! - **damage**: a free object's link (a write after free can reach it) is
//!   checked before it becomes the page's free-list head: another free
//!   object of the page (an object boundary below `fresh`, its bit clear),
//!   or null exactly when it was the last one. A page header (an overflow
//!   of the backing block before the page can reach it) is checked before
//!   it is used: guard, class and counts on allocation, and each partial
//!   list neighbour must be a slab page (frame bit) of the class that links
//!   back. A page whose count drops to 0 must have an empty bitmap. Damage
//!   goes to [`corruption::report`](crate::corruption::report), naming the
//!   object or page; no index is ever computed from an unchecked word.
//!
//! ## Complexity
//!
//! - small allocate and free: O(1) plus finding the region (O(1) for the
//!   newest region, O(regions) for the others);
//!   the slow path costs one `B.allocate` / `B.deallocate`.
//! - large requests: whatever `B` costs, plus O(regions).
//! - `check`: `B`'s check, plus O(objects) per slab page.
//!
//! ## Drawbacks
//!
//! - A page is 16 KiB even for a class with few live objects; twelve classes
//!   can pin twelve pages for twelve small objects.
//! - Returning empty pages at once can make a program that allocates and
//!   frees one object in a loop take and give back a page each time (no
//!   hysteresis, by design: a freed heap is a restored heap).
//! - Small requests aligned to more than 16 bytes go to `B`.
//! - `B` must be handed over empty: memory must reach it through
//!   [`Slab::add_region`](RegionHeap::add_region), which lays the frame
//!   bitmap in front of each region.
//!
//! ## Invariants (checked by [`RegionHeap::check`])
//!
//! - `B`'s own invariants;
//! - a frame bit is set iff a used block of `B` starts a slab page at that
//!   frame; the number of set bits equals the page count;
//! - each page: its guard word matches its address, its class is valid,
//!   `0 < used <= capacity`, `used == popcount(bitmap)`, no bit set at or
//!   past `fresh`, its free list holds exactly `fresh - used` distinct
//!   objects below `fresh`, each at an object boundary with its bit clear;
//! - page `P` of class `c` is on `partial[c]` (exactly once, links
//!   consistent both ways) iff `used < capacity`;
//! - counters: `in_use == Σ used × class size + Σ usable(large blocks)`,
//!   live objects plus large blocks `== counters.live()`, and the running
//!   free-object figures equal the pages'.

use core::mem::size_of;
use core::ptr::{self, NonNull};

use crate::heap::{BlockInfo, BlockState, CheckError, HeapError, HeapErrorKind, RegionHeap};
use crate::region::{Region, RegionError, RegionList, Span};
use crate::stats::{Counters, HeapStats};
use crate::util::{checked_request, read_link};

/// Bytes of a slab page; pages are aligned to their size.
pub const PAGE: usize = 16 * 1024;
const PAGE_SHIFT: u32 = PAGE.trailing_zeros();
/// The largest request served from slab pages.
pub const MAX_SMALL: usize = 1024;
/// The object sizes of the classes.
pub const CLASS_SIZES: [usize; CLASSES] = [16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024];
const CLASSES: usize = 12;

const WORD: usize = size_of::<usize>();
const WORD_BITS: usize = usize::BITS as usize;
/// Words of a page's used-bitmap: enough for the smallest class.
const BITMAP_WORDS: usize = (PAGE / 16).div_ceil(WORD_BITS);
/// Mixed into each page's guard word (address ^ key), to notice a header
/// that was overwritten.
const GUARD_KEY: usize = 0x5a5a_c3c3_u32 as usize;

/// The header at the start of each slab page.
#[repr(C)]
struct Page {
    next: *mut Page,
    prev: *mut Page,
    /// Freed objects of this page, linked through their first word.
    free: *mut u8,
    class: usize,
    used: usize,
    /// Objects `fresh..capacity` were never handed out.
    fresh: usize,
    guard: usize,
    bitmap: [usize; BITMAP_WORDS],
}

/// Offset of the first object in a page.
const OBJ_START: usize = size_of::<Page>().div_ceil(16) * 16;

const _: () = assert!(PAGE.is_power_of_two() && CLASS_SIZES[CLASSES - 1] == MAX_SMALL);
const _: () = assert!(capacity(0) <= BITMAP_WORDS * WORD_BITS && capacity(CLASSES - 1) >= 8);

/// Objects per page of class `c`.
const fn capacity(c: usize) -> usize {
    (PAGE - OBJ_START) / CLASS_SIZES[c]
}

/// Class of a request of `16 * u` bytes, for `u` in `1..=64`.
const CLASS_OF: [u8; MAX_SMALL / 16 + 1] = {
    let mut t = [0u8; MAX_SMALL / 16 + 1];
    let (mut u, mut c) = (1, 0);
    while u <= MAX_SMALL / 16 {
        while CLASS_SIZES[c] < u * 16 {
            c += 1;
        }
        t[u] = c as u8;
        u += 1;
    }
    t
};

/// A slab region's frame bitmap (derived from its span).
#[derive(Clone, Copy)]
struct Frames {
    /// Address of the bitmap (the span's start).
    bitmap: usize,
    /// Frame number (`addr >> PAGE_SHIFT`) of the span's first byte.
    first: usize,
    /// Frames the span touches.
    count: usize,
    /// Where the backing heap's region starts.
    backing_start: usize,
}

impl Frames {
    fn of(start: usize, end: usize) -> Frames {
        let first = start >> PAGE_SHIFT;
        let count = ((end - 1) >> PAGE_SHIFT) - first + 1;
        let bytes = count.div_ceil(WORD_BITS) * WORD;
        Frames {
            bitmap: start,
            first,
            count,
            backing_start: start + bytes.div_ceil(16) * 16,
        }
    }

    fn words(&self) -> usize {
        self.count.div_ceil(WORD_BITS)
    }

    fn word(&self, w: usize) -> *mut usize {
        (self.bitmap + w * WORD) as *mut usize
    }

    /// Word and bit of the frame holding `addr` (which lies in the span).
    fn locate(&self, addr: usize) -> (*mut usize, usize) {
        let f = (addr >> PAGE_SHIFT) - self.first;
        debug_assert!(f < self.count);
        (self.word(f / WORD_BITS), 1 << (f % WORD_BITS))
    }

    fn is_slab(&self, addr: usize) -> bool {
        let (w, bit) = self.locate(addr);
        // SAFETY: the word lies in the bitmap at the start of a span we own.
        unsafe { *w & bit != 0 }
    }

    fn set(&self, addr: usize, slab: bool) {
        let (w, bit) = self.locate(addr);
        // SAFETY: as in `is_slab`.
        unsafe {
            if slab {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }
}

/// `classify` found the pointer in one of our regions, so a backing heap's
/// "not mine" means "not a block" here (the frame bitmap, say).
fn in_our_region(e: HeapError) -> HeapError {
    match e.kind {
        HeapErrorKind::NotOwned => HeapError {
            kind: HeapErrorKind::InvalidPointer,
            ..e
        },
        _ => e,
    }
}

/// What a pointer handed to `free` is.
enum Owner {
    /// An object of the slab page at `page`, index `idx`.
    Small { page: *mut Page, idx: usize },
    /// Possibly a block of the backing heap.
    Large,
}

/// Slab pages of small objects over a backing heap `B` that also serves
/// every larger request.
pub struct Slab<B> {
    backing: B,
    regions: RegionList,
    /// The newest region's span, tried before the region list.
    hot: Span,
    partial: [*mut Page; CLASSES],
    pages: usize,
    /// Free objects in slab pages (never-used ones included), and their bytes.
    free_objects: usize,
    free_object_bytes: usize,
    counters: Counters,
}

// SAFETY: the raw pointers point into regions the heap owns exclusively.
unsafe impl<B: Send> Send for Slab<B> {}

impl<B: RegionHeap> Slab<B> {
    /// A slab heap over `backing`, which must hold no region yet: give memory
    /// to the slab with [`RegionHeap::add_region`].
    pub const fn new(backing: B) -> Self {
        Slab {
            backing,
            regions: RegionList::new(),
            hot: Span { start: 0, end: 0 },
            partial: [ptr::null_mut(); CLASSES],
            pages: 0,
            free_objects: 0,
            free_object_bytes: 0,
            counters: Counters::new(),
        }
    }

    /// The backing heap (for its statistics and checks).
    pub fn backing(&self) -> &B {
        &self.backing
    }

    /// Slab pages currently taken from the backing heap.
    pub fn pages(&self) -> usize {
        self.pages
    }

    fn frames_of(&self, addr: usize) -> Option<Frames> {
        if self.hot.contains(addr) {
            return Some(Frames::of(self.hot.start, self.hot.end));
        }
        self.regions
            .find(addr, 16)
            .map(|s| Frames::of(s.start, s.end))
    }

    /// Classify `ptr`: a used object of a slab page, or a candidate for `B`.
    fn classify(&self, ptr: *const u8) -> Result<Owner, HeapError> {
        let p = ptr as usize;
        let frames = self
            .frames_of(p)
            .ok_or(HeapError::new(HeapErrorKind::NotOwned, ptr))?;
        if !frames.is_slab(p) {
            return Ok(Owner::Large);
        }
        let page = (p & !(PAGE - 1)) as *mut Page;
        // SAFETY: the frame bit says a live slab page starts at `page`; its
        // header was written by `new_page`.
        let (class, fresh, guard, used) =
            unsafe { ((*page).class, (*page).fresh, (*page).guard, (*page).used) };
        if guard != page as usize ^ GUARD_KEY
            || class >= CLASSES
            || fresh > capacity(class)
            || used == 0
            || used > fresh
        {
            return Err(HeapError::new(HeapErrorKind::Corrupted, ptr));
        }
        let size = CLASS_SIZES[class];
        let off = p - page as usize;
        let idx = off.wrapping_sub(OBJ_START) / size;
        if off < OBJ_START || (off - OBJ_START) % size != 0 || idx >= fresh {
            return Err(HeapError::new(HeapErrorKind::InvalidPointer, ptr));
        }
        // SAFETY: as above; `idx < fresh <= capacity` fits the bitmap.
        let bit = unsafe { (*page).bitmap[idx / WORD_BITS] >> (idx % WORD_BITS) & 1 };
        if bit == 0 {
            return Err(HeapError::new(HeapErrorKind::DoubleFree, ptr));
        }
        Ok(Owner::Small { page, idx })
    }

    fn push_partial(&mut self, page: *mut Page, class: usize) {
        let head = self.partial[class];
        // SAFETY: `page` and `head` (if non-null) are live slab pages.
        unsafe {
            (*page).prev = ptr::null_mut();
            (*page).next = head;
            if !head.is_null() {
                (*head).prev = page;
            }
        }
        self.partial[class] = page;
    }

    fn unlink_partial(&mut self, page: *mut Page, class: usize) {
        // SAFETY: `page` is on `partial[class]`, a live slab page.
        let (next, prev) = unsafe { ((*page).next, (*page).prev) };
        // The links lie in the page header, which an overflow of the
        // backing block before the page can reach: each must be a slab page
        // of this class that links back before anything is written.
        // SAFETY: a neighbour is read only once `page_ok` vouched for it.
        let linked = (prev.is_null() && self.partial[class] == page
            || self.page_ok(prev, class) && unsafe { (*prev).next } == page)
            && (next.is_null() || self.page_ok(next, class) && unsafe { (*next).prev } == page);
        if !linked {
            crate::corruption::report(
                page as usize,
                "slab: the partial-list links of this page header were overwritten \
                 (an overflow of the block before the page?)",
            );
        }
        // SAFETY: `prev` and `next` are null or live pages (checked above).
        unsafe {
            if prev.is_null() {
                self.partial[class] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }

    /// Whether `page` (read from a page header, so possibly damaged) is a
    /// live slab page of `class` whose counts are in range: page-aligned,
    /// its frame bit set (a bit no caller can reach, so the header is read
    /// only once it is known to be a page), its guard and class right,
    /// `used <= fresh <= capacity`.
    fn page_ok(&self, page: *mut Page, class: usize) -> bool {
        let a = page as usize;
        a % PAGE == 0
            && self.frames_of(a).is_some_and(|f| f.is_slab(a))
            // SAFETY: the frame bit says a slab page starts at `a`.
            && unsafe { Self::header_ok(page, class) }
    }

    /// The header checks of [`page_ok`](Self::page_ok).
    ///
    /// # Safety
    /// `page` must be a live slab page.
    #[inline(always)]
    unsafe fn header_ok(page: *mut Page, class: usize) -> bool {
        // SAFETY: per the function contract.
        let pg = unsafe { &*page };
        pg.guard == page as usize ^ GUARD_KEY
            && pg.class == class
            && pg.fresh <= capacity(class)
            && pg.used <= pg.fresh
    }

    /// Take a page from the backing heap for class `c` (the slow path).
    #[cold]
    #[inline(never)]
    fn new_page(&mut self, class: usize) -> Option<*mut Page> {
        let p = self.backing.allocate(PAGE, PAGE)?;
        let addr = p.as_ptr() as usize;
        let frames = match self.frames_of(addr) {
            Some(f) if addr % PAGE == 0 => f,
            _ => {
                // Memory the backing heap got elsewhere, or an alignment it
                // did not keep: give it back.
                // SAFETY: `p` was just handed out by the backing heap.
                let _ = unsafe { self.backing.deallocate(p) };
                return None;
            }
        };
        let page = addr as *mut Page;
        // SAFETY: `page` is a fresh PAGE-byte block we own.
        unsafe {
            page.write(Page {
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                free: ptr::null_mut(),
                class,
                used: 0,
                fresh: 0,
                guard: addr ^ GUARD_KEY,
                bitmap: [0; BITMAP_WORDS],
            })
        };
        frames.set(addr, true);
        self.push_partial(page, class);
        self.pages += 1;
        self.free_objects += capacity(class);
        self.free_object_bytes += capacity(class) * CLASS_SIZES[class];
        Some(page)
    }

    fn allocate_small(&mut self, class: usize) -> Option<NonNull<u8>> {
        let mut page = self.partial[class];
        if page.is_null() {
            page = self.new_page(class)?;
        }
        let size = CLASS_SIZES[class];
        let cap = capacity(class);
        // The head of a partial list is a slab page of `class` (pushed
        // by `new_page` / `free_small`, or a neighbour `unlink_partial`
        // checked); its header may still have been overrun since.
        // SAFETY: as just said, a live slab page.
        if !unsafe { Self::header_ok(page, class) } || unsafe { (*page).used } >= cap {
            crate::corruption::report(
                page as usize,
                "slab: this page header was overwritten (an overflow of the block before the page?)",
            );
        }
        // SAFETY: `page` is a live slab page of `class` with a free object
        // (it is on the partial list, its counts checked); objects lie
        // inside the page.
        let pg = unsafe { &mut *page };
        let (obj, idx) = if pg.free.is_null() {
            let idx = pg.fresh;
            if idx >= cap {
                // `used < cap` but no object left: the list was cut short.
                Self::bad_free_list(page as usize);
            }
            pg.fresh += 1;
            (page as usize + OBJ_START + idx * size, idx)
        } else {
            let o = pg.free as usize;
            let Some(idx) = Self::free_object(pg, page as usize, o, size) else {
                Self::bad_free_list(page as usize);
            };
            // SAFETY: `o` is a free object of the page: its first word is
            // its link.
            let next = unsafe { read_link(o as *const u8) };
            // The link must be another free object of the page, or null
            // when `o` is the last one below `fresh` (every freed object is
            // on the list, so `fresh - used` of them are).
            let ok = if next.is_null() {
                pg.fresh - pg.used == 1
            } else {
                next as usize != o
                    && Self::free_object(pg, page as usize, next as usize, size).is_some()
            };
            if !ok {
                crate::corruption::report(
                    o,
                    "slab: the free-list link of this free object was overwritten \
                     (a write after free?)",
                );
            }
            pg.free = next;
            (o, idx)
        };
        pg.bitmap[idx / WORD_BITS] |= 1 << (idx % WORD_BITS);
        pg.used += 1;
        if pg.used == cap {
            self.unlink_partial(page, class);
        }
        self.free_objects -= 1;
        self.free_object_bytes -= size;
        self.counters.on_alloc(size);
        // SAFETY: `obj` lies inside a page, so it is non-null.
        Some(unsafe { NonNull::new_unchecked(obj as *mut u8) })
    }

    /// The index of `o`, the head of `pg`'s free list, if it is a free
    /// object of the page: at an object boundary below `fresh`, its bit
    /// clear. The head was read from a free object's first word, which a
    /// write after free can reach.
    #[inline(always)]
    fn free_object(pg: &Page, page: usize, o: usize, size: usize) -> Option<usize> {
        let off = o.wrapping_sub(page + OBJ_START);
        let idx = off / size;
        (off % size == 0
            && idx < pg.fresh
            && pg.bitmap[idx / WORD_BITS] >> (idx % WORD_BITS) & 1 == 0)
            .then_some(idx)
    }

    /// Report a page whose free-list head (in its header) leads somewhere
    /// no free object is.
    #[cold]
    #[inline(never)]
    fn bad_free_list(page: usize) -> ! {
        crate::corruption::report(
            page,
            "slab: the free-list head in this page header was overwritten \
             (an overflow of the block before the page?)",
        )
    }

    fn free_small(&mut self, page: *mut Page, idx: usize) {
        // SAFETY: `classify` validated `page` and `idx` as a used object.
        let (class, now_used) = unsafe {
            let pg = &mut *page;
            let class = pg.class;
            let obj = (page as usize + OBJ_START + idx * CLASS_SIZES[class]) as *mut *mut u8;
            pg.bitmap[idx / WORD_BITS] &= !(1 << (idx % WORD_BITS));
            obj.write(pg.free);
            pg.free = obj.cast();
            pg.used -= 1;
            (class, pg.used)
        };
        let size = CLASS_SIZES[class];
        self.free_objects += 1;
        self.free_object_bytes += size;
        self.counters.on_free(size);
        if now_used + 1 == capacity(class) {
            self.push_partial(page, class);
        }
        if now_used == 0 {
            self.release_page(page, class);
        }
    }

    /// Give an empty page back to the backing heap.
    #[cold]
    fn release_page(&mut self, page: *mut Page, class: usize) {
        // `used` reached 0: the bitmap must agree before the page goes back
        // (a damaged count would hand live objects to the backing heap).
        // SAFETY: `page` is a live slab page.
        if unsafe { (*page).bitmap.iter().any(|&w| w != 0) } {
            crate::corruption::report(
                page as usize,
                "slab: this page's used count was overwritten (its bitmap still holds objects)",
            );
        }
        self.unlink_partial(page, class);
        let addr = page as usize;
        if let Some(frames) = self.frames_of(addr) {
            frames.set(addr, false);
        }
        // SAFETY: the guard is part of the page; clearing it means a stale
        // pointer into this frame is never mistaken for a page again.
        unsafe { (*page).guard = 0 };
        self.pages -= 1;
        self.free_objects -= capacity(class);
        self.free_object_bytes -= capacity(class) * CLASS_SIZES[class];
        // SAFETY: the page was handed out by the backing heap and holds no
        // live object.
        let r = unsafe { self.backing.deallocate(NonNull::new_unchecked(page.cast())) };
        if r.is_err() {
            crate::corruption::report(
                addr,
                "slab: the backing heap refused this page back: its block header was \
                 overwritten (an overflow of the block before the page?)",
            );
        }
    }

    /// Verify one slab page; return (class, used).
    fn check_page(page: usize) -> Result<(usize, usize), CheckError> {
        // SAFETY: the caller found a frame bit and a used backing block here.
        let pg = unsafe { &*(page as *const Page) };
        if pg.guard != page ^ GUARD_KEY {
            return Err(CheckError::new(page, "slab page guard word damaged"));
        }
        if pg.class >= CLASSES {
            return Err(CheckError::new(page, "slab page class out of range"));
        }
        let (size, cap) = (CLASS_SIZES[pg.class], capacity(pg.class));
        if pg.fresh > cap || pg.used > pg.fresh || pg.used == 0 {
            return Err(CheckError::new(
                page,
                "slab page counts out of range (or empty page kept)",
            ));
        }
        let mut bits = 0usize;
        for (w, &word) in pg.bitmap.iter().enumerate() {
            let valid = pg.fresh.saturating_sub(w * WORD_BITS).min(WORD_BITS);
            if valid < WORD_BITS && word >> valid != 0 {
                return Err(CheckError::new(page, "object bit set past the fresh mark"));
            }
            bits += word.count_ones() as usize;
        }
        if bits != pg.used {
            return Err(CheckError::new(page, "slab page used count != its bitmap"));
        }
        let (mut n, mut cur) = (0usize, pg.free);
        while !cur.is_null() {
            let off = (cur as usize).wrapping_sub(page + OBJ_START);
            let idx = off / size;
            if off % size != 0 || idx >= pg.fresh {
                return Err(CheckError::new(
                    cur as usize,
                    "slab free-list node not an object",
                ));
            }
            if pg.bitmap[idx / WORD_BITS] >> (idx % WORD_BITS) & 1 != 0 {
                return Err(CheckError::new(
                    cur as usize,
                    "slab free-list node marked used",
                ));
            }
            n += 1;
            if n > pg.fresh - pg.used {
                return Err(CheckError::new(
                    cur as usize,
                    "slab free list too long (a cycle)",
                ));
            }
            // SAFETY: `cur` is a free object inside the page.
            cur = unsafe { read_link(cur) };
        }
        if n != pg.fresh - pg.used {
            return Err(CheckError::new(
                page,
                "slab free list shorter than fresh - used",
            ));
        }
        Ok((pg.class, pg.used))
    }

    /// Is the backing block reported by walk a slab page? (its payload is
    /// page-aligned and its frame bit is set)
    fn is_page_block(&self, b: &BlockInfo) -> bool {
        b.state == BlockState::Used
            && b.payload % PAGE == 0
            && self
                .frames_of(b.payload)
                .is_some_and(|f| f.is_slab(b.payload))
    }
}

impl<B: RegionHeap> RegionHeap for Slab<B> {
    fn name(&self) -> &'static str {
        "slab"
    }

    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError> {
        // Lay out what `RegionList::push` will: header, then our span; check
        // overlap first so that nothing is handed to `B` that we then refuse.
        let too_small = RegionError::TooSmall {
            needed: RegionList::HEADER + 2 * PAGE,
            got: 0,
        };
        let trimmed = region.trim_to(16).ok_or(too_small)?;
        let (hdr, end) = (trimmed.start().as_ptr() as usize, trimmed.end_addr());
        let start = hdr + RegionList::HEADER;
        if end <= start + 16 {
            return Err(too_small);
        }
        if self
            .regions
            .spans(16)
            .any(|s| hdr < s.end && s.start - RegionList::HEADER < end)
        {
            return Err(RegionError::Overlaps);
        }
        let frames = Frames::of(start, end);
        if frames.backing_start >= end {
            return Err(too_small);
        }
        // SAFETY: `backing_start..end` lies inside the caller's region, which
        // is ours to hand on; the bitmap and header before it stay ours.
        let sub = unsafe {
            Region::from_raw_parts(frames.backing_start as *mut u8, end - frames.backing_start)
        }
        .ok_or(too_small)?;
        // SAFETY: forwarded from the caller (a sub-span of its region).
        unsafe { self.backing.add_region(sub)? };
        // SAFETY: forwarded from the caller; overlap was ruled out above and
        // the span is large enough, so this cannot fail.
        let span = unsafe { self.regions.push(region, 16, 16)? };
        debug_assert!(span.start == start && span.end == end);
        self.hot = span;
        // SAFETY: the bitmap lies at the start of our span.
        unsafe { ptr::write_bytes(frames.bitmap as *mut u8, 0, frames.words() * WORD) };
        Ok(())
    }

    fn allocate(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let Some((rounded, align)) = checked_request(size, align, 16, 0) else {
            self.counters.on_fail();
            return None;
        };
        let small = rounded <= MAX_SMALL && align <= 16;
        let mut hit = None;
        if small {
            hit = self.allocate_small(CLASS_OF[rounded / 16] as usize);
        }
        // Large requests, and small ones when no page could be had (the
        // backing heap may still hold a smaller free block).
        if hit.is_none() {
            hit = self.backing.allocate(size, align).inspect(|&p| {
                // SAFETY: `p` was just handed out by the backing heap.
                let us = unsafe { self.backing.usable_size(p) }.unwrap_or(size);
                self.counters.on_alloc(us);
            });
        }
        if hit.is_none() {
            self.counters.on_fail();
        }
        hit
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError> {
        match self.classify(ptr.as_ptr())? {
            Owner::Small { page, idx } => {
                self.free_small(page, idx);
                Ok(())
            }
            Owner::Large => {
                // SAFETY: forwarded from the caller.
                let us = unsafe { self.backing.usable_size(ptr) }.map_err(in_our_region)?;
                // SAFETY: as above; `usable_size` accepted it as live.
                unsafe { self.backing.deallocate(ptr) }.map_err(in_our_region)?;
                self.counters.on_free(us);
                Ok(())
            }
        }
    }

    unsafe fn resize_in_place(&mut self, ptr: NonNull<u8>, new_size: usize) -> bool {
        match self.classify(ptr.as_ptr()) {
            Ok(Owner::Small { page, .. }) => {
                // SAFETY: `classify` validated the page.
                let size = CLASS_SIZES[unsafe { (*page).class }];
                checked_request(new_size, 16, 16, 0).is_some_and(|(n, _)| n <= size)
            }
            Ok(Owner::Large) => {
                // SAFETY: forwarded from the caller.
                let Ok(old) = (unsafe { self.backing.usable_size(ptr) }) else {
                    return false;
                };
                // SAFETY: as above.
                if !unsafe { self.backing.resize_in_place(ptr, new_size) } {
                    return false;
                }
                // SAFETY: still live after the resize.
                let new = unsafe { self.backing.usable_size(ptr) }.unwrap_or(old);
                self.counters.on_resize(old, new);
                true
            }
            Err(_) => false,
        }
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, HeapError> {
        match self.classify(ptr.as_ptr())? {
            // SAFETY: `classify` validated the page.
            Owner::Small { page, .. } => Ok(CLASS_SIZES[unsafe { (*page).class }]),
            // SAFETY: forwarded from the caller.
            Owner::Large => unsafe { self.backing.usable_size(ptr) }.map_err(in_our_region),
        }
    }

    fn owns(&self, ptr: *const u8) -> bool {
        self.regions.contains(ptr as usize, 16)
    }

    fn stats(&self) -> HeapStats {
        let b = self.backing.stats();
        let small = (0..CLASSES)
            .rev()
            .find(|&c| !self.partial[c].is_null())
            .map_or(0, |c| CLASS_SIZES[c]);
        HeapStats {
            region_bytes: self.regions.bytes(),
            free: b.free + self.free_object_bytes,
            largest_free: b.largest_free.max(small),
            free_blocks: b.free_blocks + self.free_objects,
            ..HeapStats::default()
        }
        .with_counters(&self.counters)
    }

    fn walk(&self, f: &mut dyn FnMut(BlockInfo)) {
        // Our span's start (bitmap, and `B`'s region header after it) is
        // reported just before the first span `B` reports in that region.
        let mut region_start = None;
        self.backing.walk(&mut |b| {
            let span = self.regions.find(b.addr, 16);
            if let Some(s) = span.filter(|s| Some(s.start) != region_start) {
                region_start = Some(s.start);
                if b.addr > s.start {
                    f(BlockInfo {
                        addr: s.start,
                        size: b.addr - s.start,
                        state: BlockState::Overhead,
                        payload: 0,
                    });
                }
            }
            if !self.is_page_block(&b) {
                f(b);
                return;
            }
            let page = b.payload;
            // SAFETY: a live slab page (frame bit set, used backing block).
            let pg = unsafe { &*(page as *const Page) };
            let Some(&size) = CLASS_SIZES.get(pg.class) else {
                f(BlockInfo {
                    state: BlockState::Overhead,
                    payload: 0,
                    ..b
                });
                return;
            };
            let objects = page + OBJ_START;
            f(BlockInfo {
                addr: b.addr,
                size: objects - b.addr,
                state: BlockState::Overhead,
                payload: 0,
            });
            let cap = capacity(pg.class);
            for i in 0..cap {
                let addr = objects + i * size;
                let used = pg.bitmap[i / WORD_BITS] >> (i % WORD_BITS) & 1 == 1;
                f(BlockInfo {
                    addr,
                    size,
                    state: if used {
                        BlockState::Used
                    } else {
                        BlockState::Free
                    },
                    payload: if used { addr } else { 0 },
                });
            }
            let tail = objects + cap * size;
            if b.addr + b.size > tail {
                f(BlockInfo {
                    addr: tail,
                    size: b.addr + b.size - tail,
                    state: BlockState::Overhead,
                    payload: 0,
                });
            }
        });
    }

    fn check(&self) -> Result<(), CheckError> {
        self.regions.check()?;
        self.backing.check()?;
        // Pages and large blocks, as the backing heap sees them.
        let mut err = None;
        let (mut pages, mut in_use, mut live) = (0usize, 0usize, 0u64);
        let (mut free_objects, mut free_bytes) = (0usize, 0usize);
        let mut partial = [0usize; CLASSES];
        self.backing.walk(&mut |b| {
            if err.is_some() || b.state != BlockState::Used {
                return;
            }
            if self.is_page_block(&b) {
                match Self::check_page(b.payload) {
                    Ok((class, used)) => {
                        pages += 1;
                        in_use += used * CLASS_SIZES[class];
                        live += used as u64;
                        free_objects += capacity(class) - used;
                        free_bytes += (capacity(class) - used) * CLASS_SIZES[class];
                        partial[class] += usize::from(used < capacity(class));
                    }
                    Err(e) => err = Some(e),
                }
            } else {
                let p = b.payload as *mut u8;
                // SAFETY: a used block of the backing heap, as its walk says.
                match NonNull::new(p).map(|p| unsafe { self.backing.usable_size(p) }) {
                    Some(Ok(us)) => {
                        in_use += us;
                        live += 1;
                    }
                    _ => {
                        err = Some(CheckError::new(
                            b.payload,
                            "backing block has no usable size",
                        ))
                    }
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let mut bits = 0usize;
        for span in self.regions.spans(16) {
            let frames = Frames::of(span.start, span.end);
            for w in 0..frames.words() {
                // SAFETY: the word lies in the bitmap at the span's start.
                bits += unsafe { *frames.word(w) }.count_ones() as usize;
            }
        }
        if bits != pages || pages != self.pages {
            return Err(CheckError::new(
                0,
                "frame bits != slab pages found != page count",
            ));
        }
        for (class, &want) in partial.iter().enumerate() {
            let (mut n, mut prev, mut cur) = (0usize, ptr::null_mut(), self.partial[class]);
            while !cur.is_null() {
                let a = cur as usize;
                if a % PAGE != 0 || !self.frames_of(a).is_some_and(|f| f.is_slab(a)) {
                    return Err(CheckError::new(
                        a,
                        "partial list holds something not a slab page",
                    ));
                }
                // SAFETY: a live slab page (its frame bit is set).
                let pg = unsafe { &*cur };
                if pg.class != class || pg.used >= capacity(class) || pg.prev != prev {
                    return Err(CheckError::new(
                        a,
                        "partial list entry: wrong class, full, or bad link",
                    ));
                }
                n += 1;
                if n > want {
                    return Err(CheckError::new(
                        a,
                        "partial list longer than its non-full pages",
                    ));
                }
                prev = cur;
                cur = pg.next;
            }
            if n != want {
                return Err(CheckError::new(
                    class,
                    "a non-full slab page is missing from its partial list",
                ));
            }
        }
        if free_objects != self.free_objects || free_bytes != self.free_object_bytes {
            return Err(CheckError::new(
                0,
                "free-object figures differ from the pages",
            ));
        }
        if in_use != self.counters.in_use {
            return Err(CheckError::new(
                0,
                "objects + large blocks != in_use counter",
            ));
        }
        if live != self.counters.live() {
            return Err(CheckError::new(
                0,
                "live objects + large blocks != live counter",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_small_size() {
        for (u, &c) in CLASS_OF.iter().enumerate().skip(1) {
            let c = c as usize;
            assert!(CLASS_SIZES[c] >= u * 16);
            assert!(
                c == 0 || CLASS_SIZES[c - 1] < u * 16,
                "class not the smallest fit"
            );
        }
        assert_eq!(OBJ_START % 16, 0);
        assert!(capacity(0) <= BITMAP_WORDS * WORD_BITS);
    }
}
