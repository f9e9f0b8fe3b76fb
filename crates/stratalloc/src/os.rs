//! The operating system behind one small contract: map, unmap, purge and
//! remap anonymous memory, with the page size read at run time.
//!
//! Every allocator in this crate that needs memory from the kernel goes
//! through these functions, so the platform (`libc` on Linux) shows up here
//! only.
//!
//! # Contract
//!
//! | function | preconditions | result |
//! |---|---|---|
//! | [`map`] | `size > 0`, multiple of [`page_size`] | zeroed read-write memory, page aligned, or null |
//! | [`map_meta`], [`unmap_meta`] | as `map` / `unmap` | the same, not counted in [`stats`] (an allocator's own tables) |
//! | [`map_aligned`] | as `map`; `align` a power of two ≥ page size | like `map`, start a multiple of `align`, or null |
//! | [`unmap`] | `(p, size)` page aligned, inside one earlier mapping | the range is gone |
//! | [`release`] | as `unmap` | `true`: the range is gone; `false`: refused (ENOMEM: splitting the mapping would pass `vm.max_map_count`), the range stays mapped; `errno` kept either way |
//! | [`purge`] | `(p, size)` page aligned, inside a mapping | `true`: physical pages dropped, the range reads as zeros afterwards; `false`: refused, contents unchanged |
//! | [`remap`] | `(p, old)` is a whole mapping; `new` page multiple | the mapping resized, maybe moved to a multiple of `align`; contents kept; or null and the old mapping untouched |
//!
//! Nothing here allocates, panics or takes a lock. Failure is a null
//! pointer (the caller turns it into a null `malloc` result).
//!
//! Address-space reservations are made only as large as one request plus
//! its alignment: nothing is reserved at start-up, so the engine behaves
//! under a tight `RLIMIT_AS`.
//!
//! Counters (`mapped`, `peak`, `returned`) are updated with relaxed atomics
//! and read by [`stats`].

use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
static MAPPED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static RETURNED: AtomicU64 = AtomicU64::new(0);
static MAP_CALLS: AtomicU64 = AtomicU64::new(0);

