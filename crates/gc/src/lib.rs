//! Mark-and-sweep GC.
