//! The pure compiler, one module per stage: load → catalog → expand → place → render → plan.
//!
//! Nothing here touches the filesystem, network, clock or environment.

pub mod catalog;
pub mod channels;
pub mod checks;
pub mod compile;
pub mod crossing;
pub mod drift;
pub mod expand;
pub mod incremental;
pub mod load;
pub mod module;
pub mod params;
pub mod place;
pub mod plan;
pub mod policy;
pub mod render;
pub mod rollout;
pub mod template;

pub use compile::{Compiled, Inventory, Rings, compile, compile_with_inventory};
pub use params::{NoSecrets, SecretSource};
