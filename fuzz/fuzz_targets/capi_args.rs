//! The C entry points of `libstratalloc.so` with arbitrary sizes and
//! alignments, checked against the behaviour `crates/capi/src/lib.rs`
//! documents (glibc's):
//!
//! - sizes above `PTRDIFF_MAX`, overflowing `calloc`/`reallocarray`
//!   products, and any failure: NULL with `errno == ENOMEM`;
//! - `realloc(p, 0)` frees and returns NULL; a failed realloc leaves the
//!   block intact (verified);
//! - `posix_memalign`: `EINVAL` for an alignment that is not a power-of-two
//!   multiple of `sizeof(void *)`, `*out` written only on success, `errno`
//!   set to `ENOMEM` when it returns `ENOMEM` (as glibc), else untouched;
//! - `aligned_alloc`: non-power-of-two alignment gives NULL + `EINVAL`;
//!   `memalign` rounds the alignment up to a power of two;
//! - `valloc`/`pvalloc` page-aligned, `pvalloc` rounds the size up;
//! - successful calls and `free` leave `errno` alone;
//! - every pointer aligned, at least as large as asked (usable size), its
//!   fill verified before it is freed, calloc memory zero.
//!
//! The library is loaded with `dlopen(RTLD_LOCAL | RTLD_DEEPBIND)` from
//! `$STRATALLOC_SO` (scripts/fuzz.sh builds it and sets it), so the fuzzer
//! itself keeps the system allocator. `STRATALLOC_STRATEGY` in the
//! environment picks what the library serves from (default: the engine).
#![no_main]

use std::ffi::{c_int, c_void, CString};
use std::sync::OnceLock;

use fuzzkit::{fill, verify, Reader};
use libfuzzer_sys::fuzz_target;

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type ReallocArrayFn = unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void;
type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
type AlignedFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type UsableFn = unsafe extern "C" fn(*mut c_void) -> usize;
type FreeSizedFn = unsafe extern "C" fn(*mut c_void, usize);
type FreeAlignedSizedFn = unsafe extern "C" fn(*mut c_void, usize, usize);

struct Lib {
    malloc: MallocFn,
    free: FreeFn,
    calloc: CallocFn,
    realloc: ReallocFn,
    reallocarray: ReallocArrayFn,
    posix_memalign: PosixMemalignFn,
    aligned_alloc: AlignedFn,
    memalign: AlignedFn,
    valloc: MallocFn,
    pvalloc: MallocFn,
    usable: UsableFn,
    free_sized: FreeSizedFn,
    free_aligned_sized: FreeAlignedSizedFn,
}

fn lib() -> &'static Lib {
    static LIB: OnceLock<Lib> = OnceLock::new();
    LIB.get_or_init(|| {
        let path = std::env::var("STRATALLOC_SO")
            .unwrap_or_else(|_| "../target/release/libstratalloc.so".into());
        let c = CString::new(path.clone()).unwrap();
        // SAFETY: a NUL-terminated path; the handle is kept for the process.
        let h = unsafe {
            libc::dlopen(
                c.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_DEEPBIND,
            )
        };
        if h.is_null() {
            // SAFETY: dlerror returns a NUL-terminated message after a failure.
            let why = unsafe { std::ffi::CStr::from_ptr(libc::dlerror()) };
            panic!(
                "dlopen {path} failed: {} (set STRATALLOC_SO)",
                why.to_string_lossy()
            );
        }
        let sym = |name: &str| {
            let n = CString::new(name).unwrap();
            // SAFETY: a valid handle and a NUL-terminated name.
            let p = unsafe { libc::dlsym(h, n.as_ptr()) };
            assert!(!p.is_null(), "{path} has no {name}");
            p
        };
        // SAFETY: each symbol is the C function of that name, with the
        // prototype its man page gives.
        unsafe {
            Lib {
                malloc: std::mem::transmute::<*mut c_void, MallocFn>(sym("malloc")),
                free: std::mem::transmute::<*mut c_void, FreeFn>(sym("free")),
                calloc: std::mem::transmute::<*mut c_void, CallocFn>(sym("calloc")),
                realloc: std::mem::transmute::<*mut c_void, ReallocFn>(sym("realloc")),
                reallocarray: std::mem::transmute::<*mut c_void, ReallocArrayFn>(sym(
                    "reallocarray",
                )),
                posix_memalign: std::mem::transmute::<*mut c_void, PosixMemalignFn>(sym(
                    "posix_memalign",
                )),
                aligned_alloc: std::mem::transmute::<*mut c_void, AlignedFn>(sym("aligned_alloc")),
                memalign: std::mem::transmute::<*mut c_void, AlignedFn>(sym("memalign")),
                valloc: std::mem::transmute::<*mut c_void, MallocFn>(sym("valloc")),
                pvalloc: std::mem::transmute::<*mut c_void, MallocFn>(sym("pvalloc")),
                usable: std::mem::transmute::<*mut c_void, UsableFn>(sym("malloc_usable_size")),
                free_sized: std::mem::transmute::<*mut c_void, FreeSizedFn>(sym("free_sized")),
                free_aligned_sized: std::mem::transmute::<*mut c_void, FreeAlignedSizedFn>(sym(
                    "free_aligned_sized",
                )),
            }
        }
    })
}

