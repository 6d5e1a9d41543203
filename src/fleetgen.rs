//! Synthetic fleets for benchmarks: generated manifests of a given size. Pure.
