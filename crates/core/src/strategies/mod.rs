//! The strategies. Each module's documentation explains its algorithm, its
//! complexity and its drawbacks, with a diagram.

pub mod blocks;
pub mod buddy;
pub mod bump;
pub mod fit_tree;
pub mod free_list;
pub mod pool;
pub mod segregated;
pub mod slab;
pub mod tlsf;
