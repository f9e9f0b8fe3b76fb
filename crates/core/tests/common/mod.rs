//! The conformance suite: one generic body per property, run against every
//! strategy by `conformance!` in `conformance.rs`.

#![allow(dead_code)]

use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;

use stratalloc_core::{BlockState, HeapErrorKind, Region, RegionError, RegionHeap, MIN_ALIGN};

/// Bytes of 0x41 over a whole word, at any word size: a wild link that lies
/// in no region.
pub const GARBAGE_WORD: usize = usize::MAX / 0xff * 0x41;

/// Test memory from the system allocator, freed on drop (after the heap that
/// uses it, since tests declare the arena first).
pub struct Arena {
    ptr: *mut u8,
    layout: Layout,
}

impl Arena {
    pub fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 1 << 16).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null());
        Arena { ptr, layout }
    }

    /// A region `offset..offset + len` of the arena.
    pub fn region(&self, offset: usize, len: usize) -> Region {
        assert!(offset + len <= self.layout.size());
        // SAFETY: inside the arena, which outlives the heap in every test.
        unsafe { Region::from_raw_parts(self.ptr.add(offset), len).unwrap() }
    }

    pub fn whole(&self) -> Region {
        self.region(0, self.layout.size())
    }

    /// The arena's first byte (64 KiB-aligned).
    pub fn base(&self) -> usize {
        self.ptr as usize
    }

    pub fn contains(&self, p: usize) -> bool {
        p >= self.ptr as usize && p < self.ptr as usize + self.layout.size()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

pub fn heap_over<H: RegionHeap>(mut h: H, arena: &Arena) -> H {
    // SAFETY: the arena outlives the heap in each test.
    unsafe { h.add_region(arena.whole()) }.expect("add_region");
    h.check().expect("check after add_region");
    h
}

fn fill(p: NonNull<u8>, len: usize, byte: u8) {
    // SAFETY: `p` is a live block of at least `len` bytes.
    unsafe { std::ptr::write_bytes(p.as_ptr(), byte, len) }
}

fn verify(p: NonNull<u8>, len: usize, byte: u8) {
    // SAFETY: `p` is a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    // Whole chunks compared at once (a `memcmp`, which Miri runs natively
    // instead of interpreting a loop per byte); the byte is looked for only
    // on a mismatch.
    let pattern = [byte; 4096];
    if s.chunks(pattern.len()).all(|c| c == &pattern[..c.len()]) {
        return;
    }
    if let Some(i) = s.iter().position(|&b| b != byte) {
        panic!(
            "fill byte {byte:#x} lost at {:p}+{i} (found {:#x})",
            p.as_ptr(),
            s[i]
        );
    }
}

/// Walk must tile each region contiguously, and report exactly the live
/// blocks as used.
pub fn check_walk<H: RegionHeap>(h: &H, live: &BTreeMap<usize, usize>) {
    let mut used = BTreeMap::new();
    let mut prev_end: Option<usize> = None;
    let mut total = 0usize;
    h.walk(&mut |b| {
        assert!(b.size > 0, "walk reported an empty span at {:#x}", b.addr);
        if let Some(e) = prev_end {
            // Spans are contiguous within a region; a new region may start
            // anywhere else.
            assert!(
                b.addr == e || !(b.addr > e.saturating_sub(64) && b.addr < e),
                "walk spans overlap near {:#x}",
                b.addr
            );
        }
        prev_end = Some(b.addr + b.size);
        total += b.size;
        if b.state == BlockState::Used {
            assert!(b.payload >= b.addr && b.payload < b.addr + b.size);
            used.insert(b.payload, b.size);
        }
    });
    assert!(
        total <= h.stats().region_bytes,
        "walk covers more than the regions"
    );
    let walked: Vec<usize> = used.keys().copied().collect();
    let expected: Vec<usize> = live.keys().copied().collect();
    assert_eq!(
        walked, expected,
        "walk's used blocks differ from the live set"
    );
}

pub fn basic<H: RegionHeap>(make: fn() -> H) {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(make(), &arena);
    let before = h.stats();
    let a = h.allocate(100, 8).unwrap();
    let b = h.allocate(1000, 8).unwrap();
    h.check().unwrap();
    fill(a, 100, 0xAA);
    fill(b, 1000, 0xBB);
    verify(a, 100, 0xAA);
    // SAFETY: live blocks of this heap.
    unsafe {
        assert!(h.usable_size(a).unwrap() >= 100);
        assert!(h.usable_size(b).unwrap() >= 1000);
    }
    assert!(h.owns(a.as_ptr()) && h.owns(b.as_ptr()));
    let s = h.stats();
    assert_eq!(s.live(), 2);
    assert!(s.in_use >= 1100);
    // SAFETY: live blocks of this heap.
    unsafe {
        h.deallocate(a).unwrap();
        h.check().unwrap();
        verify(b, 1000, 0xBB);
        h.deallocate(b).unwrap();
    }
    h.check().unwrap();
    let after = h.stats();
    assert_eq!(after.in_use, 0);
    assert_eq!(after.live(), 0);
    assert_eq!(after.allocs, before.allocs + 2);
}

pub fn alignments<H: RegionHeap>(make: fn() -> H) {
    let arena = Arena::new(4 << 20);
    let mut h = heap_over(make(), &arena);
    let mut live = Vec::new();
    // Under Miri (every byte interpreted): every fourth alignment, three
    // sizes.
    let (step, sizes): (usize, &[usize]) = if cfg!(miri) {
        (4, &[0, 17, 5000])
    } else {
        (1, &[0, 1, 15, 16, 17, 100, 4096, 5000])
    };
    for shift in (0..=16).step_by(step) {
        let align = 1usize << shift;
        for &size in sizes {
            let p = h
                .allocate(size, align)
                .unwrap_or_else(|| panic!("allocate({size}, {align}) failed"));
            let a = p.as_ptr() as usize;
            assert_eq!(
                a % align.max(MIN_ALIGN),
                0,
                "allocate({size}, {align}) = {a:#x}"
            );
            // SAFETY: live block.
            let us = unsafe { h.usable_size(p) }.unwrap();
            assert!(us >= size.max(1));
            fill(p, us, shift as u8);
            live.push((p, us, shift as u8));
            h.check().unwrap();
        }
    }
    let mut addrs: Vec<(usize, usize)> = live
        .iter()
        .map(|(p, us, _)| (p.as_ptr() as usize, *us))
        .collect();
    addrs.sort();
    for w in addrs.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {:x?}", w);
    }
    for (p, us, byte) in live {
        verify(p, us, byte);
        // SAFETY: live block.
        unsafe { h.deallocate(p) }.unwrap();
        h.check().unwrap();
    }
    assert_eq!(h.stats().in_use, 0);
}

