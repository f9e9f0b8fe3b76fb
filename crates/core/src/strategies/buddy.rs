//! # Buddy: power-of-two blocks that split in halves and merge back
//!
//! Every block has a size `16 << order` and starts at an address that is a
//! multiple of its size (*naturally aligned*). A block of order `k + 1` splits
//! into two halves of order `k`, which are each other's **buddy**; the buddy
//! of the block at `a` with size `s` is at `a ^ s` — one XOR, no search.
//!
//! - **Allocate** `n` bytes aligned to `al`: round `max(n, al)` up to a power
//!   of two (order `k`), take the smallest non-empty free list of order
//!   `j >= k` (a bitmap of non-empty lists finds it in one instruction), and
//!   split the block `j - k` times, putting each upper half on the free list
//!   of its order. Natural alignment gives every alignment up to the block
//!   size for free, 64 KiB included.
//! - **Free**: look the block's order up in the side table, then while the
//!   buddy is a free block of the same order, unlink it and merge. The heap
//!   is therefore always *fully coalesced*.
//! - **Shrink in place**: split the block and free the upper halves.
//!   **Grow in place**: if the block is the lower half at each level up to
//!   the new order and every buddy above it is one free block, absorb them.
//!
//! ```text
//!   order 3 (128 B)  [...............................................]
//!   order 2 (64 B)   [.......A (used).......][.......B (free).......]
//!   order 1 (32 B)                           ... B splits on demand:
//!                                            [ B0 (used) ][ B1 (free)]
//!   buddy(B0) = B0 ^ 32 = B1;   buddy(A) = A ^ 64 = B
//!
//!   region:  | side table: 1 byte per 16-byte unit |  area: blocks ...   |
//!   table byte at a block's first unit:  USED|order  or  FREE|order
//!   table byte at every other unit:      0
//! ```
//!
//! ## Regions of any size
//!
//! A region's area (after its side table) is carved from left to right into
//! the largest naturally aligned power-of-two blocks that fit. A buddy that
//! would fall outside the area is simply never free, so blocks near the edges
//! stop merging there. Many regions can be added; each has its own table.
//!
//! ## Why a side table and not a header
//!
//! A header in front of each block would break natural alignment (a 64-byte
//! block would need 64 + 16 bytes) and would live where user data can
//! overwrite it. The side table costs one byte per 16-byte unit (about 6 % of
//! the region) and, because only the first unit of each block carries a
//! non-zero byte, it tells exactly whether a pointer starts a used block, a
//! free block (double free) or lies inside one (interior pointer), from memory
//! no caller can reach. Splitting writes one byte, merging clears one: O(1).
//!
//! ## Complexity
//!
//! - allocate: O(orders) splits at most (≤ 60), O(1) list operations each;
//!   finding the right list is one bit scan.
//! - free: O(orders) merges at most, each O(1) (doubly linked lists).
//! - finding the region of a pointer: O(1) for the newest region (kept
//!   aside), otherwise a walk of the region list: O(regions), usually 1–4.
//! - `check`: O(area / 16) per region (it reads the whole side table).
//!
//! ## Drawbacks
//!
//! - Internal fragmentation: a request is rounded up to a power of two, so a
//!   1025-byte request uses 2 KiB (up to 50 % waste); large alignments waste
//!   more (a 16-byte block aligned to 64 KiB uses 64 KiB).
//! - External fragmentation of a special kind: two free neighbours that are
//!   not buddies never merge.
//! - The side table costs 1/17 of every region, and `add_region` clears it,
//!   so a region from the OS gets that share of its pages touched at once.
//!
//! ## Invariants (checked by [`RegionHeap::check`])
//!
//! - the side table parses from the area's start as a sequence of blocks:
//!   each block's first byte is `USED|k` or `FREE|k`, the block is aligned to
//!   `16 << k` and ends inside the area, every other byte of it is 0;
//! - every free block is on the list of its order exactly once, and every
//!   node on list `k` is a free block of order `k` (links consistent both
//!   ways); bit `k` of the non-empty bitmap is set iff list `k` is non-empty;
//! - fully coalesced: no free block's buddy is a free block of the same order;
//! - `Σ size(used) == counters.in_use`, `#used == counters.live()`,
//!   `Σ size(free) == free_bytes`, `#free == free_blocks`.