/// The OS page size (read once with `sysconf`, 4096 if that fails).
#[inline]
pub fn page_size() -> usize {
    let p = PAGE_SIZE.load(Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let s = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let s = if s > 0 && (s as usize).is_power_of_two() {
        s as usize
    } else {
        4096
    };
    PAGE_SIZE.store(s, Relaxed);
    s
}

/// Round `n` up to a multiple of the page size; `None` on overflow.
#[inline]
pub fn page_round(n: usize) -> Option<usize> {
    let ps = page_size();
    n.checked_add(ps - 1).map(|v| v & !(ps - 1))
}

fn note_mapped(size: usize) {
    let now = MAPPED.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(now, Relaxed);
    MAP_CALLS.fetch_add(1, Relaxed);
}

fn note_unmapped(size: usize) {
    MAPPED.fetch_sub(size, Relaxed);
    RETURNED.fetch_add(size as u64, Relaxed);
}

#[cfg_attr(miri, allow(dead_code))]
unsafe fn raw_map(hint: *mut u8, size: usize, prot: i32) -> *mut u8 {
    // SAFETY: anonymous private mapping; the kernel picks or checks the
    // address (no MAP_FIXED), so no existing mapping is replaced.
    let p = unsafe {
        libc::mmap(
            hint.cast(),
            size,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Map `size` bytes of zeroed read-write memory. Null on failure.
///
/// Preconditions: `size > 0` and a multiple of [`page_size`].
#[cfg_attr(miri, allow(unreachable_code, unused_variables))]
pub fn map(size: usize) -> *mut u8 {
    #[cfg(miri)]
    return sim::map(size, page_size(), 0);
    debug_assert!(size > 0 && size % page_size() == 0);
    // SAFETY: see raw_map; a null hint lets the kernel choose.
    let p = unsafe { raw_map(ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE) };
    if !p.is_null() {
        note_mapped(size);
    }
    p
}

/// Map `size` bytes (rounded up to pages) of zeroed read-write memory for
/// an allocator's own tables (the wrappers' block tables, quarantine,
/// call-site slots, statistics batches): like [`map`], but not counted in
/// [`stats`], whose figures describe the memory the allocator serves.
/// Null on failure.
pub fn map_meta(size: usize) -> *mut u8 {
    #[cfg(miri)]
    return sim::map(size, page_size(), 0);
    #[cfg(not(miri))]
    // SAFETY: see raw_map; a null hint lets the kernel choose.
    unsafe {
        raw_map(ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE)
    }
}

/// Give back a mapping made by [`map_meta`]. A failing `munmap` leaves the
/// mapping in place (and `errno` unchanged): tables are given back at
/// moments where failing is not worth a process.
///
/// # Safety
/// `p..p + size` is a mapping from [`map_meta`] nobody uses any more.
pub unsafe fn unmap_meta(p: *mut u8, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { munmap_keep_errno(p, size) };
}

/// Map `size` bytes whose start is a multiple of `align`, by mapping
/// `size + align - page` bytes and unmapping the slack at both ends (first
/// trying the simple mapping in case it is already aligned).
///
/// Preconditions: `size > 0` and a page multiple; `align` a power of two
/// and at least the page size.
pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
    map_aligned_at(size, align, 0)
}

/// Like [`map_aligned`], but `p + offset` (not `p`) is the multiple of
/// `align`. Preconditions as `map_aligned`; `offset` a page multiple.
#[cfg_attr(miri, allow(unreachable_code, unused_variables))]
pub fn map_aligned_at(size: usize, align: usize, offset: usize) -> *mut u8 {
    #[cfg(miri)]
    return sim::map(size, align, offset);
    let ps = page_size();
    debug_assert!(align.is_power_of_two() && align >= ps && size % ps == 0 && offset % ps == 0);
    let p = map(size);
    if p.is_null() || (p as usize).wrapping_add(offset) & (align - 1) == 0 {
        return p;
    }
    // SAFETY: (p, size) is the mapping just made.
    unsafe { unmap(p, size) };
    let Some(over) = size.checked_add(align - ps) else {
        return ptr::null_mut();
    };
    let base = map(over);
    if base.is_null() {
        return base;
    }
    let start = (base as usize + offset).next_multiple_of(align) - offset;
    let head = start - base as usize;
    let tail = over - head - size;
    // SAFETY: head and tail are page-aligned pieces of the mapping `base`
    // outside [start, start + size).
    unsafe {
        if head > 0 {
            unmap(base, head);
        }
        if tail > 0 {
            unmap((start + size) as *mut u8, tail);
        }
    }
    start as *mut u8
}

/// Unmap `[p, p + size)`.
///
/// # Safety
/// The range is page aligned, lies inside mappings made here, and holds no
/// live data.
#[cfg_attr(miri, allow(unreachable_code, unused_variables))]
pub unsafe fn unmap(p: *mut u8, size: usize) {
    #[cfg(miri)]
    // SAFETY: forwarded.
    return unsafe { sim::unmap(p, size) };
    debug_assert!((p as usize) % page_size() == 0 && size % page_size() == 0);
    // SAFETY: the caller owns the range.
    let r = unsafe { libc::munmap(p.cast(), size) };
    if r == 0 {
        note_unmapped(size);
    } else {
        crate::fatal!("munmap({:p}, {}) failed", p, size);
    }
}

/// [`unmap`] for a caller that can live with the range staying mapped (a
/// block `free` gives back: glibc ignores a failing `munmap` there, and
/// `free` must not change `errno`). `munmap` fails with ENOMEM when
/// unmapping part of a mapping would split it past `vm.max_map_count`.
///
/// # Safety
/// As for [`unmap`].
pub unsafe fn release(p: *mut u8, size: usize) -> bool {
    debug_assert!((p as usize) % page_size() == 0 && size % page_size() == 0);
    // SAFETY: forwarded from the caller.
    let ok = unsafe { munmap_keep_errno(p, size) };
    if ok {
        note_unmapped(size);
    }
    ok
}

/// `munmap`, with `errno` as it was whatever the outcome; true if the
/// range is gone.
///
/// # Safety
/// The caller owns the range and nobody uses it any more.
#[cfg_attr(miri, allow(unreachable_code))]
unsafe fn munmap_keep_errno(p: *mut u8, size: usize) -> bool {
    #[cfg(miri)]
    {
        // SAFETY: forwarded.
        unsafe { sim::unmap(p, size) };
        return true;
    }
    // SAFETY: errno is this thread's; forwarded from the caller.
    unsafe {
        let errno = *libc::__errno_location();
        let ok = libc::munmap(p.cast(), size) == 0;
        *libc::__errno_location() = errno;
        ok
    }
}

/// Ask the kernel to back `[p, p + size)` with transparent huge pages
/// (`MADV_HUGEPAGE`); a refusal (no THP in the kernel) is ignored.
pub fn advise_huge(p: *mut u8, size: usize) {
    #[cfg(not(miri))]
    // SAFETY: madvise with MADV_HUGEPAGE changes no contents; on a range
    // that is not mapped it fails, and failure is ignored (errno kept).
    unsafe {
        let errno = *libc::__errno_location();
        if libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE) != 0 {
            *libc::__errno_location() = errno;
        }
    }
    #[cfg(miri)]
    let _ = (p, size);
}

/// Give the physical pages of `[p, p + size)` back to the OS; on success
/// (`true`) the range stays mapped and reads as zeros afterwards
/// (`MADV_DONTNEED`). On failure (`false`: the kernel refuses, for example
/// for memory locked by `mlockall`) the contents are unchanged, and the
/// caller must not treat the range as zeroed. `errno` is preserved.
///
/// # Safety
/// The range is page aligned, inside a mapping made here, and holds no live
/// data.
#[must_use]
#[cfg_attr(miri, allow(unreachable_code, unused_variables))]
pub unsafe fn purge(p: *mut u8, size: usize) -> bool {
    #[cfg(miri)]
    // SAFETY: forwarded: the range is ours and holds no live data.
    return unsafe { sim::purge(p, size) };
    debug_assert!((p as usize) % page_size() == 0 && size % page_size() == 0);
    if size == 0 {
        return true;
    }
    // SAFETY: errno is this thread's; the caller owns the range and needs
    // none of its contents.
    unsafe {
        let errno = *libc::__errno_location();
        if libc::madvise(p.cast(), size, libc::MADV_DONTNEED) == 0 {
            RETURNED.fetch_add(size as u64, Relaxed);
            return true;
        }
        *libc::__errno_location() = errno;
    }
    false
}

/// Resize the whole mapping `(p, old)` to `new` bytes, keeping its
/// contents. The result starts at a multiple of `align`: first in place,
/// then by moving the page tables into a fresh aligned reservation
/// (`MREMAP_MAYMOVE | MREMAP_FIXED`), so nothing is copied. Null on failure
/// with the old mapping untouched.
///
/// # Safety
/// `(p, old)` is exactly one mapping made here; `p` is a multiple of
/// `align`; `new` is a nonzero page multiple; `align` is a power of two.
#[cfg_attr(miri, allow(unreachable_code, unused_variables))]
pub unsafe fn remap(p: *mut u8, old: usize, new: usize, align: usize) -> *mut u8 {
    #[cfg(miri)]
    // SAFETY: forwarded.
    return unsafe { sim::remap(p, old, new, align) };
    let ps = page_size();
    debug_assert!(new > 0 && new % ps == 0 && old % ps == 0);
    if new == old {
        return p;
    }
    if new < old {
        // SAFETY: the tail is part of the caller's mapping.
        unsafe { unmap(p.add(new), old - new) };
        return p;
    }
    // SAFETY: grow in place only (no MAYMOVE): fails rather than moving.
    let q = unsafe { libc::mremap(p.cast(), old, new, 0) };
    if q != libc::MAP_FAILED {
        note_mapped(new - old);
        return p;
    }
    let Some(over) = new.checked_add(align.max(ps) - ps) else {
        return ptr::null_mut();
    };
    // SAFETY: a fresh inaccessible reservation to move into.
    let res = unsafe { raw_map(ptr::null_mut(), over, libc::PROT_NONE) };
    if res.is_null() {
        return res;
    }
    let target = (res as usize).next_multiple_of(align.max(ps));
    // SAFETY: the target range lies inside our reservation, which
    // MREMAP_FIXED replaces; the source is the caller's mapping.
    let q = unsafe {
        libc::mremap(
            p.cast(),
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target as *mut libc::c_void,
        )
    };
    let head = target - res as usize;
    let tail = over - head - new;
    // SAFETY: release what is left of the reservation around the target
    // (the target itself, on failure, too).
    unsafe {
        if head > 0 {
            libc::munmap(res.cast(), head);
        }
        if tail > 0 {
            libc::munmap((target + new) as *mut libc::c_void, tail);
        }
        if q == libc::MAP_FAILED {
            libc::munmap(target as *mut libc::c_void, new);
            return ptr::null_mut();
        }
    }
    MAPPED.fetch_add(new - old, Relaxed);
    PEAK.fetch_max(MAPPED.load(Relaxed), Relaxed);
    target as *mut u8
}

/// Figures of this layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OsStats {
    /// Bytes mapped now.
    pub mapped: usize,
    /// Highest `mapped` seen.
    pub peak: usize,
    /// Bytes unmapped or purged, in total.
    pub returned: u64,
    /// `mmap` calls that succeeded.
    pub map_calls: u64,
}

/// Current figures of this layer.
pub fn stats() -> OsStats {
    OsStats {
        mapped: MAPPED.load(Relaxed),
        peak: PEAK.load(Relaxed),
        returned: RETURNED.load(Relaxed),
        map_calls: MAP_CALLS.load(Relaxed),
    }
}

/// A coarse monotonic clock in milliseconds (for purge delays).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000 + CLOCK_SKEW_MS.load(Relaxed)
}

