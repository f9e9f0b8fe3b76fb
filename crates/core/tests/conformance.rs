//! Every strategy against the same contract, and every boundary-tag
//! strategy in both profiles (`checked = false`: the trusting profile,
//! which is not handed bad pointers). Adding a strategy: one line at the
//! bottom.

mod common;

macro_rules! conformance {
    ($name:ident, $ctor:expr, restores = $restores:expr) => {
        conformance!($name, $ctor, restores = $restores, checked = true);
    };
    ($name:ident, $ctor:expr, restores = $restores:expr, checked = $checked:expr) => {
        mod $name {
            use super::common;
            use proptest::prelude::*;

            fn make() -> impl stratalloc_core::RegionHeap {
                $ctor
            }

            #[test]
            fn basic() {
                common::basic(make);
            }
            #[test]
            fn alignments() {
                common::alignments(make);
            }
            #[test]
            fn zero_size_unique() {
                common::zero_size_unique(make);
            }
            #[test]
            fn bad_requests() {
                common::bad_requests(make);
            }
            #[test]
            fn bad_frees() {
                if $checked {
                    common::bad_frees(make);
                }
            }
            #[test]
            fn bad_regions() {
                common::bad_regions(make);
            }
            #[test]
            fn multi_region_exhaustion() {
                common::multi_region_exhaustion(make, $restores);
            }
            #[test]
            fn resize() {
                common::resize(make);
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 96 }))]
                #[test]
                fn model(program in common::ops()) {
                    common::model(make, &program, $restores);
                }
            }
        }
    };
}

use stratalloc_core::strategies as s;
use stratalloc_core::{AnyHeap, Strategy as Pick};

conformance!(bump, crate::s::bump::Bump::new(), restores = true);
conformance!(
    any_bump,
    crate::AnyHeap::new(crate::Pick::Bump),
    restores = true
);
conformance!(
    first_fit,
    crate::s::fit_tree::IndexedFit::new(crate::s::free_list::FitPolicy::First),
    restores = true
);
conformance!(
    first_fit_scan,
    crate::s::free_list::FreeList::new(crate::s::free_list::FitPolicy::First),
    restores = true
);
conformance!(
    next_fit,
    crate::s::fit_tree::IndexedFit::new(crate::s::free_list::FitPolicy::Next),
    restores = true
);
conformance!(
    next_fit_scan,
    crate::s::free_list::FreeList::new(crate::s::free_list::FitPolicy::Next),
    restores = true
);
conformance!(
    best_fit,
    crate::s::fit_tree::IndexedFit::new(crate::s::free_list::FitPolicy::Best),
    restores = true
);
conformance!(
    best_fit_scan,
    crate::s::free_list::FreeList::new(crate::s::free_list::FitPolicy::Best),
    restores = true
);
conformance!(
    worst_fit,
    crate::s::fit_tree::IndexedFit::new(crate::s::free_list::FitPolicy::Worst),
    restores = true
);
conformance!(
    worst_fit_scan,
    crate::s::free_list::FreeList::new(crate::s::free_list::FitPolicy::Worst),
    restores = true
);
conformance!(
    segregated,
    crate::s::segregated::Segregated::new(),
    restores = true
);
conformance!(tlsf, crate::s::tlsf::Tlsf::new(), restores = true);
conformance!(
    any_tlsf,
    crate::AnyHeap::new(crate::Pick::Tlsf),
    restores = true
);
conformance!(buddy, crate::s::buddy::Buddy::new(), restores = true);
conformance!(
    any_buddy,
    crate::AnyHeap::new(crate::Pick::Buddy),
    restores = true
);
conformance!(
    slab,
    crate::s::slab::Slab::new(crate::s::tlsf::Tlsf::new()),
    restores = true
);
conformance!(
    slab_over_buddy,
    crate::s::slab::Slab::new(crate::s::buddy::Buddy::new()),
    restores = true
);

// The trusting profile of every boundary-tag strategy.
macro_rules! trusting {
    ($name:ident, $ctor:expr) => {
        conformance!($name, $ctor, restores = true, checked = false);
    };
}
use crate::s::fit_tree::IndexedFit;
use crate::s::free_list::{FitPolicy, FreeList};

trusting!(
    first_fit_trusting,
    crate::IndexedFit::trusting(crate::FitPolicy::First)
);
trusting!(
    next_fit_trusting,
    crate::IndexedFit::trusting(crate::FitPolicy::Next)
);
trusting!(
    best_fit_trusting,
    crate::IndexedFit::trusting(crate::FitPolicy::Best)
);
trusting!(
    worst_fit_trusting,
    crate::IndexedFit::trusting(crate::FitPolicy::Worst)
);
trusting!(
    first_fit_scan_trusting,
    crate::FreeList::trusting(crate::FitPolicy::First)
);
trusting!(
    next_fit_scan_trusting,
    crate::FreeList::trusting(crate::FitPolicy::Next)
);
trusting!(
    best_fit_scan_trusting,
    crate::FreeList::trusting(crate::FitPolicy::Best)
);
trusting!(
    worst_fit_scan_trusting,
    crate::FreeList::trusting(crate::FitPolicy::Worst)
);
trusting!(
    segregated_trusting,
    crate::s::segregated::Segregated::trusting()
);
trusting!(tlsf_trusting, crate::s::tlsf::Tlsf::trusting());
