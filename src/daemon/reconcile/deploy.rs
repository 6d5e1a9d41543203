//! The deploy pass: the tracked branch's head compiled for every auto-deploy ring and
//! deployed where its gates let it (a ring behind a promotion's gates is left to
//! `promote`), then the queued promotions whose gates opened moved on.

use super::{PassError, PassReport, Paths, Reconciler, lock};
use crate::adapters::git::Source;
use crate::adapters::secrets::HostSecrets;
use crate::adapters::store::{Store, StoreReader};
use crate::engine::deploy::{Rollout, deploy};
use crate::engine::gates::Trust;
use crate::engine::{self, EngineError};
use crate::model::deployment::{Deployment, DeploymentState, NO_CHANGES, NewDeployment};
use crate::model::{Bundle, DesiredState};
use crate::pipeline::plan::PlanInput;
use crate::pipeline::policy::ring_policies;
use crate::pipeline::rollout::Gates;
use std::path::Path;

impl Reconciler {
    /// Deploys the tracked branch's head to every auto-deploy ring when it is new
    /// (or `force`). A commit that does not compile is recorded as a Failed deployment
    /// with its errors and touches no worker.
    pub async fn deploy(
        &mut self,
        paths: &Paths,
        secrets: &HostSecrets,
        force: bool,
    ) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let source = Source::open(&paths.repo.open_path(&paths.state_dir))?;
        let commit = source.resolve(paths.rev())?;
        report.commit = Some(commit.clone());
        if !force
            && self.last_commit.as_deref() == Some(commit.as_str())
            && self.settled(&paths.state_dir, &commit)
            && !queued_behind_gates(&paths.state_dir)
        {
            return Ok(report);
        }
        let Some(_lock) = lock(&paths.state_dir, "ringops daemon: deploy")? else {
            report.busy = true;
            return Ok(report);
        };
        let mut store = Store::open(&paths.state_dir)?;
        for d in store.mark_interrupted()? {
            tracing::warn!(deployment = %d.id, ring = %d.ring, "marked an interrupted deployment Failed");
        }
        let bundle = source.bundle_at(&commit, &paths.path)?;
        let policies = ring_policies(&bundle);
        if !policies.is_empty() {
            self.policies = policies;
        }
        let pass = Pass {
            ctx: self.engine(&paths.state_dir),
            trust: Trust {
                source: &source,
                path: &paths.path,
                rev: paths.rev(),
                head: &bundle,
            },
            secrets,
        };
        for ring in self.auto_deploy_rings() {
            self.deploy_head(&pass, &mut store, &ring, force, &mut report)
                .await?;
        }
        for moved in crate::daemon::gates::pass(&pass.ctx, &mut store, &pass.trust, secrets).await?
        {
            report.deployments.push((moved, String::new()));
        }
        self.last_commit = Some(commit);
        Ok(report)
    }

    fn auto_deploy_rings(&self) -> Vec<String> {
        self.policies
            .iter()
            .filter(|(_, p)| p.auto_deploy)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Deploys the head to `ring` unless a pin, an earlier attempt, its gates or a
    /// rollout under way keep it from doing so now.
    async fn deploy_head(
        &mut self,
        pass: &Pass<'_>,
        store: &mut Store,
        ring: &str,
        force: bool,
        report: &mut PassReport,
    ) -> Result<(), PassError> {
        let commit = pass.trust.head.commit.clone().unwrap_or_default();
        if let Some(pin) = store.pin(ring)? {
            if pin.commit == commit {
                report.pinned.push(ring.to_owned());
                return Ok(());
            }
            store.unpin(ring)?;
            tracing::info!(
                ring,
                "the tracked branch moved past the pinned commit; pin lifted"
            );
        }
        if !force && at_commit(store, ring, &commit)? && !self.retry_due(ring, &commit) {
            return Ok(());
        }
        let gates = gates_in_force(store, &pass.trust, ring)?;
        if let Some(why) = held(store, ring, gates.as_ref())? {
            tracing::info!(ring, "not deploying: {why}");
            return Ok(());
        }
        match deploy_ring(pass, store, ring, gates.as_ref()).await? {
            Some(d) => {
                self.note_outcome(ring, &commit, d.retryable);
                report.deployments.push((d.deployment, d.plan));
            }
            None => self.note_outcome(ring, &commit, false),
        }
        Ok(())
    }

    /// Whether every auto-deploy ring already has `commit` Active, is pinned at it, or
    /// failed on it: then an unforced pass has nothing to do. Read without the lock.
    fn settled(&self, state_dir: &Path, commit: &str) -> bool {
        let Ok(reader) = StoreReader::open(state_dir) else {
            return false;
        };
        self.auto_deploy_rings().iter().all(|ring| {
            let pinned = reader
                .pin(ring)
                .ok()
                .flatten()
                .is_some_and(|p| p.commit == commit);
            let done = reader
                .active(ring)
                .ok()
                .flatten()
                .is_some_and(|a| a.commit == commit);
            let failed = reader
                .latest_of_commit(ring, commit)
                .ok()
                .flatten()
                .is_some_and(|d| handled(d.state));
            pinned || done || (failed && !self.retry_due(ring, commit))
        })
    }
}

