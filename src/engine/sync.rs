//! Whether a worker still holds what a deployment recorded: the comparison `status`,
//! `drift` and the daemon's drift watch share.

use crate::adapters::worker_dir::{Inventory, OnDisk};
use crate::model::deployment::WrittenArtifact;
use crate::model::observed::{Difference, DriftedFile, WorkerSync};
use std::collections::BTreeSet;

/// Compares the artifacts a deployment recorded with what a worker holds: every recorded
/// file must be on disk with its sha256 and mode, and no other file may be managed.
pub fn compare(recorded: &[WrittenArtifact], inventory: &Inventory) -> WorkerSync {
    let unmanaged: BTreeSet<&str> = inventory.unmanaged.iter().map(String::as_str).collect();
    let mut files = Vec::new();
    for artifact in recorded {
        let how = match inventory.managed.get(&artifact.path).map(|e| &e.on_disk) {
            Some(OnDisk::File { sha256, mode })
                if *sha256 == artifact.sha256 && *mode == artifact.mode =>
            {
                continue;
            }
            Some(OnDisk::File { .. }) => Difference::Edited,
            Some(OnDisk::Missing) => Difference::Missing,
            Some(OnDisk::NotAFile { what }) => Difference::Replaced {
                what: (*what).to_owned(),
            },
            None if unmanaged.contains(artifact.path.as_str()) => Difference::Unmanaged,
            None => Difference::Missing,
        };
        files.push(DriftedFile {
            path: artifact.path.clone(),
            how,
        });
    }
    let paths: BTreeSet<&str> = recorded.iter().map(|a| a.path.as_str()).collect();
    for path in inventory.managed.keys() {
        if !paths.contains(path.as_str()) {
            files.push(DriftedFile {
                path: path.clone(),
                how: Difference::Extra,
            });
        }
    }
    if files.is_empty() {
        WorkerSync::InSync {
            files: recorded.len(),
        }
    } else {
        files.sort();
        WorkerSync::Drifted {
            files: recorded.len(),
            drifted: files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::worker_dir::{ManagedEntry, ManagedFile};
    use crate::model::deployment::DriftKind;
    use std::collections::BTreeMap;

    fn artifact(path: &str, sha256: &str) -> WrittenArtifact {
        WrittenArtifact {
            path: path.to_owned(),
            sha256: sha256.to_owned(),
            mode: 0o644,
        }
    }

    fn entry(sha256: &str, on_disk: OnDisk) -> ManagedEntry {
        ManagedEntry {
            record: ManagedFile {
                sha256: sha256.to_owned(),
                mode: 0o644,
                deployment: "d-000001".to_owned(),
            },
            on_disk,
        }
    }

    fn file(sha256: &str, mode: u32) -> OnDisk {
        OnDisk::File {
            sha256: sha256.to_owned(),
            mode,
        }
    }

    #[test]
    fn every_difference_is_drift() {
        let recorded = [
            artifact("a/j/ok", "1"),
            artifact("a/j/edited", "2"),
            artifact("a/j/chmod", "3"),
            artifact("a/j/gone", "4"),
            artifact("a/j/dir", "5"),
            artifact("a/j/hand", "6"),
            artifact("a/j/unknown", "7"),
        ];
        let inventory = Inventory {
            managed: BTreeMap::from([
                ("a/j/ok".to_owned(), entry("1", file("1", 0o644))),
                ("a/j/edited".to_owned(), entry("2", file("x", 0o644))),
                ("a/j/chmod".to_owned(), entry("3", file("3", 0o600))),
                ("a/j/gone".to_owned(), entry("4", OnDisk::Missing)),
                (
                    "a/j/dir".to_owned(),
                    entry("5", OnDisk::NotAFile { what: "a folder" }),
                ),
                ("a/j/later".to_owned(), entry("8", file("8", 0o644))),
            ]),
            unmanaged: vec!["a/j/hand".to_owned()],
            ..Inventory::default()
        };
        let WorkerSync::Drifted { files, drifted } = compare(&recorded, &inventory) else {
            panic!("expected drift");
        };
        assert_eq!(files, recorded.len());
        let got: Vec<(&str, String)> = drifted
            .iter()
            .map(|f| (f.path.as_str(), f.how.to_string()))
            .collect();
        let want = [
            ("a/j/chmod", "edited"),
            ("a/j/dir", "replaced by a folder"),
            ("a/j/edited", "edited"),
            ("a/j/gone", "missing"),
            ("a/j/hand", "unmanaged"),
            ("a/j/later", "extra"),
            ("a/j/unknown", "missing"),
        ];
        let want: Vec<(&str, String)> = want.iter().map(|(p, h)| (*p, (*h).to_owned())).collect();
        assert_eq!(got, want);
        let kinds: Vec<DriftKind> = drifted.iter().map(|f| f.how.kind()).collect();
        let (e, m, x) = (DriftKind::Edited, DriftKind::Missing, DriftKind::Extra);
        assert_eq!(kinds, [e, e, e, m, e, x, m]);
    }

    #[test]
    fn intact_files_are_in_sync() {
        let recorded = [artifact("a/j/ok", "1")];
        let inventory = Inventory {
            managed: BTreeMap::from([("a/j/ok".to_owned(), entry("1", file("1", 0o644)))]),
            unmanaged: vec!["a/j/mine".to_owned()],
            ..Inventory::default()
        };
        assert_eq!(
            compare(&recorded, &inventory),
            WorkerSync::InSync { files: 1 }
        );
    }
}
