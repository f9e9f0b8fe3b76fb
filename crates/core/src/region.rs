//! Regions: the memory a heap is handed, and the intrusive list heaps keep
//! of them.
//!
//! A [`Region`] is a claim: "these `len` bytes at `start` are yours for as
//! long as the heap lives, and nobody else touches them". The safe
//! constructor takes a `&'static mut` slice, which proves exactly that; the
//! unsafe one takes raw parts from code that knows (a kernel's memory map, an
//! emulator's guest RAM, an `mmap`).
//!
//! [`RegionList`] is how a heap remembers its regions without allocating: the
//! first [`RegionList::HEADER`] bytes of each region hold a [`RegionHeader`]
//! (`next`, `end`) and the heap manages the bytes after it.
//!
//! ```text
//!   region A                              region B
//!   +--------+---------------------+      +--------+----------------+
//!   | header | managed by the heap |      | header | managed ...    |
//!   +--------+---------------------+      +--------+----------------+
//!     | next ---------------------------->  | next -> null
//! ```
//!
//! Invariants (checked by [`RegionList::check`]):
//! - every header's `end` is above the header and its `start` is 16-aligned;
//! - regions do not overlap.

use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use crate::heap::CheckError;
use crate::util::{align_down, align_up};

/// A span of memory handed to a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: a Region is a claim on memory, not a reference into shared state;
// moving the claim to another thread is what `Locked<H>` does on purpose.
unsafe impl Send for Region {}

impl Region {
    /// A region over a `'static` buffer: the borrow proves that nothing else
    /// will ever touch these bytes.
    pub fn from_static(mem: &'static mut [MaybeUninit<u8>]) -> Self {
        let len = mem.len();
        let start = NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap_or(NonNull::dangling());
        Region { start, len }
    }

    /// A region from raw parts. Returns `None` for a null `start` or a span
    /// that would wrap around the address space.
    ///
    /// # Safety
    /// `start..start + len` must be valid for reads and writes, and used by
    /// nothing but the heap it is handed to, for as long as that heap (or any
    /// pointer it handed out) lives.
    pub unsafe fn from_raw_parts(start: *mut u8, len: usize) -> Option<Self> {
        let start = NonNull::new(start)?;
        (start.as_ptr() as usize).checked_add(len)?;
        Some(Region { start, len })
    }

