//! Wrappers: allocators over allocators (stats, check, leaks, trace), stacked
//! at start-up over whichever backend the options chose.

use crate::backend::Backend;
use crate::options::Options;

/// Stack the wrappers `opts` asks for over `base` and return the top of the
/// stack. Called once at start-up; must not allocate from the Rust heap.
pub fn wrap(base: &'static dyn Backend, opts: &Options) -> &'static dyn Backend {
    let _ = opts;
    base
}
