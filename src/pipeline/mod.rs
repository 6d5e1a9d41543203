//! The pure compiler, one module per stage: load → catalog → expand → place → render → plan.
//!
//! Nothing here touches the filesystem, network, clock or environment.

pub mod catalog;
pub mod compile;
pub mod expand;
pub mod load;
pub mod place;
pub mod plan;
pub mod render;

pub use compile::{Compiled, Rings, compile};
pub use render::{NoSecrets, SecretSource};
