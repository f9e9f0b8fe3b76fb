//! What the engine's threads share under its one lock ([`GLOBAL`]): the
//! cache of empty segments, the abandoned list, the huge cache (and, in
//! `init.rs`, the heap pool); segment allocation and release, and the
//! global purge any thread's slow path runs.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use super::segment::*;
use crate::os;
use crate::sync::RawLock;

/// The one global lock: segment cache, huge cache, abandoned list and the
/// heap pool; a registered segment is unregistered under it before it is
/// unmapped or moved ([`unregister`]), so a walk of the segment map that
/// holds it (`info::heap_info`) reads only mapped headers. Held briefly, never across an OS call that could block for
/// long, never re-entered. Not held across `fork`: a child in which a gone
/// thread held it forgets what it guards ([`forget_shared`]).
pub static GLOBAL: RawLock = RawLock::new();

struct Shared {
    cache: [*mut Segment; CACHE_MAX],
    cached: usize,
    /// Oldest abandoned segment (taken first) and newest (pushed after).
    abandoned: *mut Segment,
    abandoned_last: *mut Segment,
    huge: [*mut Segment; HUGE_CACHE_MAX],
    nhuge: usize,
    huge_bytes: usize,
}

use crate::tuning::{
    HUGE_CACHE_BYTES, HUGE_CACHE_DELAY_MS, HUGE_CACHE_MAX, SEGMENT_CACHE as CACHE_MAX,
    SEGMENT_CACHE_PURGE_MS, SLICE_PURGE_DELAY_MS,
};

struct SharedCell(core::cell::UnsafeCell<Shared>);
// SAFETY: only accessed while GLOBAL is held.
unsafe impl Sync for SharedCell {}

static SHARED: SharedCell = SharedCell(core::cell::UnsafeCell::new(Shared {
    cache: [ptr::null_mut(); CACHE_MAX],
    cached: 0,
    abandoned: ptr::null_mut(),
    abandoned_last: ptr::null_mut(),
    huge: [ptr::null_mut(); HUGE_CACHE_MAX],
    nhuge: 0,
    huge_bytes: 0,
}));

fn with_shared<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    GLOBAL.lock();
    // SAFETY: GLOBAL is held, giving exclusive access.
    let r = f(unsafe { &mut *SHARED.0.get() });
    GLOBAL.unlock();
    r
}

/// In a fork child whose parent's [`GLOBAL`] was held by a thread gone in
/// the child: that thread may have been half-way through changing the
/// caches or the abandoned list, so the child starts them empty. What they
/// held stays mapped and unused in the child (cached segments, cached huge
/// mappings; abandoned segments, whose live blocks can still be freed).
pub fn forget_shared() {
    with_shared(|s| {
        s.cached = 0;
        s.abandoned = ptr::null_mut();
        s.abandoned_last = ptr::null_mut();
        ABANDONED.store(0, Relaxed);
        s.nhuge = 0;
        s.huge_bytes = 0;
    });
}

/// Segments on the abandoned list (changed under [`GLOBAL`]; read
/// without it, so a slow path finds out that there is none with one
/// load).
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// Abandoned segments right now.
pub fn abandoned_count() -> usize {
    ABANDONED.load(Relaxed)
}

/// Mapped segment count (normal segments, live or cached).
pub static SEGMENTS: AtomicUsize = AtomicUsize::new(0);

/// Take a cached empty segment (null if none).
fn cache_pop() -> *mut Segment {
    with_shared(|s| {
        if s.cached > 0 {
            s.cached -= 1;
            s.cache[s.cached]
        } else {
            ptr::null_mut()
        }
    })
}

/// Map new segments with `MADV_HUGEPAGE` (`STRATALLOC_THP=1`, set once
/// at start-up; off by default: see BENCHMARKS.md).
pub static THP: AtomicBool = AtomicBool::new(false);

