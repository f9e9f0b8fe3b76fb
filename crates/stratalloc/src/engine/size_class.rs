//! Size classes: which block size serves a request, and how many slices a
//! page of that class spans.
//!
//! ```text
//!   16 32 48 … 128 | 144 160 … 256 | 288 320 … 512 | … | 458752 … 524288
//!   step 16        | step 16        | step 32       |   | step 64 KiB
//!   (8 classes)    | 8 per doubling from 128 up: step = 2^(k-3) in [2^k, 2^(k+1))
//! ```
//!
//! Waste bound: a request `s` gets class `c(s)` with
//! `c(s) - max(s, 1) < max(s / 8, 16)`, i.e. at most 12.5 % internal waste once
//! `s > 128`, and less than one 16-byte granule below (blocks of 16 bytes
//! or more must be 16-aligned, so no finer classes are possible there).
//! The bound is checked exhaustively by a unit test.
//!
//! Requests above [`MEDIUM_MAX`] are *large* (one block on a span of whole
//! slices) or *huge* (mapped directly); they have no class.

use super::segment::{SLICES_PER_SEGMENT, SLICE_SIZE};

/// Largest request served from a size class.
pub const MEDIUM_MAX: usize = 512 << 10;
/// Number of size classes.
pub const CLASSES: usize = 8 + 8 * 12;
/// Requests up to this size use the direct table (`(size + 15) / 16` → page).
pub const DIRECT_MAX: usize = 1024;
/// Entries in the direct table.
pub const DIRECT_SLOTS: usize = DIRECT_MAX / 16 + 1;

/// Class index of a request of `size` bytes (`size <= MEDIUM_MAX`).
#[inline]
pub const fn class_of(size: usize) -> usize {
    if size <= 128 {
        let s = if size == 0 { 1 } else { size };
        s.div_ceil(16) - 1
    } else {
        let w = size - 1;
        let k = (usize::BITS - 1 - w.leading_zeros()) as usize; // floor(log2 w) >= 7
        8 + (k - 7) * 8 + ((w >> (k - 3)) & 7)
    }
}

/// Block size of class `c`.
#[inline]
pub const fn class_size(c: usize) -> usize {
    CLASS_SIZE[c] as usize
}

/// Slices spanned by a page of class `c`.
#[inline]
pub const fn class_slices(c: usize) -> usize {
    CLASS_SLICES[c] as usize
}

const fn size_of_class(c: usize) -> usize {
    if c < 8 {
        (c + 1) * 16
    } else {
        let k = (c - 8) / 8 + 7;
        let j = (c - 8) % 8 + 1;
        (1 << k) + j * (1 << (k - 3))
    }
}

const fn slices_for(bs: usize) -> usize {
    if bs <= 8 << 10 {
        return 1;
    }
    let min_blocks = if bs <= 64 << 10 { 8 } else { 2 };
    let base = (bs * min_blocks).div_ceil(SLICE_SIZE);
    let mut max = base * 2;
    if max > SLICES_PER_SEGMENT / 2 {
        max = SLICES_PER_SEGMENT / 2;
    }
    let mut best = base;
    let mut best_waste_ppm = usize::MAX;
    let mut n = base;
    while n <= max {
        let span = n * SLICE_SIZE;
        let ppm = (span % bs) * 1_000_000 / span;
        if ppm * 16 <= 1_000_000 {
            return n;
        }
        if ppm < best_waste_ppm {
            best_waste_ppm = ppm;
            best = n;
        }
        n += 1;
    }
    best
}

const CLASS_SIZE: [u32; CLASSES] = {
    let mut t = [0u32; CLASSES];
    let mut c = 0;
    while c < CLASSES {
        t[c] = size_of_class(c) as u32;
        c += 1;
    }
    t
};

const CLASS_SLICES: [u8; CLASSES] = {
    let mut t = [0u8; CLASSES];
    let mut c = 0;
    while c < CLASSES {
        t[c] = slices_for(size_of_class(c)) as u8;
        c += 1;
    }
    t
};

/// Class served by direct-table slot `w` (requests `16w-15 ..= 16w`).
pub const DIRECT_CLASS: [u8; DIRECT_SLOTS] = {
    let mut t = [0u8; DIRECT_SLOTS];
    let mut w = 0;
    while w < DIRECT_SLOTS {
        t[w] = class_of(w * 16) as u8;
        w += 1;
    }
    t
};

const _: () = assert!(size_of_class(CLASSES - 1) == MEDIUM_MAX);
const _: () = assert!(class_of(MEDIUM_MAX) == CLASSES - 1);
const _: () = assert!(slices_for(MEDIUM_MAX) * SLICE_SIZE >= 2 * MEDIUM_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_increasing_and_16_aligned() {
        for c in 0..CLASSES {
            assert_eq!(class_size(c) % 16, 0);
            if c > 0 {
                assert!(class_size(c) > class_size(c - 1));
            }
            assert_eq!(class_of(class_size(c)), c, "class {c}");
            let span = class_slices(c) * SLICE_SIZE;
            assert!(span / class_size(c) >= 2, "class {c}");
            // tail of a page unusable by the class: at most 1/8 of the span
            assert!((span % class_size(c)) * 8 <= span, "class {c}");
        }
    }

    #[test]
    fn waste_bound_holds_for_every_size() {
        for s in 0..=MEDIUM_MAX {
            let c = class_of(s);
            let bs = class_size(c);
            assert!(bs >= s, "size {s} class {c}");
            assert!(bs - s.max(1) < (s / 8).max(16), "size {s} -> {bs}");
            if c > 0 {
                assert!(class_size(c - 1) < s.max(1), "size {s} not in smallest fit");
            }
        }
    }

    #[test]
    fn direct_table_matches_class_of() {
        for s in 0..=DIRECT_MAX {
            assert_eq!(
                DIRECT_CLASS[s.div_ceil(16)] as usize,
                class_of(s),
                "size {s}"
            );
        }
    }
}