    /// First byte.
    pub fn start(&self) -> NonNull<u8> {
        self.start
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` for a zero-length region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the last byte, as an address.
    pub fn end_addr(&self) -> usize {
        self.start.as_ptr() as usize + self.len
    }

    /// The largest sub-span whose start and end are multiples of `align`
    /// (a power of two), or `None` if no such non-empty span exists.
    pub fn trim_to(&self, align: usize) -> Option<Region> {
        let s = align_up(self.start.as_ptr() as usize, align)?;
        let e = align_down(self.end_addr(), align);
        if e <= s {
            return None;
        }
        let offset = s - self.start.as_ptr() as usize;
        Some(Region {
            // SAFETY: `s` lies inside the original span (s < e <= end), so
            // the offset stays within the region's allocation.
            start: unsafe { NonNull::new_unchecked(self.start.as_ptr().add(offset)) },
            len: e - s,
        })
    }
}

/// Why a region was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// After trimming to the heap's alignment and taking its metadata there
    /// is no room for even one block.
    TooSmall {
        /// Bytes the heap needs at least.
        needed: usize,
        /// Bytes usable after trimming.
        got: usize,
    },
    /// The region overlaps one the heap already holds.
    Overlaps,
    /// The heap cannot take more regions (it said how many it takes in its docs).
    Full,
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegionError::TooSmall { needed, got } => write!(
                f,
                "region too small: {got} usable bytes after alignment, need at least {needed}"
            ),
            RegionError::Overlaps => f.write_str("region overlaps one the heap already holds"),
            RegionError::Full => f.write_str("heap cannot take more regions"),
        }
    }
}

/// The header at the start of each region in a [`RegionList`].
#[repr(C, align(16))]
pub struct RegionHeader {
    next: *mut RegionHeader,
    end: usize,
}

/// An intrusive singly linked list of regions, newest first.
pub struct RegionList {
    head: *mut RegionHeader,
    count: usize,
    bytes: usize,
}

// SAFETY: the list owns the memory its headers live in (the regions were
// handed over exclusively); nothing is shared with other threads.
unsafe impl Send for RegionList {}

impl Default for RegionList {
    fn default() -> Self {
        Self::new()
    }
}

/// A region as the list hands it back: the managed span after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start of the managed bytes (just after the header; 16-aligned).
    pub start: usize,
    /// One past the last managed byte.
    pub end: usize,
}

impl Span {
    /// Length of the span in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    /// `true` if empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// `true` if `addr` lies in `start..end`.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.start && addr < self.end
    }
}

impl RegionList {
    /// Bytes each region gives up for its header.
    pub const HEADER: usize = core::mem::size_of::<RegionHeader>();

    /// An empty list.
    pub const fn new() -> Self {
        RegionList {
            head: ptr::null_mut(),
            count: 0,
            bytes: 0,
        }
    }

    /// Number of regions.
    #[inline]
    pub fn count(&self) -> usize {
        self.count
    }

    /// Total bytes of every region as handed over (before trimming).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Take `region`: trim its ends to `align` (a power of two, at least 16),
    /// write a header, and return the managed span after the header.
    /// `min_managed` is the least span length the caller can use.
    ///
    /// # Safety
    /// `region` must satisfy [`Region::from_raw_parts`]'s contract and must
    /// not have been handed to any heap before.
    pub unsafe fn push(
        &mut self,
        region: Region,
        align: usize,
        min_managed: usize,
    ) -> Result<Span, RegionError> {
        let align = align.max(16);
        let needed = Self::HEADER + min_managed;
        let trimmed = match region.trim_to(16) {
            Some(t) => t,
            None => return Err(RegionError::TooSmall { needed, got: 0 }),
        };
        let hdr = trimmed.start().as_ptr() as usize;
        let end = align_down(trimmed.end_addr(), align);
        let start = match align_up(hdr + Self::HEADER, align) {
            Some(s) if s < end => s,
            _ => return Err(RegionError::TooSmall { needed, got: 0 }),
        };
        if end - start < min_managed {
            return Err(RegionError::TooSmall {
                needed,
                got: end - start,
            });
        }
        for span in self.iter_raw() {
            if hdr < span.1 && span.0 < end {
                return Err(RegionError::Overlaps);
            }
        }
        let h = hdr as *mut RegionHeader;
        // SAFETY: `hdr` is 16-aligned, inside the region, and the region has
        // at least HEADER bytes before `start`; the caller handed it to us
        // exclusively.
        unsafe {
            h.write(RegionHeader {
                next: self.head,
                end,
            })
        };
        self.head = h;
        self.count += 1;
        self.bytes += region.len();
        Ok(Span { start, end })
    }

    /// (header address, end) of each region.
    fn iter_raw(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        // SAFETY: `head` is this list's own head.
        unsafe { Self::walk_from(self.head) }
    }

    /// (header address, end) of each region linked from `head`.
    ///
    /// # Safety
    /// `head` must be null or a region header of a live list (the list's
    /// head, or one reached from it), and the list must not change while
    /// the iterator is used.
    unsafe fn walk_from(head: *mut RegionHeader) -> impl Iterator<Item = (usize, usize)> {
        let mut cur = head;
        core::iter::from_fn(move || {
            if cur.is_null() {
                return None;
            }
            // SAFETY: every non-null link was written by `push` into memory
            // the list owns (the caller's contract).
            let h = unsafe { &*cur };
            let item = (cur as usize, h.end);
            cur = h.next;
            Some(item)
        })
    }

    /// The address of the newest region's header (0 with no region). It
    /// lies in the region's own memory, so it stays valid when the list
    /// (or the heap holding it) is moved: [`find_from`](Self::find_from)
    /// walks the regions from it.
    pub(crate) fn head_addr(&self) -> usize {
        self.head as usize
    }

    /// [`find`](Self::find) over the regions linked from `head`, an address
    /// [`head_addr`](Self::head_addr) returned.
    ///
    /// # Safety
    /// `head` must be 0 or the `head_addr()` of a list that is still alive
    /// (its regions still handed over) and not changed since.
    pub(crate) unsafe fn find_from(head: usize, addr: usize, align: usize) -> Option<Span> {
        // SAFETY: forwarded from the caller.
        unsafe { Self::walk_from(head as *mut RegionHeader) }
            .map(|(h, end)| Self::span_of(h, end, align))
            .find(|s| s.contains(addr))
    }

    /// The regions' managed spans, newest first. `align` must be the one
    /// given to `push`.
    pub fn spans(&self, align: usize) -> impl Iterator<Item = Span> + '_ {
        self.iter_raw()
            .map(move |(h, end)| Self::span_of(h, end, align))
    }

    /// The managed span of the region whose header is at `h` and which
    /// ends at `end`, for the `align` given to `push`.
    fn span_of(h: usize, end: usize, align: usize) -> Span {
        let align = align.max(16);
        Span {
            start: (h + Self::HEADER + align - 1) & !(align - 1),
            end,
        }
    }

    /// The span containing `addr`, if any.
    pub fn find(&self, addr: usize, align: usize) -> Option<Span> {
        // SAFETY: this list's own head.
        unsafe { Self::find_from(self.head_addr(), addr, align) }
    }

    /// `true` if `addr` lies in some region's managed span.
    pub fn contains(&self, addr: usize, align: usize) -> bool {
        self.find(addr, align).is_some()
    }

    /// Check the list's invariants.
    pub fn check(&self) -> Result<(), CheckError> {
        let mut n = 0;
        for (h, end) in self.iter_raw() {
            n += 1;
            if h % 16 != 0 {
                return Err(CheckError::new(h, "region header is not 16-aligned"));
            }
            if end <= h + Self::HEADER {
                return Err(CheckError::new(h, "region ends before its header"));
            }
            for (h2, end2) in self.iter_raw() {
                if h2 != h && h < end2 && h2 < end {
                    return Err(CheckError::new(h, "regions overlap"));
                }
            }
        }
        if n != self.count {
            return Err(CheckError::new(
                self.head as usize,
                "region count differs from the list length",
            ));
        }
        Ok(())
    }
}