use core::ptr::{self, NonNull};

use crate::heap::{BlockInfo, BlockState, CheckError, HeapError, HeapErrorKind, RegionHeap};
use crate::region::{Region, RegionError, RegionList, Span};
use crate::stats::{Counters, HeapStats};
use crate::util::{align_up, checked_request};

/// log2 of the smallest block (one table unit).
const MIN_SHIFT: u32 = 4;
/// The smallest block: 16 bytes, enough for a free-list node.
const MIN_BLOCK: usize = 1 << MIN_SHIFT;
/// Number of orders: order `k` is a block of `16 << k` bytes.
const ORDERS: usize = usize::BITS as usize - MIN_SHIFT as usize;

/// Table byte flags; the low six bits hold the order.
const USED: u8 = 0x80;
const FREE: u8 = 0x40;
const ORDER_MASK: u8 = 0x3f;

const _: () = assert!(ORDERS <= usize::BITS as usize && ORDERS <= ORDER_MASK as usize + 1);
const _: () = assert!(core::mem::size_of::<Node>() <= MIN_BLOCK);

/// A free block's first bytes: its links on the list of its order.
#[repr(C)]
struct Node {
    next: *mut Node,
    prev: *mut Node,
}

/// Where a region's table and blocks lie (derived from its span).
#[derive(Clone, Copy)]
struct Area {
    /// First byte of the side table (the span's start).
    table: usize,
    /// First byte of the first block (16-aligned).
    start: usize,
    /// One past the last byte of the last block.
    end: usize,
}

impl Area {
    /// Split a span into table and area: the table needs one byte per unit
    /// of the area, so `span = table + 16 * units` with `units <= table`.
    fn of(span: &Span) -> Option<Area> {
        let table_len = align_up(span.len() / (MIN_BLOCK + 1) + 1, MIN_BLOCK)?;
        let start = span.start.checked_add(table_len)?;
        if start >= span.end {
            return None;
        }
        Some(Area {
            table: span.start,
            start,
            end: span.end,
        })
    }

    fn contains_block(&self, addr: usize, size: usize) -> bool {
        addr >= self.start && addr <= self.end && self.end - addr >= size
    }

    /// The table byte for the unit at `addr` (which must lie in the area).
    fn get(&self, addr: usize) -> u8 {
        debug_assert!(addr >= self.start && addr < self.end && addr % MIN_BLOCK == 0);
        let i = (addr - self.start) >> MIN_SHIFT;
        // SAFETY: `i < units <= table length` (see `of`); the table lies in
        // memory this heap owns.
        unsafe { *((self.table + i) as *const u8) }
    }

    /// The first unit in `from..to` whose table byte is not 0 (`check` only:
    /// it reads a word of the table at a time).
    fn first_marked(&self, from: usize, to: usize) -> Option<usize> {
        if from >= to {
            return None;
        }
        let (i, j) = (
            (from - self.start) >> MIN_SHIFT,
            (to - self.start) >> MIN_SHIFT,
        );
        // SAFETY: `i..j` are units of the area, so the bytes lie in the table.
        let bytes = unsafe { core::slice::from_raw_parts((self.table + i) as *const u8, j - i) };
        // SAFETY: any bit pattern is a valid usize.
        let (head, words, tail) = unsafe { bytes.align_to::<usize>() };
        let at = |k: usize| Some(from + (k << MIN_SHIFT));
        if let Some(k) = head.iter().position(|&b| b != 0) {
            return at(k);
        }
        if let Some(w) = words.iter().position(|&w| w != 0) {
            let base = head.len() + w * core::mem::size_of::<usize>();
            let k = bytes[base..].iter().position(|&b| b != 0).unwrap_or(0);
            return at(base + k);
        }
        let base = bytes.len() - tail.len();
        tail.iter().position(|&b| b != 0).and_then(|k| at(base + k))
    }

    fn set(&self, addr: usize, byte: u8) {
        debug_assert!(addr >= self.start && addr < self.end && addr % MIN_BLOCK == 0);
        let i = (addr - self.start) >> MIN_SHIFT;
        // SAFETY: as in `get`.
        unsafe { *((self.table + i) as *mut u8) = byte }
    }
}

