//! Checked arithmetic on sizes and addresses, shared by every strategy.
//!
//! Allocator bugs hide in `size + header` and `(addr + align - 1) & !(align - 1)`
//! when the operands come from a caller. These helpers return `None` instead of
//! wrapping, so a request near `usize::MAX` fails cleanly.

/// `true` when `align` is a non-zero power of two.
#[inline(always)]
pub const fn is_power_of_two(align: usize) -> bool {
    align != 0 && align & (align - 1) == 0
}

/// Round `value` up to a multiple of `align` (a power of two), or `None` on
/// overflow.
#[inline(always)]
pub const fn align_up(value: usize, align: usize) -> Option<usize> {
    debug_assert!(is_power_of_two(align));
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Round `value` down to a multiple of `align` (a power of two).
#[inline(always)]
pub const fn align_down(value: usize, align: usize) -> usize {
    debug_assert!(is_power_of_two(align));
    value & !(align - 1)
}

/// Validate an allocation request as the contract demands: `align` must be a
/// power of two, and `size` rounded up to `granule` (a power of two) plus
/// `overhead` plus the worst-case padding for `align` must fit in `isize`.
///
/// Returns `(size rounded to granule, max(align, MIN_ALIGN))`.
#[inline]
pub const fn checked_request(
    size: usize,
    align: usize,
    granule: usize,
    overhead: usize,
) -> Option<(usize, usize)> {
    if !is_power_of_two(align) {
        return None;
    }
    let align = if align < crate::MIN_ALIGN {
        crate::MIN_ALIGN
    } else {
        align
    };
    let size = if size == 0 { granule } else { size };
    let rounded = match align_up(size, granule) {
        Some(r) => r,
        None => return None,
    };
    // Worst case the strategy must reserve: payload + metadata + padding.
    let worst = match rounded.checked_add(overhead) {
        Some(w) => match w.checked_add(align) {
            Some(w) => w,
            None => return None,
        },
        None => return None,
    };
    if worst > isize::MAX as usize {
        return None;
    }
    Some((rounded, align))
}

/// The link word at `p` (the first word of a free block) as a pointer.
/// Read as an integer and cast: a program may have written any bytes there
/// (a write after free), and a pointer read from bytes written as an
/// integer has no provenance, so following it would be undefined behaviour
/// even where the address is in the heap (Miri reports it); the cast gives
/// it the heap's own, exposed provenance. Callers check the address before
/// they follow it.
///
/// # Safety
/// `p` is valid for reading one aligned word.
#[inline(always)]
pub(crate) unsafe fn read_link(p: *const u8) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe { p.cast::<usize>().read() as *mut u8 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_refuses_overflow() {
        assert_eq!(align_up(usize::MAX, 16), None);
        assert_eq!(align_up(usize::MAX - 14, 16), None);
        assert_eq!(align_up(17, 16), Some(32));
        assert_eq!(align_up(0, 16), Some(0));
    }

    #[test]
    fn checked_request_edges() {
        assert_eq!(checked_request(0, 8, 16, 16), Some((16, 16)));
        assert_eq!(checked_request(1, 3, 16, 16), None);
        assert_eq!(checked_request(1, 0, 16, 16), None);
        assert_eq!(checked_request(usize::MAX, 16, 16, 16), None);
        assert_eq!(checked_request(isize::MAX as usize, 16, 16, 16), None);
        assert_eq!(checked_request(100, 4096, 16, 32), Some((112, 4096)));
    }
}