pub fn zero_size_unique<H: RegionHeap>(make: fn() -> H) {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(make(), &arena);
    let a = h.allocate(0, 1).unwrap();
    let b = h.allocate(0, 1).unwrap();
    assert_ne!(a, b);
    // SAFETY: live blocks.
    unsafe {
        assert!(h.usable_size(a).unwrap() >= 1);
        h.deallocate(a).unwrap();
        h.deallocate(b).unwrap();
    }
    h.check().unwrap();
}

pub fn bad_requests<H: RegionHeap>(make: fn() -> H) {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(make(), &arena);
    for &align in &[0usize, 3, 24, 48, 1000, usize::MAX] {
        assert!(h.allocate(16, align).is_none(), "align {align} accepted");
    }
    for &size in &[
        usize::MAX,
        usize::MAX - 1,
        usize::MAX - 4095,
        isize::MAX as usize,
        isize::MAX as usize - 15,
        isize::MAX as usize + 1,
    ] {
        assert!(h.allocate(size, 16).is_none(), "size {size:#x} accepted");
        assert!(
            h.allocate(size, 4096).is_none(),
            "size {size:#x} align 4096 accepted"
        );
    }
    // Larger than the region: refused, not wrapped.
    assert!(h.allocate(2 << 20, 16).is_none());
    h.check().unwrap();
    assert_eq!(h.stats().live(), 0);
    // The heap still works.
    let p = h.allocate(64, 16).unwrap();
    // SAFETY: live block.
    unsafe { h.deallocate(p) }.unwrap();
    h.check().unwrap();
}