const fn size_of_order(order: usize) -> usize {
    MIN_BLOCK << order
}

/// The order of the smallest block holding `size` bytes aligned to `align`
/// (both already validated and at least 16).
fn order_for(size: usize, align: usize) -> Option<usize> {
    let need = size.max(align).checked_next_power_of_two()?;
    let order = (need.trailing_zeros() - MIN_SHIFT) as usize;
    (order < ORDERS).then_some(order)
}

/// A binary buddy allocator over any number of regions.
pub struct Buddy {
    regions: RegionList,
    /// The newest region's span, tried before the region list.
    hot: Span,
    /// `Area::of(hot)`, kept so free-list links are checked without
    /// recomputing it (empty before the first region).
    hot_area: Area,
    /// Head of the free list of each order (null when empty).
    heads: [*mut Node; ORDERS],
    /// Bit `k` set iff `heads[k]` is non-null.
    nonempty: usize,
    free_bytes: usize,
    free_blocks: usize,
    counters: Counters,
}

// SAFETY: the raw pointers point into regions the heap owns exclusively;
// nothing is shared with another thread.
unsafe impl Send for Buddy {}

impl Default for Buddy {
    fn default() -> Self {
        Self::new()
    }
}

impl Buddy {
    /// An empty heap; give it memory with [`RegionHeap::add_region`].
    pub const fn new() -> Self {
        Buddy {
            regions: RegionList::new(),
            hot: Span { start: 0, end: 0 },
            hot_area: Area {
                table: 0,
                start: 0,
                end: 0,
            },
            heads: [ptr::null_mut(); ORDERS],
            nonempty: 0,
            free_bytes: 0,
            free_blocks: 0,
            counters: Counters::new(),
        }
    }

    fn area_of(&self, addr: usize) -> Option<Area> {
        if self.hot.contains(addr) {
            return Some(self.hot_area);
        }
        self.regions
            .find(addr, MIN_BLOCK)
            .and_then(|s| Area::of(&s))
    }

    /// Mark `addr` a free block of `order` and put it on its list.
    fn push_free(&mut self, area: &Area, addr: usize, order: usize) {
        area.set(addr, FREE | order as u8);
        let node = addr as *mut Node;
        let head = self.heads[order];
        // SAFETY: `addr` starts a free block of at least 16 bytes in an area
        // we own; `head`, if non-null, is another such block.
        unsafe {
            node.write(Node {
                next: head,
                prev: ptr::null_mut(),
            });
            if !head.is_null() {
                (*head).prev = node;
            }
        }
        self.heads[order] = node;
        self.nonempty |= 1 << order;
        self.free_bytes += size_of_order(order);
        self.free_blocks += 1;
    }

    /// Whether `link`, read from a free block's node, may be followed: null,
    /// or a free block of `order` in one of our areas, as its side-table
    /// byte (which no caller can reach) says. The nodes live in memory the
    /// caller once owned, so a write after free can put anything there;
    /// [`unlink`](Self::unlink) also requires each neighbour to link back.
    /// Checking the table byte, not only the place, keeps a forged link
    /// from naming a used block whose contents the caller controls.
    #[inline(always)]
    fn link_ok(&self, link: *mut Node, order: usize) -> bool {
        let a = link as usize;
        let size = size_of_order(order);
        let hot = &self.hot_area;
        // In the newest area (one compare), aligned to the order's size,
        // marked free of this order.
        if a.wrapping_sub(hot.start) <= (hot.end - hot.start).saturating_sub(size) {
            return a & (size - 1) == 0 && a < hot.end && hot.get(a) == FREE | order as u8;
        }
        a == 0 || self.link_ok_cold(a, order)
    }

    /// [`link_ok`](Self::link_ok) for a link outside the newest area.
    #[cold]
    #[inline(never)]
    fn link_ok_cold(&self, a: usize, order: usize) -> bool {
        let size = size_of_order(order);
        a & (size - 1) == 0
            && self.area_of(a).is_some_and(|area| {
                area.contains_block(a, size) && area.get(a) == FREE | order as u8
            })
    }

