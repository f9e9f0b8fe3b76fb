//! [`PtrTable`]: pointer → (size, tag) for every live block, in memory mapped
//! from the OS, shared by the leak and check wrappers.
//!
//! The table is split into [`SHARDS`] shards, each an open-addressing hash
//! table with linear probing behind its own spin lock (lock striping): the
//! top bits of a pointer's hash pick the shard, the low bits the home slot.
//! A shard starts empty and doubles (a fresh mapping, every entry rehashed,
//! the old mapping unmapped) when it is three quarters full, so the table
//! never allocates from the heap it watches.
//!
//! ```text
//!   hash(p) = 0b 101110 ..................... 0110101   (p >> 4) * K, high
//!                ^ shard (6 bits)             ^ home slot (low bits)   half xored into the low
//!   shard 46: [ p1 | p7 | -- | p3 | p9 | -- | ... ]   linear probing,
//!                     ^home(p7) = 0, found at 1        key 0 = empty
//! ```
//!
//! Deletion shifts later entries of the probe run back (no tombstones), so a
//! lookup stops at the first empty slot.
//!
//! - **Time**: insert, remove, get O(1) expected; growth O(n) amortised.
//! - **Space**: 24 bytes per slot, at most 4/3 slot per live block, ×2 while
//!   growing.
//!
//! Invariants (checked by [`PtrTable::check`]):
//! - a shard's `len` equals its number of occupied slots and is at most
//!   3/4 of its capacity; the capacity is 0 or a power of two;
//! - every key is in the shard its hash names, and every slot from its home
//!   slot to its position is occupied (the probe run is unbroken).

use crate::os::{map_meta as map, unmap_meta as unmap};
use crate::sync::{raw_lock_all, raw_try_lock_all, raw_unlock_all, SpinLock};
use stratalloc_core::CheckError;

/// Number of shards (each with its own lock).
pub const SHARDS: usize = 64;
const SHARD_BITS: u32 = 6;
use crate::tuning::TABLE_FIRST_CAP as FIRST_CAP;

/// One slot: `key` 0 means empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Entry {
    /// The pointer.
    pub key: usize,
    /// The block's size as the caller asked for it.
    pub size: usize,
    /// What the wrapper keeps beside it (a stack id, a state and offset).
    pub tag: u64,
}

struct Shard {
    slots: *mut Entry,
    cap: usize,
    len: usize,
}

// SAFETY: a shard owns its mapping; it is only reached under its lock.
unsafe impl Send for Shard {}

/// A multiplicative hash whose high bits are folded into the low ones:
/// the shard is taken from the top bits, the home slot from the low bits,
/// and a product's low bits depend only on the key's low bits (keys at a
/// stride of a page would all share a few home slots).
#[inline]
fn hash(key: usize) -> u64 {
    let h = (key as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 32)
}

impl Shard {
    const fn new() -> Self {
        Shard {
            slots: core::ptr::null_mut(),
            cap: 0,
            len: 0,
        }
    }

    fn slots(&self) -> &[Entry] {
        if self.cap == 0 {
            return &[];
        }
        // SAFETY: `slots` maps `cap` entries owned by this shard.
        unsafe { core::slice::from_raw_parts(self.slots, self.cap) }
    }

    fn slots_mut(&mut self) -> &mut [Entry] {
        if self.cap == 0 {
            return &mut [];
        }
        // SAFETY: as in `slots`, and we hold `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(self.slots, self.cap) }
    }

    fn home(&self, key: usize) -> usize {
        hash(key) as usize & (self.cap - 1)
    }