pub fn bad_frees<H: RegionHeap>(make: fn() -> H) {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(make(), &arena);
    let keep = h.allocate(64, 16).unwrap();
    let p = h.allocate(256, 16).unwrap();
    fill(p, 256, 0xA5);
    // Outside every region.
    let mut local = [0u8; 64];
    let outside = NonNull::new(local.as_mut_ptr()).unwrap();
    // SAFETY: the heap must detect the foreign pointer without writing to it.
    let e = unsafe { h.deallocate(outside) }.unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::NotOwned);
    assert_eq!(e.ptr, outside.as_ptr() as usize);
    // SAFETY: as above.
    assert!(unsafe { h.usable_size(outside) }.is_err());
    // Interior pointers (payload filled with a pattern that is no header).
    for off in [1usize, 8, 16, 48, 128] {
        // SAFETY: inside a live block; the heap must refuse it.
        let q = unsafe { NonNull::new_unchecked(p.as_ptr().add(off)) };
        // SAFETY: as above.
        let r = unsafe { h.deallocate(q) };
        assert!(r.is_err(), "interior pointer p+{off} was freed");
        h.check().unwrap();
    }
    verify(p, 256, 0xA5);
    // SAFETY: live block.
    unsafe { h.deallocate(p) }.unwrap();
    h.check().unwrap();
    // Double free.
    // SAFETY: the heap must detect the double free.
    let e = unsafe { h.deallocate(p) }.unwrap_err();
    assert!(
        matches!(
            e.kind,
            HeapErrorKind::DoubleFree | HeapErrorKind::InvalidPointer
        ),
        "double free reported as {e:?}"
    );
    h.check().unwrap();
    // Nothing the caller still owns was lost.
    // SAFETY: live block.
    assert!(unsafe { h.usable_size(keep) }.unwrap() >= 64);
    // SAFETY: live block.
    unsafe { h.deallocate(keep) }.unwrap();
    h.check().unwrap();
}

pub fn bad_regions<H: RegionHeap>(make: fn() -> H) {
    let arena = Arena::new(1 << 20);
    let mut h = make();
    // Too small.
    // SAFETY: arena memory, used by nothing else.
    let r = unsafe { h.add_region(arena.region(0, 8)) };
    assert!(matches!(r, Err(RegionError::TooSmall { .. })), "{r:?}");
    h.check().unwrap();
    assert!(h.allocate(16, 16).is_none());
    // Misaligned start and end: trimmed, still usable.
    // SAFETY: as above.
    unsafe { h.add_region(arena.region(4099, 300_001)) }.expect("misaligned region");
    h.check().unwrap();
    let p = h.allocate(1000, 16).unwrap();
    assert!(arena.contains(p.as_ptr() as usize));
    // Overlapping a region already held.
    // SAFETY: the heap must refuse it without touching it.
    let r = unsafe { h.add_region(arena.region(8192, 4096)) };
    assert_eq!(r, Err(RegionError::Overlaps));
    h.check().unwrap();
    // A second, separate region.
    // SAFETY: disjoint from the first.
    unsafe { h.add_region(arena.region(512 * 1024, 512 * 1024)) }.expect("second region");
    h.check().unwrap();
    // SAFETY: live block.
    unsafe { h.deallocate(p) }.unwrap();
    h.check().unwrap();
}

pub fn multi_region_exhaustion<H: RegionHeap>(make: fn() -> H, restores: bool) {
    let arena = Arena::new(1 << 20);
    let mut h = make();
    // SAFETY: disjoint parts of the arena.
    unsafe {
        h.add_region(arena.region(0, 256 * 1024)).unwrap();
        h.add_region(arena.region(512 * 1024, 256 * 1024)).unwrap();
    }
    let initial = h.stats();
    let mut live = Vec::new();
    let mut i = 0u8;
    while let Some(p) = h.allocate(1000 + (i as usize % 7) * 300, 16) {
        fill(p, 1000, i);
        live.push((p, i));
        i = i.wrapping_add(1);
        assert!(live.len() < 100_000);
    }
    h.check().unwrap();
    let in_first = live
        .iter()
        .any(|(p, _)| (p.as_ptr() as usize) < arena.ptr as usize + 256 * 1024);
    let in_second = live
        .iter()
        .any(|(p, _)| (p.as_ptr() as usize) >= arena.ptr as usize + 512 * 1024);
    assert!(in_first && in_second, "both regions should be used");
    let st = h.stats();
    assert!(
        st.in_use as f64 > 0.5 * 512.0 * 1024.0,
        "only {} bytes in use at exhaustion",
        st.in_use
    );
    assert!(st.failed >= 1);
    // Free every other block, then the rest, checking as we go.
    for (p, b) in live.iter().step_by(2) {
        verify(*p, 1000, *b);
        // SAFETY: live block.
        unsafe { h.deallocate(*p) }.unwrap();
    }
    h.check().unwrap();
    for (p, b) in live.iter().skip(1).step_by(2) {
        verify(*p, 1000, *b);
        // SAFETY: live block.
        unsafe { h.deallocate(*p) }.unwrap();
    }
    h.check().unwrap();
    let end = h.stats();
    assert_eq!(end.in_use, 0);
    if restores {
        assert_eq!(
            end.free, initial.free,
            "free bytes not restored after freeing all"
        );
        assert_eq!(end.largest_free, initial.largest_free, "not coalesced back");
        assert_eq!(end.free_blocks, initial.free_blocks, "not coalesced back");
    }
}

