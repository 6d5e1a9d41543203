//! Placeholder: the apply benchmark lands with the performance work.
fn main() {}
