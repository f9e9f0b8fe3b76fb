//! [`Trace`] for the standard types, and the two macros that write it for
//! yours: [`trace_fields!`](crate::trace_fields) and
//! [`no_trace!`](crate::no_trace).

use core::cell::{Cell, RefCell};

use crate::object::{Trace, Tracer};

/// `impl Trace` for types that hold no handles: tracing them does nothing.
///
/// ```
/// struct Pixel(u8, u8, u8);
/// stratalloc_gc::no_trace!(Pixel);
/// ```
#[macro_export]
macro_rules! no_trace {
    ($($ty:ty),* $(,)?) => {
        $( impl $crate::Trace for $ty {
            #[inline]
            fn trace(&self, _: &mut $crate::Tracer<'_>) {}
        } )*
    };
}

/// `impl Trace` for a struct (or tuple struct) by tracing the listed fields.
///
/// ```
/// use core::cell::Cell;
/// use stratalloc_gc::Gc;
/// struct Pair { left: Cell<Option<Gc<Pair>>>, right: Cell<Option<Gc<Pair>>>, n: u32 }
/// stratalloc_gc::trace_fields!(Pair { left, right });
/// ```
#[macro_export]
macro_rules! trace_fields {
    ($ty:ty { $($field:tt),* $(,)? }) => {
        impl $crate::Trace for $ty {
            #[inline]
            fn trace(&self, t: &mut $crate::Tracer<'_>) {
                $( $crate::Trace::trace(&self.$field, t); )*
            }
        }
    };
}

no_trace!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    &'static str
);

impl<T: Trace> Trace for Option<T> {
    fn trace(&self, t: &mut Tracer<'_>) {
        if let Some(x) = self {
            x.trace(t)
        }
    }
}

impl<T: Trace, const N: usize> Trace for [T; N] {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.iter().for_each(|x| x.trace(t))
    }
}

impl<T: Trace> Trace for [T] {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.iter().for_each(|x| x.trace(t))
    }
}

impl<T: Copy + Trace> Trace for Cell<T> {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.get().trace(t)
    }
}

/// # Panics
/// If the cell is mutably borrowed: a `RefMut` was held across a call that
/// collects, and the collector cannot see what it holds.
impl<T: Trace> Trace for RefCell<T> {
    fn trace(&self, t: &mut Tracer<'_>) {
        match self.try_borrow() {
            Ok(x) => x.trace(t),
            Err(_) => panic!(
                "stratalloc-gc: a RefCell inside a collected object was mutably \
                 borrowed during a collection (do not hold a RefMut across alloc/collect)"
            ),
        }
    }
}

macro_rules! tuples {
    ($( ($($n:tt $t:ident),+) )*) => {
        $( impl<$($t: Trace),+> Trace for ($($t,)+) {
            fn trace(&self, t: &mut Tracer<'_>) {
                $( self.$n.trace(t); )+
            }
        } )*
    };
}
tuples! {
    (0 A)
    (0 A, 1 B)
    (0 A, 1 B, 2 C)
    (0 A, 1 B, 2 C, 3 D)
}

#[cfg(feature = "alloc")]
mod with_alloc {
    use alloc::boxed::Box;
    use alloc::collections::{BTreeMap, VecDeque};
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::*;

    no_trace!(String);

    impl<T: Trace + ?Sized> Trace for Box<T> {
        fn trace(&self, t: &mut Tracer<'_>) {
            (**self).trace(t)
        }
    }
    impl<T: Trace> Trace for Vec<T> {
        fn trace(&self, t: &mut Tracer<'_>) {
            self.iter().for_each(|x| x.trace(t))
        }
    }
    impl<T: Trace> Trace for VecDeque<T> {
        fn trace(&self, t: &mut Tracer<'_>) {
            self.iter().for_each(|x| x.trace(t))
        }
    }
    impl<K: Trace, V: Trace> Trace for BTreeMap<K, V> {
        fn trace(&self, t: &mut Tracer<'_>) {
            for (k, v) in self {
                k.trace(t);
                v.trace(t);
            }
        }
    }
}