pub fn resize<H: RegionHeap>(make: fn() -> H) {
    let arena = Arena::new(1 << 20);
    let mut h = heap_over(make(), &arena);
    let mut p = h.allocate(100, 16).unwrap();
    fill(p, 100, 7);
    let mut len = 100;
    for new in [200usize, 1000, 50, 5000, 16, 70000, 300] {
        // SAFETY: live block.
        let in_place = unsafe { h.resize_in_place(p, new) };
        if in_place {
            // SAFETY: live block.
            assert!(unsafe { h.usable_size(p) }.unwrap() >= new);
        } else {
            // SAFETY: live block.
            p = unsafe { h.reallocate(p, new, 16) }.expect("reallocate");
        }
        h.check().unwrap();
        verify(p, len.min(new), 7);
        fill(p, new, 7);
        len = new;
    }
    // Realloc to a larger alignment moves the block if it must.
    // SAFETY: live block.
    let q = unsafe { h.reallocate(p, 300, 4096) }.unwrap();
    assert_eq!(q.as_ptr() as usize % 4096, 0);
    verify(q, 300, 7);
    // A failing reallocate leaves the block alone.
    // SAFETY: live block.
    assert!(unsafe { h.reallocate(q, usize::MAX / 2, 16) }.is_none());
    // SAFETY: still live (the failed reallocate left it alone).
    assert!(unsafe { h.reallocate(q, 10 << 20, 16) }.is_none());
    verify(q, 300, 7);
    // SAFETY: live block.
    unsafe { h.deallocate(q) }.unwrap();
    h.check().unwrap();
    assert_eq!(h.stats().in_use, 0);
}

/// One operation of a random program.
#[derive(Debug, Clone)]
pub enum Op {
    Alloc { size: usize, align_shift: u8 },
    Free { idx: usize },
    Realloc { idx: usize, size: usize },
    Resize { idx: usize, size: usize },
}

pub fn ops() -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
    use proptest::prelude::*;
    let size = prop_oneof![
        8 => 0usize..=512,
        3 => 513usize..=8192,
        1 => 8193usize..=70_000,
    ];
    let op = prop_oneof![
        5 => (size.clone(), prop_oneof![6 => 0u8..=4, 1 => 5u8..=12]).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        3 => any::<usize>().prop_map(|idx| Op::Free { idx }),
        1 => (any::<usize>(), size.clone()).prop_map(|(idx, size)| Op::Realloc { idx, size }),
        1 => (any::<usize>(), size).prop_map(|(idx, size)| Op::Resize { idx, size }),
    ];
    proptest::collection::vec(op, 1..160)
}

