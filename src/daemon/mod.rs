//! `ringops daemon`: follow the repository, deploy the rings that auto-deploy on every
//! new commit, keep every ring's workers on their Active deployment, and serve the
//! HTTP API (health, metrics, read-only state, the Git webhook).

pub mod gates;
pub mod http;
pub mod metrics;
mod passes;
pub mod queue;
pub mod reconcile;
pub mod run;
pub mod triggers;
pub mod watch;
pub mod webhook;