/// A fresh normal segment owned by heap `owner`, from the cache or the OS.
pub fn segment_alloc(owner: usize) -> *mut Segment {
    let mut seg = cache_pop();
    if seg.is_null() {
        let p = os::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
        if p.is_null() {
            return p.cast();
        }
        if THP.load(Relaxed) {
            os::advise_huge(p, SEGMENT_SIZE);
        }
        seg = p.cast();
        // SAFETY: `seg` is a fresh zeroed mapping we own; registered only
        // once its header is made (`info::heap_info` reads registered
        // headers from any thread).
        unsafe { init_normal(seg, owner, 0, 0) };
        if !segmap_set(seg, true) {
            // SAFETY: just mapped.
            unsafe { os::unmap(p, SEGMENT_SIZE) };
            return ptr::null_mut();
        }
        SEGMENTS.fetch_add(1, Relaxed);
    } else {
        // Under GLOBAL: the segment stays registered, and a walk of the
        // map (which holds GLOBAL) must not see a header half rewritten.
        GLOBAL.lock();
        // SAFETY: the cached header is ours: reset the descriptors, keep
        // which slices are dirty and when they are due for purging.
        unsafe {
            let (dirty, at) = ((*seg).dirty_mask(), (*seg).purge_at);
            ptr::write_bytes(seg.cast::<u8>(), 0, core::mem::size_of::<Segment>());
            init_normal(seg, owner, dirty, at);
        }
        GLOBAL.unlock();
    }
    seg
}

unsafe fn init_normal(seg: *mut Segment, owner: usize, dirty: u64, purge_at: u64) {
    // SAFETY: the caller owns the zeroed header.
    unsafe {
        (*seg).cookie = seg as usize ^ COOKIE_XOR;
        (*seg).kind = Kind::Normal;
        (*seg).owner.store(owner, Relaxed);
        (*seg).set_free_mask(ALL_FREE);
        (*seg).set_dirty_mask(dirty);
        (*seg).purge_at = purge_at;
        for i in 0..SLICES_PER_SEGMENT {
            Segment::link_slice(seg, i, i);
        }
    }
}

/// Return an empty normal segment to the cache (its dirty slices are
/// purged when due, see [`global_purge`]), or unmap it if the cache is full.
///
/// # Safety
/// `seg` is empty, owned by the caller, in no list.
pub unsafe fn segment_free(seg: *mut Segment) {
    // SAFETY: the caller owns the empty segment.
    unsafe { (*seg).owner.store(0, Relaxed) };
    // SAFETY: forwarded.
    unsafe { cache_push(seg) };
}

/// Put an empty, unowned segment in the cache or unmap it.
unsafe fn cache_push(seg: *mut Segment) {
    let cached = with_shared(|s| {
        if s.cached < CACHE_MAX {
            s.cache[s.cached] = seg;
            s.cached += 1;
            true
        } else {
            false
        }
    });
    if !cached {
        // SAFETY: unlisted and empty.
        unsafe { unmap_segment(seg) };
    }
}

/// Take `seg` out of the segment map under [`GLOBAL`], before it is
/// unmapped or moved: a walk of the map that holds the lock
/// (`info::heap_info`) then never reads a header that is gone.
pub fn unregister(seg: *mut Segment) {
    GLOBAL.lock();
    segmap_set(seg, false);
    GLOBAL.unlock();
}

unsafe fn unmap_segment(seg: *mut Segment) {
    unregister(seg);
    // SAFETY: forwarded; unregistered, so no walk reads it any more.
    unsafe { (*seg).cookie = 0 };
    SEGMENTS.fetch_sub(1, Relaxed);
    // SAFETY: forwarded.
    unsafe { os::unmap(seg.cast(), SEGMENT_SIZE) };
}