/// Run `program` against the heap and a shadow model: no overlap, alignment
/// kept, fill bytes intact, contents kept across realloc, `check()` clean
/// after every step, stats equal to the model.
pub fn model<H: RegionHeap>(make: fn() -> H, program: &[Op], restores: bool) {
    let arena = Arena::new(2 << 20);
    let mut h = heap_over(make(), &arena);
    let initial = h.stats();
    // payload address -> (usable size, fill byte, align)
    let mut live: BTreeMap<usize, (usize, u8, usize)> = BTreeMap::new();
    // payload address -> the size last asked for it (what a sized free
    // or realloc hands back; the usable size is as good)
    let mut asked: BTreeMap<usize, usize> = BTreeMap::new();
    let mut allocs = initial.allocs;
    let mut frees = initial.frees;
    let mut tag = 0u8;
    let nth = |live: &BTreeMap<usize, (usize, u8, usize)>, idx: usize| {
        live.iter().nth(idx % live.len()).map(|(k, v)| (*k, *v))
    };
    for op in program {
        match *op {
            Op::Alloc { size, align_shift } => {
                let align = 1usize << align_shift;
                if let Some(p) = h.allocate(size, align) {
                    let a = p.as_ptr() as usize;
                    assert_eq!(a % align.max(MIN_ALIGN), 0);
                    assert!(arena.contains(a));
                    // SAFETY: live block.
                    let us = unsafe { h.usable_size(p) }.unwrap();
                    assert!(us >= size.max(1));
                    if let Some((&k, &(ks, _, _))) = live.range(..=a).next_back() {
                        assert!(k + ks <= a, "new block {a:#x} overlaps {k:#x}+{ks}");
                    }
                    if let Some((&k, _)) = live.range(a..).next() {
                        assert!(a + us <= k, "new block {a:#x}+{us} overlaps {k:#x}");
                    }
                    tag = tag.wrapping_add(1);
                    fill(p, us, tag);
                    live.insert(a, (us, tag, align));
                    asked.insert(a, size);
                    allocs += 1;
                }
            }
            Op::Free { idx } => {
                if live.is_empty() {
                    continue;
                }
                let (a, (us, byte, _)) = nth(&live, idx).unwrap();
                let p = NonNull::new(a as *mut u8).unwrap();
                verify(p, us, byte);
                // Unsized, sized with the size asked for, or with the
                // usable size.
                let size = [None, Some(asked[&a]), Some(us)][idx % 3];
                // SAFETY: live block, of `s` bytes where sized.
                unsafe {
                    match size {
                        None => h.deallocate(p),
                        Some(s) => h.deallocate_sized(p, s),
                    }
                }
                .unwrap();
                live.remove(&a);
                asked.remove(&a);
                frees += 1;
            }
            Op::Realloc { idx, size } => {
                if live.is_empty() {
                    continue;
                }
                let (a, (us, byte, align)) = nth(&live, idx).unwrap();
                let p = NonNull::new(a as *mut u8).unwrap();
                let old = asked[&a];
                // SAFETY: live block.
                let moved = unsafe {
                    if idx % 2 == 0 {
                        h.reallocate(p, size, align)
                    } else {
                        h.reallocate_sized(p, old, size, align)
                    }
                };
                if let Some(q) = moved {
                    let b = q.as_ptr() as usize;
                    assert_eq!(b % align.max(MIN_ALIGN), 0);
                    verify(q, us.min(size), byte);
                    // SAFETY: live block.
                    let nus = unsafe { h.usable_size(q) }.unwrap();
                    assert!(nus >= size.max(1));
                    live.remove(&a);
                    if let Some((&k, &(ks, _, _))) = live.range(..=b).next_back() {
                        assert!(k + ks <= b, "moved block overlaps");
                    }
                    if let Some((&k, _)) = live.range(b..).next() {
                        assert!(b + nus <= k, "moved block overlaps");
                    }
                    fill(q, nus, byte);
                    live.insert(b, (nus, byte, align));
                    asked.remove(&a);
                    asked.insert(b, size);
                    if b != a {
                        allocs += 1;
                        frees += 1;
                    }
                } else {
                    verify(p, us, byte);
                }
            }
            Op::Resize { idx, size } => {
                if live.is_empty() {
                    continue;
                }
                let (a, (us, byte, align)) = nth(&live, idx).unwrap();
                let p = NonNull::new(a as *mut u8).unwrap();
                // SAFETY: live block.
                if unsafe { h.resize_in_place(p, size) } {
                    // SAFETY: live block.
                    let nus = unsafe { h.usable_size(p) }.unwrap();
                    assert!(nus >= size.max(1));
                    verify(p, us.min(nus), byte);
                    if let Some((&k, _)) = live.range(a + 1..).next() {
                        assert!(a + nus <= k, "grown block overlaps its neighbour");
                    }
                    fill(p, nus, byte);
                    live.insert(a, (nus, byte, align));
                    asked.insert(a, size);
                } else {
                    verify(p, us, byte);
                }
            }
        }
        if let Err(e) = h.check() {
            panic!("check failed after {op:?}: {e}");
        }
        let st = h.stats();
        let sum: usize = live.values().map(|v| v.0).sum();
        assert_eq!(
            st.in_use, sum,
            "stats.in_use differs from the model after {op:?}"
        );
        assert_eq!(
            st.live(),
            live.len() as u64,
            "live count differs after {op:?}"
        );
        assert_eq!(st.allocs, allocs, "alloc count differs after {op:?}");
        assert_eq!(st.frees, frees, "free count differs after {op:?}");
        assert!(st.in_use + st.free <= st.region_bytes);
    }
    let map: BTreeMap<usize, usize> = live.iter().map(|(k, v)| (*k, v.0)).collect();
    check_walk(&h, &map);
    for (&a, &(us, byte, _)) in &live {
        let p = NonNull::new(a as *mut u8).unwrap();
        verify(p, us, byte);
        // SAFETY: live block.
        unsafe { h.deallocate(p) }.unwrap();
        h.check().unwrap();
    }
    let end = h.stats();
    assert_eq!(end.in_use, 0);
    if restores {
        assert_eq!(
            end.free, initial.free,
            "free bytes not restored after freeing all"
        );
        assert_eq!(end.free_blocks, initial.free_blocks, "not coalesced back");
        assert_eq!(end.largest_free, initial.largest_free, "not coalesced back");
    }
}
