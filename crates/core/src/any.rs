//! Run-time choice of strategy: [`Strategy`] (a name) and [`AnyHeap`] (a
//! heap that holds whichever strategy was chosen, with no allocation).
//!
//! Adding a strategy: one line in `strategies!` below.

use core::fmt;
use core::ptr::NonNull;
use core::str::FromStr;

use crate::heap::{BlockInfo, CheckError, HeapError, RegionHeap};
use crate::region::{Region, RegionError};
use crate::stats::HeapStats;
use crate::strategies;

macro_rules! strategies {
    ($( $variant:ident : $ty:ty = $name:literal => $ctor:expr ; )*) => {
        /// A strategy, by the name the command line and `STRATALLOC_STRATEGY` use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Strategy {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Strategy {
            /// Every strategy, in the order the docs list them.
            pub const ALL: &'static [Strategy] = &[$(Strategy::$variant),*];

            /// The name as the command line spells it.
            pub const fn name(self) -> &'static str {
                match self { $(Strategy::$variant => $name,)* }
            }

            /// Parse a name from bytes (for code that cannot build a `&str`
            /// safely, such as an environment reader inside `malloc`).
            pub fn from_bytes(b: &[u8]) -> Result<Self, UnknownStrategy> {
                $( if b == $name.as_bytes() { return Ok(Strategy::$variant); } )*
                Err(UnknownStrategy)
            }
        }

        /// A heap of whichever strategy was chosen at run time.
        #[allow(clippy::large_enum_variant)]
        pub enum AnyHeap {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant($ty),
            )*
        }

        impl AnyHeap {
            /// An empty heap of strategy `s`.
            pub const fn new(s: Strategy) -> Self {
                match s { $(Strategy::$variant => AnyHeap::$variant($ctor),)* }
            }

            /// Which strategy this is.
            pub const fn strategy(&self) -> Strategy {
                match self { $(AnyHeap::$variant(_) => Strategy::$variant,)* }
            }

            /// The heap inside, as the contract.
            pub fn as_dyn(&self) -> &dyn RegionHeap {
                match self { $(AnyHeap::$variant(h) => h,)* }
            }

            /// The heap inside, as the contract, mutably.
            pub fn as_dyn_mut(&mut self) -> &mut dyn RegionHeap {
                match self { $(AnyHeap::$variant(h) => h,)* }
            }
        }
    };
}

strategies! {
    Bump: strategies::bump::Bump = "bump" => strategies::bump::Bump::new();
    FirstFit: strategies::fit_tree::IndexedFit = "first-fit" => strategies::fit_tree::IndexedFit::new(strategies::free_list::FitPolicy::First);
    NextFit: strategies::fit_tree::IndexedFit = "next-fit" => strategies::fit_tree::IndexedFit::new(strategies::free_list::FitPolicy::Next);
    BestFit: strategies::fit_tree::IndexedFit = "best-fit" => strategies::fit_tree::IndexedFit::new(strategies::free_list::FitPolicy::Best);
    WorstFit: strategies::fit_tree::IndexedFit = "worst-fit" => strategies::fit_tree::IndexedFit::new(strategies::free_list::FitPolicy::Worst);
    FirstFitScan: strategies::free_list::FreeList = "first-fit-scan" => strategies::free_list::FreeList::new(strategies::free_list::FitPolicy::First);
    NextFitScan: strategies::free_list::FreeList = "next-fit-scan" => strategies::free_list::FreeList::new(strategies::free_list::FitPolicy::Next);
    BestFitScan: strategies::free_list::FreeList = "best-fit-scan" => strategies::free_list::FreeList::new(strategies::free_list::FitPolicy::Best);
    WorstFitScan: strategies::free_list::FreeList = "worst-fit-scan" => strategies::free_list::FreeList::new(strategies::free_list::FitPolicy::Worst);
    Segregated: strategies::segregated::Segregated = "segregated" => strategies::segregated::Segregated::new();
    Tlsf: strategies::tlsf::Tlsf = "tlsf" => strategies::tlsf::Tlsf::new();
    Buddy: strategies::buddy::Buddy = "buddy" => strategies::buddy::Buddy::new();
    Slab: strategies::slab::Slab<strategies::tlsf::Tlsf> = "slab" => strategies::slab::Slab::new(strategies::tlsf::Tlsf::new());
}

/// The error for a name that is no strategy; its `Display` lists the valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownStrategy;

impl fmt::Display for UnknownStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown strategy; valid ones are:")?;
        for s in Strategy::ALL {
            write!(f, " {}", s.name())?;
        }
        Ok(())
    }
}

impl FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Dispatch through `as_dyn` / `as_dyn_mut`: one `match` to pick the
// variant, then one indirect call. A `match` per method with every arm
// inlined was measured and is slower (callgrind, region-bench tlsf replay
// of 300K ops: 44.8M instructions this way, 48.0M with per-method matches,
// which also bloated the directly-called TLSF path), so it stays this way.
// The hot methods (allocate, deallocate, reallocate) are `#[inline]`, so
// the match and the indirect call happen in the caller: one call level per
// operation instead of two (callgrind, same replay: 45.09M -> 44.42M
// instructions for tlsf, 54.15M -> 53.48M for segregated).
impl RegionHeap for AnyHeap {
    fn name(&self) -> &'static str {
        self.strategy().name()
    }
    unsafe fn add_region(&mut self, region: Region) -> Result<(), RegionError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.as_dyn_mut().add_region(region) }
    }
    #[inline]
    fn allocate(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.as_dyn_mut().allocate(size, align)
    }
    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>) -> Result<(), HeapError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.as_dyn_mut().deallocate(ptr) }
    }
    #[inline]
    unsafe fn deallocate_sized(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), HeapError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.as_dyn_mut().deallocate_sized(ptr, size) }
    }
    unsafe fn resize_in_place(&mut self, ptr: NonNull<u8>, new_size: usize) -> bool {
        // SAFETY: forwarded from the caller.
        unsafe { self.as_dyn_mut().resize_in_place(ptr, new_size) }
    }
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, HeapError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.as_dyn().usable_size(ptr) }
    }
    fn owns(&self, ptr: *const u8) -> bool {
        self.as_dyn().owns(ptr)
    }
    fn stats(&self) -> HeapStats {
        self.as_dyn().stats()
    }
    fn walk(&self, f: &mut dyn FnMut(BlockInfo)) {
        self.as_dyn().walk(f)
    }
    fn check(&self) -> Result<(), CheckError> {
        self.as_dyn().check()
    }
    #[inline]
    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from the caller.
        unsafe { self.as_dyn_mut().reallocate(ptr, new_size, align) }
    }
    #[inline]
    unsafe fn reallocate_sized(
        &mut self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from the caller.
        unsafe {
            self.as_dyn_mut()
                .reallocate_sized(ptr, old_size, new_size, align)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>(), Ok(*s));
            assert_eq!(AnyHeap::new(*s).strategy(), *s);
        }
        assert_eq!("nope".parse::<Strategy>(), Err(UnknownStrategy));
    }
}