/// Unmap every cached segment and huge mapping; true if there were any.
pub fn drain_cache() -> bool {
    let mut any = false;
    loop {
        let h = with_shared(|s| {
            if s.nhuge > 0 {
                s.nhuge -= 1;
                // SAFETY: cached huge headers are valid.
                s.huge_bytes -= unsafe { (*s.huge[s.nhuge]).map_size };
                s.huge[s.nhuge]
            } else {
                ptr::null_mut()
            }
        });
        if h.is_null() {
            break;
        }
        // SAFETY: taken off the cache; nobody else has it.
        unsafe { huge_unmap(h) };
        any = true;
    }
    loop {
        let seg = cache_pop();
        if seg.is_null() {
            return any;
        }
        // SAFETY: taken off the cache; nobody else has it.
        unsafe { unmap_segment(seg) };
        any = true;
    }
}

/// Put `seg` (already `owner == 0`) last on the abandoned list.
///
/// The list is first in, first out: a segment adopted and abandoned again
/// goes behind every other, so adoption visits each abandoned segment in
/// turn (and frees those that remote frees emptied) instead of cycling
/// through the few newest.
pub unsafe fn abandon_push(seg: *mut Segment) {
    with_shared(|s| {
        // SAFETY: we hold the lock and the segment; listed segments are
        // valid.
        unsafe {
            (*seg).next = ptr::null_mut();
            if s.abandoned_last.is_null() {
                s.abandoned = seg;
            } else {
                (*s.abandoned_last).next = seg;
            }
        }
        s.abandoned_last = seg;
        ABANDONED.fetch_add(1, Relaxed);
    });
}

/// Take the oldest abandoned segment, if any (null at once, without the
/// lock, when the list looks empty).
pub fn abandon_pop() -> *mut Segment {
    if ABANDONED.load(Relaxed) == 0 {
        return ptr::null_mut();
    }
    with_shared(|s| {
        let seg = s.abandoned;
        if !seg.is_null() {
            // SAFETY: listed segments are valid.
            s.abandoned = unsafe { (*seg).next };
            if s.abandoned.is_null() {
                s.abandoned_last = ptr::null_mut();
            }
            ABANDONED.fetch_sub(1, Relaxed);
        }
        seg
    })
}

/// Register or unregister a huge segment in the map.
pub fn huge_register(seg: *mut Segment, on: bool) -> bool {
    segmap_set(seg, on)
}

/// Make a header for a huge segment at `seg` (mapped; registered or
/// not). Under [`GLOBAL`]: a registered header is read by walks of the
/// map (`info::heap_info`), which hold it.
pub unsafe fn huge_init(seg: *mut Segment, map_size: usize, block: *mut u8, size: usize) {
    GLOBAL.lock();
    // SAFETY: the caller owns `seg`; fields written through the raw
    // pointer (no reference to a header a walk may be reading).
    unsafe {
        (*seg).cookie = seg as usize ^ COOKIE_XOR;
        (*seg).kind = Kind::Huge;
        (*seg).owner.store(0, Relaxed);
        (*seg).map_size = map_size;
        (*seg).huge_block = block;
        (*seg).huge_size = size;
    }
    GLOBAL.unlock();
}

/// Unregister and unmap a huge mapping.
///
/// # Safety
/// `seg` is a huge segment nobody else uses.
pub unsafe fn huge_unmap(seg: *mut Segment) {
    // SAFETY: forwarded.
    unsafe {
        unregister(seg);
        (*seg).cookie = 0;
        os::unmap(seg.cast(), (*seg).map_size);
    }
}

/// Keep a freed huge mapping for reuse; false if the cache has no room
/// (the caller unmaps it then).
///
/// # Safety
/// `seg` is a huge segment whose block was just freed.
pub unsafe fn huge_cache_put(seg: *mut Segment, now: u64) -> bool {
    // SAFETY: forwarded.
    let size = unsafe { (*seg).map_size };
    with_shared(|s| {
        if s.nhuge == HUGE_CACHE_MAX || s.huge_bytes + size > HUGE_CACHE_BYTES {
            return false;
        }
        // SAFETY: the header is ours until it is listed.
        unsafe {
            (*seg).huge_block = ptr::null_mut();
            (*seg).purge_at = now + HUGE_CACHE_DELAY_MS;
        }
        s.huge[s.nhuge] = seg;
        s.nhuge += 1;
        s.huge_bytes += size;
        true
    })
}