    /// Take the free block at `addr` (of `order`) off its list. The caller
    /// rewrites its table byte. Links that do not check out (see
    /// [`link_ok`](Self::link_ok), and each neighbour must link back) are
    /// reported as corruption instead of being written through.
    #[inline(always)]
    fn unlink(&mut self, addr: usize, order: usize) {
        const DAMAGED: &str = "buddy: the list links of this free block were overwritten \
                               (a write after free?)";
        let node = addr as *mut Node;
        // SAFETY: `addr` is a free block of `order` (its table byte says
        // so), so its node is readable.
        let Node { next, prev } = unsafe { node.read() };
        if !self.link_ok(next, order) || !self.link_ok(prev, order) {
            crate::corruption::report(addr, DAMAGED);
        }
        // SAFETY: `next` and `prev` are null or free blocks of `order` in
        // our areas (checked just above), so their nodes are readable.
        let linked = unsafe {
            (if prev.is_null() {
                self.heads[order] == node
            } else {
                (*prev).next == node
            }) && (next.is_null() || (*next).prev == node)
        };
        if !linked {
            crate::corruption::report(addr, DAMAGED);
        }
        // SAFETY: as above; every node written is one of ours.
        unsafe {
            if prev.is_null() {
                self.heads[order] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
        if self.heads[order].is_null() {
            self.nonempty &= !(1 << order);
        }
        self.free_bytes -= size_of_order(order);
        self.free_blocks -= 1;
    }

    /// Free the block at `addr` of `order` and merge it with its buddies.
    fn release(&mut self, area: &Area, mut addr: usize, mut order: usize) {
        while order + 1 < ORDERS {
            let size = size_of_order(order);
            let buddy = addr ^ size;
            if !area.contains_block(buddy, size) || area.get(buddy) != FREE | order as u8 {
                break;
            }
            self.unlink(buddy, order);
            let upper = addr.max(buddy);
            area.set(upper, 0);
            addr = addr.min(buddy);
            order += 1;
        }
        self.push_free(area, addr, order);
    }

    /// Split the used block at `addr` from `from` down to order `to`,
    /// freeing the upper halves. Their buddies are the (used) lower halves,
    /// so none of them merges.
    fn split_down(&mut self, area: &Area, addr: usize, from: usize, to: usize) {
        let mut order = from;
        while order > to {
            order -= 1;
            self.push_free(area, addr + size_of_order(order), order);
        }
        area.set(addr, USED | to as u8);
    }

    /// Validate `ptr` as a used block: its area and order.
    fn lookup(&self, ptr: *const u8) -> Result<(Area, usize), HeapError> {
        let p = ptr as usize;
        let area = self
            .area_of(p)
            .ok_or(HeapError::new(HeapErrorKind::NotOwned, ptr))?;
        if p < area.start || p % MIN_BLOCK != 0 {
            return Err(HeapError::new(HeapErrorKind::InvalidPointer, ptr));
        }
        let byte = area.get(p);
        if byte & USED != 0 {
            return Ok((area, (byte & ORDER_MASK) as usize));
        }
        if byte & FREE != 0 {
            return Err(HeapError::new(HeapErrorKind::DoubleFree, ptr));
        }
        // Inside some block: a pointer into a free block is most likely one
        // that was freed and then merged away.
        let kind = match Self::enclosing(&area, p) {
            Some(b) if b & FREE != 0 => HeapErrorKind::DoubleFree,
            _ => HeapErrorKind::InvalidPointer,
        };
        Err(HeapError::new(kind, ptr))
    }

    /// The table byte of the block containing `p` (error path only): the
    /// block starts at `p` rounded down to its own size, so try each order.
    fn enclosing(area: &Area, p: usize) -> Option<u8> {
        (1..ORDERS).find_map(|order| {
            let size = size_of_order(order);
            let start = p & !(size - 1);
            if start < area.start {
                return None;
            }
            let b = area.get(start);
            (b != 0 && (b & ORDER_MASK) as usize >= order).then_some(b)
        })
    }

    /// Check one free list; return its length.
    fn check_list(&self, order: usize) -> Result<usize, CheckError> {
        let mut prev: *mut Node = ptr::null_mut();
        let mut cur = self.heads[order];
        let mut n = 0usize;
        while !cur.is_null() {
            let a = cur as usize;
            let area = self
                .area_of(a)
                .ok_or(CheckError::new(a, "free-list node outside every region"))?;
            if !area.contains_block(a, size_of_order(order)) || a % size_of_order(order) != 0 {
                return Err(CheckError::new(a, "free-list node misplaced for its order"));
            }
            if area.get(a) != FREE | order as u8 {
                return Err(CheckError::new(
                    a,
                    "free-list node's table byte is not FREE of its order",
                ));
            }
            // SAFETY: `a` is a free block in an area we own (checked above).
            let node = unsafe { cur.read() };
            if node.prev != prev {
                return Err(CheckError::new(a, "free-list back link is wrong"));
            }
            n += 1;
            if n > self.free_blocks {
                return Err(CheckError::new(a, "free list longer than the free count"));
            }
            prev = cur;
            cur = node.next;
        }
        if (self.nonempty >> order & 1 == 1) != (n > 0) {
            return Err(CheckError::new(
                order,
                "non-empty bitmap disagrees with a free list",
            ));
        }
        Ok(n)
    }
}

impl RegionHeap for Buddy {
    fn name(&self) -> &'static str {
        "buddy"
    }

    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError> {
        // Least span: a 16-byte table and one 16-byte block.
        // SAFETY: forwarded from the caller.
        let span = unsafe { self.regions.push(region, MIN_BLOCK, 2 * MIN_BLOCK)? };
        let Some(area) = Area::of(&span) else {
            // `push` guaranteed 32 bytes, which `Area::of` always splits.
            return Err(RegionError::TooSmall {
                needed: 2 * MIN_BLOCK,
                got: span.len(),
            });
        };
        // SAFETY: the table lies in the span we now own.
        unsafe { ptr::write_bytes(area.table as *mut u8, 0, area.start - area.table) };
        self.hot = span;
        self.hot_area = area;
        let mut at = area.start;
        while at < area.end {
            let fit = usize::BITS - 1 - (area.end - at).leading_zeros();
            let shift = at.trailing_zeros().min(fit);
            let order = ((shift - MIN_SHIFT) as usize).min(ORDERS - 1);
            self.push_free(&area, at, order);
            at += size_of_order(order);
        }
        Ok(())
    }

    fn allocate(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let Some(order) = checked_request(size, align, MIN_BLOCK, 0)
            .and_then(|(size, align)| order_for(size, align))
        else {
            self.counters.on_fail();
            return None;
        };
        let candidates = self.nonempty >> order;
        if candidates == 0 {
            self.counters.on_fail();
            return None;
        }
        let from = order + candidates.trailing_zeros() as usize;
        let addr = self.heads[from] as usize;
        let Some(area) = self.area_of(addr) else {
            debug_assert!(false, "buddy: free block {addr:#x} outside every region");
            self.counters.on_fail();
            return None;
        };
        self.unlink(addr, from);
        self.split_down(&area, addr, from, order);
        self.counters.on_alloc(size_of_order(order));
        // SAFETY: blocks lie inside regions, so `addr` is non-null.
        Some(unsafe { NonNull::new_unchecked(addr as *mut u8) })
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError> {
        let (area, order) = self.lookup(ptr.as_ptr())?;
        self.counters.on_free(size_of_order(order));
        self.release(&area, ptr.as_ptr() as usize, order);
        Ok(())
    }

    unsafe fn resize_in_place(&mut self, ptr: NonNull<u8>, new_size: usize) -> bool {
        let Ok((area, old)) = self.lookup(ptr.as_ptr()) else {
            return false;
        };
        let Some(new) = checked_request(new_size, MIN_BLOCK, MIN_BLOCK, 0)
            .and_then(|(size, _)| order_for(size, MIN_BLOCK))
        else {
            return false;
        };
        let addr = ptr.as_ptr() as usize;
        if new < old {
            self.split_down(&area, addr, old, new);
        } else if new > old {
            // Every level must have the block as its lower half and a whole
            // free buddy above it; look before touching anything.
            let fits = (old..new).all(|k| {
                let size = size_of_order(k);
                addr % (2 * size) == 0
                    && area.contains_block(addr + size, size)
                    && area.get(addr + size) == FREE | k as u8
            });
            if !fits {
                return false;
            }
            for k in old..new {
                let buddy = addr + size_of_order(k);
                self.unlink(buddy, k);
                area.set(buddy, 0);
            }
            area.set(addr, USED | new as u8);
        }
        self.counters
            .on_resize(size_of_order(old), size_of_order(new));
        true
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, HeapError> {
        let (_, order) = self.lookup(ptr.as_ptr())?;
        Ok(size_of_order(order))
    }

    fn owns(&self, ptr: *const u8) -> bool {
        self.regions.contains(ptr as usize, MIN_BLOCK)
    }

    fn stats(&self) -> HeapStats {
        let largest_free = match self.nonempty {
            0 => 0,
            m => size_of_order((usize::BITS - 1 - m.leading_zeros()) as usize),
        };
        HeapStats {
            region_bytes: self.regions.bytes(),
            free: self.free_bytes,
            largest_free,
            free_blocks: self.free_blocks,
            ..HeapStats::default()
        }
        .with_counters(&self.counters)
    }

    fn walk(&self, f: &mut dyn FnMut(BlockInfo)) {
        for span in self.regions.spans(MIN_BLOCK) {
            let Some(area) = Area::of(&span) else {
                continue;
            };
            f(BlockInfo {
                addr: span.start,
                size: area.start - span.start,
                state: BlockState::Overhead,
                payload: 0,
            });
            let mut at = area.start;
            while at < area.end {
                let b = area.get(at);
                let size = size_of_order((b & ORDER_MASK) as usize);
                if b & (USED | FREE) == 0 || !area.contains_block(at, size) {
                    // Damaged table (`check` names it): report the rest as overhead.
                    f(BlockInfo {
                        addr: at,
                        size: area.end - at,
                        state: BlockState::Overhead,
                        payload: 0,
                    });
                    break;
                }
                let used = b & USED != 0;
                f(BlockInfo {
                    addr: at,
                    size,
                    state: if used {
                        BlockState::Used
                    } else {
                        BlockState::Free
                    },
                    payload: if used { at } else { 0 },
                });
                at += size;
            }
        }
    }

    fn check(&self) -> Result<(), CheckError> {
        self.regions.check()?;
        let mut listed = 0usize;
        for order in 0..ORDERS {
            listed += self.check_list(order)?;
        }
        let (mut in_use, mut live, mut free, mut nfree) = (0usize, 0u64, 0usize, 0usize);
        for span in self.regions.spans(MIN_BLOCK) {
            let area = Area::of(&span).ok_or(CheckError::new(
                span.start,
                "region too small for a table and a block",
            ))?;
            let mut at = area.start;
            while at < area.end {
                let b = area.get(at);
                let order = (b & ORDER_MASK) as usize;
                let size = size_of_order(order);
                if b & (USED | FREE) == 0 || b & (USED | FREE) == USED | FREE || order >= ORDERS {
                    return Err(CheckError::new(
                        at,
                        "table byte at a block start is not a block",
                    ));
                }
                if at % size != 0 || !area.contains_block(at, size) {
                    return Err(CheckError::new(
                        at,
                        "block not aligned to its size or past the area",
                    ));
                }
                if let Some(u) = area.first_marked(at + MIN_BLOCK, at + size) {
                    return Err(CheckError::new(u, "non-zero table byte inside a block"));
                }
                if b & USED != 0 {
                    in_use += size;
                    live += 1;
                } else {
                    free += size;
                    nfree += 1;
                    let buddy = at ^ size;
                    if area.contains_block(buddy, size) && area.get(buddy) == b {
                        return Err(CheckError::new(
                            at,
                            "free block's buddy is free: not coalesced",
                        ));
                    }
                }
                at += size;
            }
        }
        if nfree != listed || nfree != self.free_blocks {
            return Err(CheckError::new(
                0,
                "free blocks in the table != free-list nodes / count",
            ));
        }
        if free != self.free_bytes {
            return Err(CheckError::new(
                0,
                "free bytes in the table != free_bytes counter",
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_rounding() {
        assert_eq!(order_for(16, 16), Some(0));
        assert_eq!(order_for(17, 16), Some(1));
        assert_eq!(order_for(1024, 16), Some(6));
        assert_eq!(order_for(16, 4096), Some(8));
        assert_eq!(order_for(usize::MAX / 2 + 2, 16), None);
    }
}