/// What every ring of a deploy pass shares.
pub(crate) struct Pass<'a> {
    pub(crate) ctx: engine::Context,
    pub(crate) trust: Trust<'a>,
    pub(crate) secrets: &'a HostSecrets,
}

/// The gates in force for `ring` ([`engine::gates::effective`]); `None` when it has no
/// trusted definition or its gates cannot be used (logged).
pub(crate) fn gates_in_force(
    store: &Store,
    trust: &Trust<'_>,
    ring: &str,
) -> Result<Option<Gates>, PassError> {
    match engine::gates::effective(store, trust, ring, None) {
        Ok(gates) => Ok(Some(gates)),
        Err(EngineError::Untrusted { .. }) => Ok(None),
        Err(e @ EngineError::Gates { .. }) => {
            tracing::error!(ring, "{}", crate::adapters::causes(&e));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `ring` already runs `commit`, or failed on it (retried only by a forced
/// pass: a restart or SIGHUP).
fn at_commit(store: &Store, ring: &str, commit: &str) -> Result<bool, PassError> {
    if store.active(ring)?.is_some_and(|a| a.commit == commit) {
        return Ok(true);
    }
    let latest = store.latest_of_commit(ring, commit)?;
    Ok(latest.is_some_and(|d| handled(d.state)))
}

/// A deployment of a commit in this state settles that commit for an unforced pass: it
/// failed or was reverted (retried only with backoff), or it is still under way.
fn handled(state: DeploymentState) -> bool {
    matches!(state, DeploymentState::Failed | DeploymentState::RolledBack)
        || state == DeploymentState::Queued
        || state.is_in_progress()
}

/// Why the daemon must not deploy `ring` now, if it must not: its gates do not
/// auto-deploy or hold it behind a promotion's gates, a person paused it, or a rollout
/// of it is under way (a paused canary, a queued promotion).
fn held(store: &Store, ring: &str, gates: Option<&Gates>) -> Result<Option<String>, PassError> {
    if let Some(gates) = gates {
        if let Some(from) = &gates.promotes_from {
            return Ok(Some(format!(
                "it receives only what ring `{from}` ran; `ringops promote {ring}`"
            )));
        }
        if !gates.auto_deploy {
            return Ok(Some(
                "its trusted definition does not auto-deploy".to_owned(),
            ));
        }
        let gated = gates.promotion_only();
        if !gated.is_empty() {
            return Ok(Some(format!(
                "it is gated ({}); promote it",
                gated.join(", ")
            )));
        }
    }
    if let Some(pause) = store.ring_pause(ring)? {
        return Ok(Some(format!("it is paused ({})", pause.reason)));
    }
    if let Some(d) = store.unfinished(ring)? {
        return Ok(Some(format!("{} is under way ({})", d.id, d.state)));
    }
    Ok(None)
}

/// Whether a ring's newest deployment is Queued behind its gates (approvals, a window,
/// a freeze): then a deploy pass looks at it even when the branch did not move.
fn queued_behind_gates(state_dir: &Path) -> bool {
    let Ok(reader) = StoreReader::open(state_dir) else {
        return false;
    };
    reader.rings().unwrap_or_default().iter().any(|ring| {
        let unfinished = reader.unfinished(ring).ok().flatten();
        unfinished.is_some_and(|d| {
            d.state == DeploymentState::Queued
                && reader
                    .rollout(d.id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.waiting.is_some())
        })
    })
}

/// A deployment a pass recorded.
struct Deployed {
    deployment: Deployment,
    /// The plan shown before it.
    plan: String,
    /// It failed on a worker (not in the build), so trying again may succeed.
    retryable: bool,
}

/// Compiles and deploys the head to one ring; nothing when its Active deployment
/// already is this desired state, a Failed record when the commit does not compile
/// (once per commit).
async fn deploy_ring(
    pass: &Pass<'_>,
    store: &mut Store,
    ring: &str,
    gates: Option<&Gates>,
) -> Result<Option<Deployed>, PassError> {
    let bundle = pass.trust.head;
    let new = new_deployment(bundle, ring);
    let desired = match compile(pass, store, &new, ring)? {
        Ok(desired) => desired,
        Err(failed) => return Ok(failed),
    };
    let fingerprint = desired.fingerprint();
    let active = store.active(ring)?;
    if active.as_ref().is_some_and(|a| a.commit == new.commit) {
        return Ok(None);
    }
    let plan = plan_against_workers(pass, &desired).await;
    let unchanged = engine::deploy::changes_nothing(active.as_ref(), &fingerprint, &plan);
    let ungated = Gates::ungated();
    let rollout = Rollout::for_ring(&pass.ctx, &desired, gates.unwrap_or(&ungated), true)?;
    let mut d = store.create_deployment(&NewDeployment { fingerprint, ..new })?;
    let plan = match unchanged {
        true => {
            d = store.mark_unchanged(d.id, NO_CHANGES)?;
            String::new()
        }
        false => crate::report::text::render(&plan, false),
    };
    let deployed = deploy(&pass.ctx, store, &d, &rollout).await?;
    let deployment = deployed.end.deployment().clone();
    let retryable = matches!(
        deployment.state,
        DeploymentState::Failed | DeploymentState::RolledBack
    );
    Ok(Some(Deployed {
        deployment,
        plan,
        retryable,
    }))
}

/// The deployment of the head to `ring` the daemon records.
fn new_deployment(bundle: &Bundle, ring: &str) -> NewDeployment {
    let commit = bundle.commit.clone().unwrap_or_default();
    NewDeployment {
        ring: ring.to_owned(),
        reason: format!(
            "new commit on the tracked branch: {}",
            crate::report::short(&commit)
        ),
        commit,
        tree: bundle.tree.clone().unwrap_or_default(),
        fingerprint: String::new(),
        actor: "daemon".to_owned(),
        rollback_of: None,
    }
}

/// The ring's desired state at the head; otherwise what the pass records instead:
/// nothing (the ring has no workers, or its failed build is already recorded) or a
/// Failed deployment holding the manifests' errors.
fn compile(
    pass: &Pass<'_>,
    store: &mut Store,
    new: &NewDeployment,
    ring: &str,
) -> Result<Result<DesiredState, Option<Deployed>>, PassError> {
    let compiled = tokio::task::block_in_place(|| {
        engine::compile::compile_ring(&pass.ctx.state_dir, pass.trust.head, pass.secrets, ring)
    });
    let diags = match compiled.map(|mut c| c.states.remove(ring)) {
        Ok(Some(desired)) => return Ok(Ok(desired)),
        Ok(None) => return Ok(Err(None)),
        Err(diags) => diags,
    };
    if store.latest_of_commit(ring, &new.commit)?.is_some() {
        return Ok(Err(None));
    }
    let errors = crate::report::diagnostics(&diags);
    let message = format!("the commit does not compile:\n{}", errors.trim_end());
    let failed = store.record_failed_build(new, &message)?;
    tracing::error!(ring, deployment = %failed.id, commit = new.commit, "{message}");
    Ok(Err(Some(Deployed {
        deployment: failed,
        plan: String::new(),
        retryable: false,
    })))
}

/// The plan against the ring's workers.
async fn plan_against_workers(pass: &Pass<'_>, desired: &DesiredState) -> crate::model::Plan {
    let input = PlanInput {
        path: pass.trust.head.root.clone(),
        base: None,
        head: crate::model::plan::Revision {
            rev: pass.trust.rev.to_owned(),
            commit: pass.trust.head.commit.clone(),
        },
        changed_files: Default::default(),
    };
    engine::plan_ring(&pass.ctx, desired, input).await.0
}
