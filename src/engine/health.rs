//! A ring's `health:` as a rollout's health gate: each batch's workers probed with
//! [`HealthChecker`] until healthy for `minHealthy`, or not by `healthyDeadline`.

use crate::adapters::health::{HealthCheck, HealthChecker, Probe, Worker, all_healthy};
use crate::adapters::link::WorkerLink;
use crate::model::DesiredState;
use crate::pipeline::rollout::Gates;
use std::collections::BTreeMap;
use std::path::Path;

/// A ring's health check, ready for its workers.
#[derive(Clone, Debug)]
pub struct RingHealth {
    checker: Result<Option<HealthChecker>, String>,
    workers: BTreeMap<String, Worker>,
}

impl RingHealth {
    /// No check: every batch is healthy once switched.
    pub fn none() -> Self {
        RingHealth {
            checker: Ok(None),
            workers: BTreeMap::new(),
        }
    }

    /// The check `gates` carry, for the workers of `desired` (local ones under
    /// `state_dir`).
    pub fn new(state_dir: &Path, gates: &Gates, desired: &DesiredState) -> Self {
        let ring = &desired.ring;
        let checker = match &gates.probe {
            None => Ok(None),
            Some(health) => match Probe::from_manifest(health) {
                Ok(None) => Ok(None),
                Ok(Some(probe)) => HealthChecker::new(HealthCheck {
                    probe,
                    timeout: gates.health.timeout,
                    min_healthy: gates.health.min_healthy,
                    healthy_deadline: gates.health.healthy_deadline,
                })
                .map(Some)
                .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        let workers = desired
            .workers
            .iter()
            .map(|(name, state)| {
                let dir = match crate::engine::link(state_dir, name, state) {
                    WorkerLink::Local(dir) => Some(dir.root().to_owned()),
                    WorkerLink::Http(_) => None,
                };
                let worker = Worker {
                    name: name.clone(),
                    address: state.address.clone(),
                    labels: BTreeMap::new(),
                    group: state.group.clone(),
                    ring: ring.to_owned(),
                    dir,
                };
                (name.clone(), worker)
            })
            .collect();
        RingHealth { checker, workers }
    }
}

impl RingHealth {
    /// `Ok` when every worker of `workers` is healthy, else why not (naming them).
    pub async fn check(&self, workers: &[String]) -> Result<(), String> {
        let checker = match &self.checker {
            Ok(None) => return Ok(()),
            Ok(Some(c)) => c,
            Err(e) => return Err(e.clone()),
        };
        let batch: Vec<Worker> = workers
            .iter()
            .filter_map(|w| self.workers.get(w).cloned())
            .collect();
        let verdicts = checker.check_all(&batch).await.map_err(|e| e.to_string())?;
        all_healthy(&verdicts)
    }
}