const SENTINEL_ERRNO: c_int = 12345;
const ENOMEM: c_int = libc::ENOMEM;
const EINVAL: c_int = libc::EINVAL;
/// Blocks up to this size are filled and verified whole; larger ones at
/// both ends (they may be mostly untouched virtual memory).
const FILL_MAX: usize = 1 << 20;
const MAX_LIVE: usize = 48;
const MAX_OPS: usize = 1024;

/// `FUZZ_TRACE=1`: print every successful or failed allocation (to
/// understand a reproducer).
fn trace() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("FUZZ_TRACE").as_deref() == Ok("1"))
}

fn errno() -> c_int {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() }
}
fn set_errno(v: c_int) {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = v }
}

/// A size biased to the interesting places: small, up to 256 MiB, around
/// `PTRDIFF_MAX` and `SIZE_MAX`, anything above `PTRDIFF_MAX`. (Sizes a
/// machine could really map stay at most 256 MiB: a realloc of a block of
/// many GiB would copy it.)
fn any_size(r: &mut Reader) -> usize {
    match r.u8() % 10 {
        0..=3 => r.u16() as usize % 1024,
        4..=5 => r.u32() as usize % (4 << 20),
        6 => (isize::MAX as usize)
            .wrapping_add(r.u8() as usize)
            .wrapping_sub(128),
        7 => usize::MAX - r.u16() as usize,
        8 => 1usize << (r.u8() % 29),
        _ => r.u64() as usize | (1 << 63),
    }
}

/// An alignment anywhere in `usize`: powers of two (some huge), zero,
/// neighbours of powers of two, arbitrary values.
fn any_align(r: &mut Reader) -> usize {
    let k = r.u8() % 64;
    match r.u8() % 8 {
        0..=3 => 1usize << (k % 17),
        4 => 1usize << k,
        5 => 0,
        6 => (1usize << k).wrapping_add(1),
        _ => r.u64() as usize,
    }
}

#[derive(Clone, Copy)]
struct Live {
    p: *mut c_void,
    size: usize,
    align: usize,
    byte: u8,
}

/// Fill a new block (whole if small, both ends if large).
unsafe fn fill_block(p: *mut c_void, size: usize, byte: u8) {
    let p = p.cast::<u8>();
    // SAFETY: `p` is a live block of at least `size` bytes.
    unsafe {
        if size <= FILL_MAX {
            fill(p, size, byte);
        } else {
            fill(p, 4096, byte);
            fill(p.add(size - 4096), 4096, byte);
        }
    }
}

/// Verify a block's fill over its first `size` bytes.
unsafe fn verify_block(what: &str, p: *mut c_void, size: usize, byte: u8) {
    let p = p.cast::<u8>();
    // SAFETY: `p` is a live block of at least `size` bytes.
    unsafe {
        if size <= FILL_MAX {
            verify(what, p, size, byte);
        } else {
            verify(what, p, 4096, byte);
            verify(what, p.add(size - 4096), 4096, byte);
        }
    }
}

struct State {
    live: Vec<Live>,
    tag: u8,
}

impl State {
    /// A call returned `p` for `size` bytes aligned to `align`: on NULL,
    /// `errno` must be ENOMEM; otherwise check, fill and keep it.
    fn took(&mut self, name: &str, p: *mut c_void, size: usize, align: usize) {
        let l = lib();
        if trace() {
            eprintln!(
                "capi_args: {name}(size {size:#x}, align {align:#x}) = {p:p}, errno {}",
                errno()
            );
        }
        if p.is_null() {
            assert_eq!(
                errno(),
                ENOMEM,
                "{name}({size:#x}, align {align:#x}) = NULL with errno {}",
                errno()
            );
            assert!(
                size > (64 << 20) || align > (64 << 20),
                "{name}({size:#x}, align {align:#x}) failed"
            );
            return;
        }
        assert!(
            size <= isize::MAX as usize,
            "{name}({size:#x}) beyond PTRDIFF_MAX succeeded"
        );
        assert_eq!(
            errno(),
            SENTINEL_ERRNO,
            "{name}({size:#x}) succeeded but changed errno"
        );
        assert_eq!(
            p as usize % align.max(16),
            0,
            "{name}({size:#x}, align {align:#x}) = {p:p} misaligned"
        );
        // SAFETY: a live block of the library.
        let us = unsafe { (l.usable)(p) };
        assert!(us >= size, "{name}({size:#x}): usable size {us} too small");
        self.tag = self.tag.wrapping_add(1) | 1;
        // SAFETY: ours, at least `size` bytes.
        unsafe { fill_block(p, size, self.tag) };
        self.live.push(Live {
            p,
            size,
            align: align.max(16),
            byte: self.tag,
        });
        if self.live.len() > MAX_LIVE {
            let b = self.live.swap_remove(0);
            self.release(b, 0);
        }
    }

