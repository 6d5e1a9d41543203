//! Observing workers with inventories read ahead: one is used only when it was read
//! where the desired state places the worker.

use super::*;
use crate::adapters::worker_dir::WorkerDir;
use crate::adapters::worker_dir::{Batch, FileSpec};
use crate::engine::targets::ARTIFACT_MODE;
use crate::model::Artifact;
use std::path::Path;

fn desired(target: &Path) -> DesiredState {
    let mut state = WorkerState {
        target: format!("dir:{}", target.display()).parse().ok(),
        ..WorkerState::default()
    };
    let artifact = Artifact::new("n=1\n".to_owned(), Vec::new(), Vec::new());
    state.artifacts.insert("wf/job/a.conf".to_owned(), artifact);
    DesiredState {
        ring: "dev".to_owned(),
        workers: BTreeMap::from([("w1".to_owned(), state)]),
    }
}

#[tokio::test]
async fn an_inventory_read_ahead_is_used_only_at_the_worker_s_location() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (here, there) = (tmp.path().join("here"), tmp.path().join("there"));
    let batch = Batch {
        deployment: "d-1".to_owned(),
        expected_generation: None,
        files: BTreeMap::from([(
            "wf/job/a.conf".to_owned(),
            FileSpec::new(b"n=1\n".to_vec(), ARTIFACT_MODE),
        )]),
    };
    WorkerDir::new(&here).apply(&batch).expect("apply");
    let desired = desired(&here);
    let empty = || Inventory::default();

    // Read at another location (the worker moved): read again, and the file is there.
    let elsewhere = format!("dir:{}", there.display());
    let ahead = ReadAhead(BTreeMap::from([("w1".to_owned(), (elsewhere, empty()))]));
    let observed = observe_with(&Context::new(tmp.path()), &desired, ahead).await;
    assert_eq!(
        observed.workers["w1"].managed.keys().collect::<Vec<_>>(),
        ["wf/job/a.conf"]
    );

    // Read at its location: taken as read (here, a stand-in that saw nothing).
    let at = format!("dir:{}", here.display());
    let ahead = ReadAhead(BTreeMap::from([("w1".to_owned(), (at, empty()))]));
    let observed = observe_with(&Context::new(tmp.path()), &desired, ahead).await;
    assert!(observed.workers["w1"].managed.is_empty());
    assert_eq!(observed.digests["w1"], inventory_digest(&empty()));
}