/// A cached huge mapping for a block needing `need` bytes of mapping:
/// the smallest that holds `need` and wastes at most twice as much again
/// (its pages are resident: no fault; the waste lasts as long as the
/// block), else the largest smaller one (the caller grows it with
/// `mremap`: only the growth faults in). Null if the cache is empty or
/// holds only mappings over three times `need`.
pub fn huge_cache_take(need: usize) -> *mut Segment {
    with_shared(|s| {
        let (mut fit, mut grow) = (None::<(usize, usize)>, None::<(usize, usize)>);
        for i in 0..s.nhuge {
            // SAFETY: cached huge headers are valid.
            let size = unsafe { (*s.huge[i]).map_size };
            if size >= need {
                if size - need <= 2 * need && fit.map_or(true, |(_, f)| size < f) {
                    fit = Some((i, size));
                }
            } else if grow.map_or(true, |(_, g)| size > g) {
                grow = Some((i, size));
            }
        }
        let Some((i, size)) = fit.or(grow) else {
            return ptr::null_mut();
        };
        let seg = s.huge[i];
        s.nhuge -= 1;
        s.huge[i] = s.huge[s.nhuge];
        s.huge_bytes -= size;
        seg
    })
}

static NEXT_GLOBAL_PURGE: AtomicU64 = AtomicU64::new(0);

/// Purge cached segments and unmap cached huge mappings whose delay has
/// passed. Cheap when nothing is due (one atomic load); called from slow
/// paths of any thread.
pub fn global_purge(now: u64) {
    let due = NEXT_GLOBAL_PURGE.load(Relaxed);
    if now < due
        || NEXT_GLOBAL_PURGE
            .compare_exchange(due, now + PURGE_DELAY_MS, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    let mut segs = [ptr::null_mut::<Segment>(); CACHE_MAX];
    let mut huge = [ptr::null_mut::<Segment>(); HUGE_CACHE_MAX];
    let (mut ns, mut nh) = (0, 0);
    with_shared(|s| {
        let mut i = 0;
        while i < s.cached {
            let seg = s.cache[i];
            // SAFETY: cached headers are valid; we hold the lock.
            // `purge_at` is the oldest dirty slice's free time plus the
            // slice delay: a cached segment waits the longer cache delay.
            let due = |seg: *mut Segment| {
                // SAFETY: cached headers are valid; we hold the lock.
                let at = unsafe { (*seg).purge_at };
                at + SEGMENT_CACHE_PURGE_MS.saturating_sub(SLICE_PURGE_DELAY_MS) <= now
            };
            // SAFETY: as above.
            if unsafe { (*seg).dirty_mask() != 0 } && due(seg) {
                segs[ns] = seg;
                ns += 1;
                s.cached -= 1;
                s.cache[i] = s.cache[s.cached];
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < s.nhuge {
            let seg = s.huge[i];
            // SAFETY: as above.
            if unsafe { (*seg).purge_at <= now } {
                huge[nh] = seg;
                nh += 1;
                s.nhuge -= 1;
                // SAFETY: as above.
                s.huge_bytes -= unsafe { (*seg).map_size };
                s.huge[i] = s.huge[s.nhuge];
            } else {
                i += 1;
            }
        }
    });
    for &seg in &segs[..ns] {
        // SAFETY: taken off the cache: ours until pushed back.
        unsafe {
            Segment::purge(seg, now);
            cache_push(seg);
        }
    }
    for &seg in &huge[..nh] {
        // SAFETY: taken off the cache.
        unsafe { huge_unmap(seg) };
    }
}