    /// Verify and free `b` (how: 0 free, 1 free_sized, 2 free_aligned_sized).
    fn release(&mut self, b: Live, how: u8) {
        let l = lib();
        // SAFETY: a live block of the library, given up.
        unsafe {
            verify_block("free", b.p, b.size, b.byte);
            set_errno(SENTINEL_ERRNO);
            match how % 3 {
                0 => (l.free)(b.p),
                1 => (l.free_sized)(b.p, b.size),
                _ => (l.free_aligned_sized)(b.p, b.align, b.size),
            }
        }
        assert_eq!(errno(), SENTINEL_ERRNO, "free changed errno");
    }

    fn pick(&mut self, r: &mut Reader) -> Option<Live> {
        if self.live.is_empty() {
            return None;
        }
        let i = r.u8() as usize % self.live.len();
        Some(self.live.swap_remove(i))
    }
}

fuzz_target!(|data: &[u8]| {
    fuzzkit::start_input("capi_args");
    let l = lib();
    let mut r = Reader::new(data);
    let mut s = State {
        live: Vec::new(),
        tag: 0,
    };
    // Calls made (the count reported), and steps decoded (a free with no
    // live block is a step but calls nothing).
    let mut ops = 0u64;
    let mut steps = 0usize;
    while !r.done() && steps < MAX_OPS {
        steps += 1;
        let op = r.u8() % 12;
        if !((8..=10).contains(&op) && s.live.is_empty()) {
            ops += 1;
        }
        set_errno(SENTINEL_ERRNO);
        match op {
            0 => {
                let size = any_size(&mut r);
                // SAFETY: any size is a valid argument.
                let p = unsafe { (l.malloc)(size) };
                s.took("malloc", p, size, 16);
            }
            1 => {
                let (n, m) = (any_size(&mut r), any_size(&mut r) % 64);
                let total = n.checked_mul(m).filter(|&t| t <= isize::MAX as usize);
                // SAFETY: any arguments are valid.
                let p = unsafe { (l.calloc)(n, m) };
                match total {
                    None => {
                        assert!(p.is_null(), "calloc({n:#x}, {m:#x}) overflowing succeeded");
                        assert_eq!(errno(), ENOMEM, "calloc overflow: errno {}", errno());
                    }
                    Some(t) => {
                        if !p.is_null() {
                            // SAFETY: a fresh block of `t` bytes.
                            unsafe { verify_block("calloc zero", p, t, 0) };
                        }
                        s.took("calloc", p, t, 16);
                    }
                }
            }
            2 | 3 => {
                let target = if r.u8() % 8 == 0 {
                    None
                } else {
                    s.pick(&mut r)
                };
                let (n, m) = if op == 3 {
                    (any_size(&mut r), any_size(&mut r) % 64)
                } else {
                    (any_size(&mut r), 1)
                };
                let size = n.checked_mul(m);
                let old = target.map_or(std::ptr::null_mut(), |b| b.p);
                // SAFETY: `old` is null or a live block of the library.
                let q = unsafe {
                    if op == 3 {
                        (l.reallocarray)(old, n, m)
                    } else {
                        (l.realloc)(old, n)
                    }
                };
                let name = if op == 3 { "reallocarray" } else { "realloc" };
                match (target, size) {
                    (Some(b), None) => {
                        assert!(
                            q.is_null() && errno() == ENOMEM,
                            "{name} overflow: {q:p}, errno {}",
                            errno()
                        );
                        // SAFETY: still live.
                        unsafe { verify_block("refused reallocarray", b.p, b.size, b.byte) };
                        s.live.push(b);
                    }
                    (Some(_), Some(0)) => {
                        assert!(q.is_null(), "{name}(p, 0) returned {q:p}, not NULL");
                        assert_eq!(errno(), SENTINEL_ERRNO, "{name}(p, 0) changed errno");
                    }
                    (Some(b), Some(size)) => {
                        if q.is_null() {
                            assert_eq!(
                                errno(),
                                ENOMEM,
                                "{name}({size:#x}) = NULL with errno {}",
                                errno()
                            );
                            assert!(size > (64 << 20), "{name}({size:#x}) failed");
                            // SAFETY: a failed realloc leaves the block live.
                            unsafe { verify_block("refused realloc", b.p, b.size, b.byte) };
                            s.live.push(b);
                        } else {
                            // The moved block keeps min(old, new) bytes: all
                            // of them filled if the old block was small, else
                            // its first 4096.
                            let kept = if b.size <= FILL_MAX {
                                b.size.min(size)
                            } else {
                                size.min(4096)
                            };
                            let what = format!(
                                "{name}({:p} of {} bytes, {size}) = {q:p}: kept contents",
                                b.p, b.size
                            );
                            // SAFETY: `q` is live with at least `kept` bytes.
                            unsafe { verify_block(&what, q, kept, b.byte) };
                            s.took(name, q, size, 16);
                        }
                    }
                    (None, None) => {
                        assert!(
                            q.is_null() && errno() == ENOMEM,
                            "{name}(NULL) overflow: {q:p}, errno {}",
                            errno()
                        );
                    }
                    (None, Some(size)) => s.took(name, q, size, 16),
                }
            }
            4 => {
                let (align, size) = (any_align(&mut r), any_size(&mut r));
                let mut out: *mut c_void = 0x5a5a as *mut c_void;
                // SAFETY: `out` is a valid place for a pointer.
                let rc = unsafe { (l.posix_memalign)(&mut out, align, size) };
                let want = if rc == ENOMEM { ENOMEM } else { SENTINEL_ERRNO };
                assert_eq!(errno(), want, "posix_memalign: rc {rc}, errno {}", errno());
                let valid = align.is_power_of_two() && align % 8 == 0;
                if !valid {
                    assert_eq!(rc, EINVAL, "posix_memalign(align {align:#x}) = {rc}");
                    assert_eq!(out as usize, 0x5a5a, "posix_memalign wrote *out on failure");
                } else if rc == 0 {
                    s.took("posix_memalign", out, size, align);
                } else {
                    assert_eq!(rc, ENOMEM, "posix_memalign({align:#x}, {size:#x}) = {rc}");
                    assert_eq!(out as usize, 0x5a5a, "posix_memalign wrote *out on failure");
                    assert!(
                        size > (64 << 20) || align > (64 << 20),
                        "posix_memalign({align:#x}, {size:#x}) failed"
                    );
                }
            }
            5 => {
                let (align, size) = (any_align(&mut r), any_size(&mut r));
                // SAFETY: any arguments are valid.
                let p = unsafe { (l.aligned_alloc)(align, size) };
                if !align.is_power_of_two() {
                    assert!(
                        p.is_null() && errno() == EINVAL,
                        "aligned_alloc(align {align:#x}): {p:p}, errno {}",
                        errno()
                    );
                } else {
                    s.took("aligned_alloc", p, size, align);
                }
            }
            6 => {
                let (align, size) = (any_align(&mut r), any_size(&mut r));
                // SAFETY: any arguments are valid.
                let p = unsafe { (l.memalign)(align, size) };
                match align.max(16).checked_next_power_of_two() {
                    None => assert!(
                        p.is_null() && errno() == EINVAL,
                        "memalign(align {align:#x}): {p:p}, errno {}",
                        errno()
                    ),
                    Some(a) => s.took("memalign", p, size, a),
                }
            }
            7 => {
                let size = any_size(&mut r);
                let ps = 4096;
                if r.u8() & 1 == 0 {
                    // SAFETY: any size is valid.
                    let p = unsafe { (l.valloc)(size) };
                    s.took("valloc", p, size, ps);
                } else {
                    // SAFETY: any size is valid.
                    let p = unsafe { (l.pvalloc)(size) };
                    match size.checked_add(ps - 1) {
                        None => assert!(
                            p.is_null() && errno() == ENOMEM,
                            "pvalloc({size:#x}) overflow: {p:p}"
                        ),
                        Some(t) => s.took("pvalloc", p, (t & !(ps - 1)).max(ps), ps),
                    }
                }
            }
            8..=10 => {
                if let Some(b) = s.pick(&mut r) {
                    s.release(b, op - 8);
                }
            }
            _ => {
                // SAFETY: NULL is valid.
                assert_eq!(unsafe { (l.usable)(std::ptr::null_mut()) }, 0);
                if let Some(b) = s.pick(&mut r) {
                    // SAFETY: a live block.
                    let us = unsafe { (l.usable)(b.p) };
                    assert!(us >= b.size, "malloc_usable_size {us} < {}", b.size);
                    s.live.push(b);
                }
            }
        }
    }
    for b in std::mem::take(&mut s.live) {
        ops += 1;
        s.release(b, 0);
    }
    fuzzkit::count_ops(ops);
});
