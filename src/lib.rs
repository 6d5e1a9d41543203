//! ringops: a GitOps reconciler for workflow fleets.
//!
//! Stages, in the order data flows:
//! - [`adapters`]: IO at the edges (Git, secrets, filesystem).
//! - [`model`]: the vocabulary (manifests, desired state, plans, diagnostics).
//! - [`pipeline`]: the pure compiler (load, catalog, expand, place, render, plan).
//! - [`report`]: pure rendering of plans and diagnostics (text, markdown, json).
//!
//! `model`, `pipeline` and `report` use no IO, clock or randomness.

pub mod adapters;
pub mod agent;
pub mod cli;
pub mod daemon;
pub mod engine;
pub mod fleetgen;
pub mod model;
pub mod pipeline;
pub mod report;
