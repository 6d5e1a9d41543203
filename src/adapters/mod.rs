//! IO at the edges, one external concern per file: Git sources, host secrets,
//! rendered output on disk, and health checks and notifications over HTTP.

pub mod git;
pub mod health;
pub mod hooks;
pub mod lock;
pub mod notify;
pub mod objects;
pub mod render_dir;
pub mod secrets;
pub mod store;
pub mod transport;
pub mod worker_dir;
