//! The stratalloc engine and process allocators (std).
