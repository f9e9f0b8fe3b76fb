//! Strategy names as C strings: parsed from the kernel's (read with a bound)
//! and handed out as NUL-terminated statics built at compile time from
//! `Strategy::ALL`.

use core::ffi::c_char;

use stratalloc_core::Strategy;

/// Bytes of a name buffer, NUL included (the longest name is 10).
pub const NAME_BYTES: usize = 16;

/// `s` as a NUL-padded buffer.
pub const fn c_name(s: Strategy) -> [u8; NAME_BYTES] {
    let name = s.name().as_bytes();
    assert!(
        name.len() < NAME_BYTES,
        "a strategy name outgrew NAME_BYTES"
    );
    let mut buf = [0u8; NAME_BYTES];
    let mut i = 0;
    while i < name.len() {
        buf[i] = name[i];
        i += 1;
    }
    buf
}

const COUNT: usize = Strategy::ALL.len();

/// Every strategy's name, NUL-terminated, in `Strategy::ALL` order.
static NAMES: [[u8; NAME_BYTES]; COUNT] = {
    let mut t = [[0u8; NAME_BYTES]; COUNT];
    let mut i = 0;
    while i < COUNT {
        t[i] = c_name(Strategy::ALL[i]);
        i += 1;
    }
    t
};

/// The `i`-th strategy's name, or null past the last.
pub fn nth(i: usize) -> *const c_char {
    NAMES
        .get(i)
        .map_or(core::ptr::null(), |n| n.as_ptr().cast())
}

/// The strategy a C string names; `None` for null, an unknown name, or no
/// NUL within `NAME_BYTES` bytes (nothing past that is read).
///
/// # Safety
/// `name` is null or readable up to its NUL or `NAME_BYTES` bytes,
/// whichever comes first.
pub unsafe fn parse(name: *const c_char) -> Option<Strategy> {
    if name.is_null() {
        return None;
    }
    let mut buf = [0u8; NAME_BYTES];
    for (i, b) in buf.iter_mut().enumerate() {
        // SAFETY: byte `i` is at or before the NUL (earlier bytes were not
        // NUL), and within NAME_BYTES: readable per the contract.
        *b = unsafe { *name.cast::<u8>().add(i) };
        if *b == 0 {
            return Strategy::from_bytes(&buf[..i]).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for (i, s) in Strategy::ALL.iter().enumerate() {
            // SAFETY: `nth` returns a NUL-terminated static.
            assert_eq!(unsafe { parse(nth(i)) }, Some(*s));
        }
        assert!(nth(COUNT).is_null());
        // SAFETY: null, and NUL-terminated literals.
        unsafe {
            assert_eq!(parse(core::ptr::null()), None);
            assert_eq!(parse(c"tlsf2".as_ptr()), None);
            assert_eq!(parse(c"".as_ptr()), None);
            assert_eq!(parse(c"tlsf".as_ptr()), Some(Strategy::Tlsf));
        }
        // No NUL in the first NAME_BYTES bytes: refused without reading on.
        let long = [b'a' as c_char; NAME_BYTES];
        // SAFETY: `long` is NAME_BYTES readable bytes.
        assert_eq!(unsafe { parse(long.as_ptr()) }, None);
    }
}