/// Milliseconds added to [`now_ms`] by [`advance_clock`].
static CLOCK_SKEW_MS: AtomicU64 = AtomicU64::new(0);

/// Move the allocators' clock ([`now_ms`]) forward by `ms`: tests of
/// delays (purging, huge-cache expiry, periodic visits) advance time
/// instead of sleeping against a coarse clock. It never goes back.
#[doc(hidden)]
pub fn advance_clock(ms: u64) {
    CLOCK_SKEW_MS.fetch_add(ms, Relaxed);
}

/// Resident set size of this process in bytes, from `/proc/self/statm`
/// (0 if it cannot be read). Reads into a stack buffer; never allocates.
pub fn resident_bytes() -> usize {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return 0;
    }
    let mut buf = [0u8; 128];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    if n <= 0 {
        return 0;
    }
    // Second field: resident pages.
    let mut fields = buf[..n as usize].split(|&c| c == b' ');
    let _ = fields.next();
    let mut pages = 0usize;
    for &c in fields.next().unwrap_or(&[]) {
        if c.is_ascii_digit() {
            pages = pages * 10 + (c - b'0') as usize;
        }
    }
    pages * page_size()
}

/// The OS layer under Miri, which cannot split, move or purge mappings:
/// one arena taken from the system allocator stands for the address
/// space, handed out in pages (first fit, any alignment and offset), so
/// partial unmaps, in-place growth and purges (zeroing) behave as the
/// kernel's do and every pointer keeps the arena's provenance. Only built
/// under `cfg(miri)` (`scripts/miri.sh`).
#[cfg(miri)]
mod sim {
    use core::ptr;
    use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};
    use std::alloc::{GlobalAlloc, Layout, System};

    /// Bytes of the simulated address space.
    const ARENA: usize = 160 << 20;
    const ALIGN: usize = 4 << 20;
    const PAGE: usize = 4096;
    const PAGES: usize = ARENA / PAGE;

    static BASE: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
    static LOCK: AtomicBool = AtomicBool::new(false);
    /// One bit per page: mapped.
    static mut USED: [u64; PAGES / 64] = [0; PAGES / 64];

    fn with<R>(f: impl FnOnce(*mut u8, &mut [u64; PAGES / 64]) -> R) -> R {
        while LOCK
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        let mut base = BASE.load(Relaxed);
        if base.is_null() {
            // SAFETY: a valid nonzero layout; the arena is never freed.
            base = unsafe { System.alloc(Layout::from_size_align(ARENA, ALIGN).unwrap()) };
            assert!(!base.is_null(), "miri arena");
            BASE.store(base, Relaxed);
        }
        // SAFETY: the lock gives exclusive access to the bitmap.
        let r = f(base, unsafe { &mut *ptr::addr_of_mut!(USED) });
        LOCK.store(false, Release);
        r
    }

    fn used(m: &[u64; PAGES / 64], i: usize) -> bool {
        m[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(m: &mut [u64; PAGES / 64], i: usize, n: usize, on: bool) {
        for k in i..i + n {
            if on {
                m[k / 64] |= 1 << (k % 64);
            } else {
                m[k / 64] &= !(1 << (k % 64));
            }
        }
    }

    /// `size` zeroed bytes with `p + offset` a multiple of `align`.
    pub fn map(size: usize, align: usize, offset: usize) -> *mut u8 {
        let n = size.div_ceil(PAGE);
        // Only the pages where `p + offset` is aligned are candidates (the
        // arena is 4 MiB aligned, `align` and `offset` page multiples):
        // step from one to the next past the last mapped page in the way,
        // so a segment costs a few probes, not one per page (every step
        // is interpreted under Miri).
        let step = (align / PAGE).max(1);
        let p = with(|base, m| {
            let mut i = (align - (base as usize + offset) % align) % align / PAGE;
            while i + n <= PAGES {
                match (i..i + n).rev().find(|&k| used(m, k)) {
                    None => {
                        set(m, i, n, true);
                        // SAFETY: inside the arena.
                        return unsafe { base.add(i * PAGE) };
                    }
                    Some(k) => i += (k - i) / step * step + step,
                }
            }
            ptr::null_mut()
        });
        if !p.is_null() {
            // SAFETY: pages just taken: ours.
            unsafe { ptr::write_bytes(p, 0, n * PAGE) };
            super::note_mapped(n * PAGE);
        }
        p
    }

    fn index(base: *mut u8, p: *mut u8) -> usize {
        (p as usize - base as usize) / PAGE
    }

    /// # Safety
    /// As [`super::unmap`].
    pub unsafe fn unmap(p: *mut u8, size: usize) {
        let n = size.div_ceil(PAGE);
        with(|base, m| {
            let i = index(base, p);
            assert!((i..i + n).all(|k| used(m, k)), "unmap of pages not mapped");
            set(m, i, n, false);
        });
        super::note_unmapped(n * PAGE);
    }

    /// # Safety
    /// As [`super::purge`].
    pub unsafe fn purge(p: *mut u8, size: usize) -> bool {
        // SAFETY: per the contract.
        unsafe { ptr::write_bytes(p, 0, size) };
        super::RETURNED.fetch_add(size as u64, super::Relaxed);
        true
    }

    /// # Safety
    /// As [`super::remap`].
    pub unsafe fn remap(p: *mut u8, old: usize, new: usize, align: usize) -> *mut u8 {
        if new <= old {
            if new < old {
                // SAFETY: the tail of the caller's mapping.
                unsafe { unmap(p.add(new), old - new) };
            }
            return p;
        }
        let grown = with(|base, m| {
            let (i, a, b) = (index(base, p), old / PAGE, new / PAGE);
            if i + b <= PAGES && (i + a..i + b).all(|k| !used(m, k)) {
                set(m, i + a, b - a, true);
                true
            } else {
                false
            }
        });
        if grown {
            // SAFETY: the pages just added.
            unsafe { ptr::write_bytes(p.add(old), 0, new - old) };
            super::note_mapped(new - old);
            return p;
        }
        let q = map(new, align, 0);
        if !q.is_null() {
            // SAFETY: both ranges are ours and distinct.
            unsafe {
                ptr::copy_nonoverlapping(p, q, old);
                unmap(p, old);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_map_and_remap() {
        let a = 4 << 20;
        let p = map_aligned(8192, a);
        assert!(!p.is_null());
        assert_eq!(p as usize % a, 0);
        // SAFETY: fresh mapping of 8192 bytes.
        unsafe {
            *p = 7;
            let q = remap(p, 8192, 16 << 20, a);
            assert!(!q.is_null());
            assert_eq!(q as usize % a, 0);
            assert_eq!(*q, 7);
            assert!(purge(q, 4096));
            assert_eq!(*q, 0);
            unmap(q, 16 << 20);
        }
        assert!(page_size().is_power_of_two());
        assert!(resident_bytes() > 0);
    }
}