    fn find(&self, key: usize) -> Option<usize> {
        if self.cap == 0 {
            return None;
        }
        let s = self.slots();
        let mut i = self.home(key);
        loop {
            if s[i].key == key {
                return Some(i);
            }
            if s[i].key == 0 {
                return None;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    fn grow(&mut self) -> bool {
        let new_cap = if self.cap == 0 {
            FIRST_CAP
        } else {
            self.cap * 2
        };
        let bytes = new_cap * core::mem::size_of::<Entry>();
        let p = map(bytes).cast::<Entry>();
        if p.is_null() {
            return false;
        }
        let old = Shard {
            slots: self.slots,
            cap: self.cap,
            len: self.len,
        };
        self.slots = p;
        self.cap = new_cap;
        self.len = 0;
        for e in old.slots() {
            if e.key != 0 {
                self.put_new(*e);
            }
        }
        if old.cap != 0 {
            // SAFETY: the old mapping was made by `map` with this size and
            // every entry has been copied out.
            unsafe { unmap(old.slots.cast(), old.cap * core::mem::size_of::<Entry>()) };
        }
        true
    }

    /// Place an entry whose key is not present; capacity must allow it.
    fn put_new(&mut self, e: Entry) {
        let mask = self.cap - 1;
        let mut i = self.home(e.key);
        let s = self.slots_mut();
        while s[i].key != 0 {
            i = (i + 1) & mask;
        }
        s[i] = e;
        self.len += 1;
    }

    fn remove_at(&mut self, mut hole: usize) -> Entry {
        let mask = self.cap - 1;
        let cap = self.cap;
        let homes = |s: &Self, k: usize| s.home(k);
        let removed = self.slots()[hole];
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let k = self.slots()[j].key;
            if k == 0 {
                break;
            }
            let h = homes(self, k);
            // Move entry j into the hole if its home is not in (hole, j].
            let dist_j = (j + cap - h) & mask;
            let dist_hole = (j + cap - hole) & mask;
            if dist_j >= dist_hole {
                let s = self.slots_mut();
                s[hole] = s[j];
                hole = j;
            }
        }
        self.slots_mut()[hole] = Entry::default();
        self.len -= 1;
        removed
    }
}

/// A concurrent map from pointers to `(size, tag)`; see the module docs.
pub struct PtrTable {
    shards: [SpinLock<Shard>; SHARDS],
}

impl Default for PtrTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PtrTable {
    /// An empty table (maps nothing until the first insert).
    pub const fn new() -> Self {
        PtrTable {
            shards: [const { SpinLock::new(Shard::new()) }; SHARDS],
        }
    }

    fn shard(&self, key: usize) -> &SpinLock<Shard> {
        &self.shards[(hash(key) >> (64 - SHARD_BITS)) as usize]
    }

    /// Insert or overwrite `key`. `false` if memory for the table ran out
    /// (the entry is then not recorded). `key` must not be 0.
    pub fn insert(&self, key: usize, size: usize, tag: u64) -> bool {
        debug_assert!(key != 0);
        let mut s = self.shard(key).lock();
        if let Some(i) = s.find(key) {
            s.slots_mut()[i] = Entry { key, size, tag };
            return true;
        }
        if (s.len + 1) * 4 > s.cap * 3 && !s.grow() {
            return false;
        }
        s.put_new(Entry { key, size, tag });
        true
    }

    /// Remove `key` and return its entry.
    pub fn remove(&self, key: usize) -> Option<Entry> {
        let mut s = self.shard(key).lock();
        let i = s.find(key)?;
        Some(s.remove_at(i))
    }

    /// The entry for `key`.
    pub fn get(&self, key: usize) -> Option<Entry> {
        let s = self.shard(key).lock();
        s.find(key).map(|i| s.slots()[i])
    }

    /// Replace the tag of `key` if `f` accepts the current entry; returns
    /// the entry as it was (or `None` if absent).
    pub fn update(&self, key: usize, f: impl FnOnce(&mut Entry)) -> Option<Entry> {
        let mut s = self.shard(key).lock();
        let i = s.find(key)?;
        let before = s.slots()[i];
        f(&mut s.slots_mut()[i]);
        debug_assert_eq!(s.slots()[i].key, key, "update must not change the key");
        Some(before)
    }

    /// Call `f` on every entry, one shard locked at a time. `f` must not
    /// call back into the table.
    pub fn for_each(&self, mut f: impl FnMut(&Entry)) {
        for sh in &self.shards {
            let s = sh.lock();
            for e in s.slots() {
                if e.key != 0 {
                    f(e);
                }
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len).sum()
    }

    /// `true` if no entry is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Call `f` on every entry, with every shard lock already held by the
    /// caller (no lock is taken).
    ///
    /// # Safety
    /// The caller holds every shard lock through [`lock_all`](Self::lock_all).
    pub unsafe fn for_each_held(&self, mut f: impl FnMut(&Entry)) {
        for sh in &self.shards {
            // SAFETY: held by the caller.
            for e in unsafe { sh.raw_value() }.slots() {
                if e.key != 0 {
                    f(e);
                }
            }
        }
    }

    /// Number of entries and the `(start, end)` of every shard's mapping,
    /// with every shard lock already held by the caller.
    ///
    /// # Safety
    /// As [`for_each_held`](Self::for_each_held).
    pub unsafe fn mappings_held(&self, mut f: impl FnMut(usize, usize)) -> usize {
        let mut n = 0;
        for sh in &self.shards {
            // SAFETY: held by the caller.
            let s = unsafe { sh.raw_value() };
            n += s.len;
            if s.cap != 0 {
                let start = s.slots as usize;
                f(start, start + s.cap * core::mem::size_of::<Entry>());
            }
        }
        n
    }

    /// Take every shard lock, waiting for each (the leak check, before it
    /// stops the other threads).
    pub fn lock_all(&self) {
        raw_lock_all(&self.shards);
    }

    /// Take every shard lock before `fork`: `false` (none held) if one
    /// gave up (see `sync::raw_try_lock_all`).
    #[must_use]
    pub fn try_lock_all(&self) -> bool {
        raw_try_lock_all(&self.shards)
    }

    /// Release every shard lock taken by [`lock_all`](Self::lock_all) or
    /// [`try_lock_all`](Self::try_lock_all).
    ///
    /// # Safety
    /// The caller took them with one of those.
    pub unsafe fn unlock_all(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { raw_unlock_all(&self.shards) }
    }

    /// Verify the invariants in the module docs.
    pub fn check(&self) -> Result<(), CheckError> {
        for (n, sh) in self.shards.iter().enumerate() {
            let s = sh.lock();
            if s.cap != 0 && !s.cap.is_power_of_two() {
                return Err(CheckError::new(
                    s.slots as usize,
                    "capacity is not a power of two",
                ));
            }
            if s.len * 4 > s.cap * 3 {
                return Err(CheckError::new(s.slots as usize, "shard is over 3/4 full"));
            }
            let mut count = 0;
            for (i, e) in s.slots().iter().enumerate() {
                if e.key == 0 {
                    continue;
                }
                count += 1;
                if (hash(e.key) >> (64 - SHARD_BITS)) as usize != n {
                    return Err(CheckError::new(e.key, "key is in the wrong shard"));
                }
                let mut j = s.home(e.key);
                while j != i {
                    if s.slots()[j].key == 0 {
                        return Err(CheckError::new(e.key, "probe run broken before the key"));
                    }
                    j = (j + 1) & (s.cap - 1);
                }
            }
            if count != s.len {
                return Err(CheckError::new(
                    s.slots as usize,
                    "len differs from occupied slots",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn matches_a_model_through_growth_and_deletion() {
        let t = Box::leak(Box::new(PtrTable::new()));
        let mut model = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        for step in 0..60_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Addresses from a small range so removals hit existing keys.
            let key = 0x10_0000 + ((x % 20_000) as usize) * 16;
            if x % 3 == 0 {
                assert_eq!(t.remove(key).map(|e| e.size), model.remove(&key));
            } else {
                assert!(t.insert(key, step as usize, step));
                model.insert(key, step as usize);
            }
            if step % 10_000 == 0 {
                t.check().unwrap();
            }
        }
        t.check().unwrap();
        assert_eq!(t.len(), model.len());
        for (k, v) in &model {
            assert_eq!(t.get(*k).unwrap().size, *v);
        }
        let mut n = 0;
        t.for_each(|e| {
            assert_eq!(model[&e.key], e.size);
            n += 1;
        });
        assert_eq!(n, model.len());
        for k in model.keys() {
            t.remove(*k).unwrap();
        }
        assert!(t.is_empty());
        t.check().unwrap();
    }

    /// Mean distance of the keys from their home slots.
    fn mean_displacement(t: &PtrTable) -> f64 {
        let (mut sum, mut n) = (0usize, 0usize);
        for sh in &t.shards {
            let s = sh.lock();
            for (i, e) in s.slots().iter().enumerate() {
                if e.key != 0 {
                    sum += (i + s.cap - s.home(e.key)) & (s.cap - 1);
                    n += 1;
                }
            }
        }
        sum as f64 / n.max(1) as f64
    }

    /// Blocks of one size class lie at a fixed stride: their keys must
    /// still spread over the home slots (linear probing at 3/4 load
    /// expects a mean displacement of 1.5).
    #[test]
    fn strided_keys_do_not_cluster() {
        for stride in [16usize, 64, 256, 4096] {
            let t = Box::leak(Box::new(PtrTable::new()));
            for i in 0..50_000 {
                assert!(t.insert(0x7f00_0000_0000 + i * stride, 1, 0));
            }
            let d = mean_displacement(t);
            assert!(d < 3.0, "stride {stride}: mean displacement {d:.1}");
        }
    }

    #[test]
    fn update_changes_the_tag() {
        let t = PtrTable::new();
        assert!(t.update(64, |_| {}).is_none());
        t.insert(64, 10, 1);
        let before = t.update(64, |e| e.tag = 2).unwrap();
        assert_eq!(before.tag, 1);
        assert_eq!(t.get(64).unwrap().tag, 2);
    }
}
