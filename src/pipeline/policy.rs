//! Policy stage: what each ring of a bundle asks of the daemon (deploy every commit of
//! the tracked branch? revert drift or only report it?), read even from a bundle with
//! errors elsewhere, so a broken commit is still recorded against the right rings.

use super::load::load;
use crate::model::manifest::{DriftMode, Resource, RingSpec};
use crate::model::{Bundle, Diagnostics};
use std::collections::BTreeMap;

/// What one ring asks of the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingPolicy {
    /// Deploy every new commit of the tracked branch.
    pub auto_deploy: bool,
    /// Revert drift, or only record it.
    pub drift: DriftMode,
    /// The branch the ring tracks, if it says.
    pub track: Option<String>,
    /// Nothing is deployed to the ring.
    pub freeze: bool,
}

/// The policy of every ring whose document parses, by ring name (the first document of
/// a name wins, as in the catalog).
pub fn ring_policies(bundle: &Bundle) -> BTreeMap<String, RingPolicy> {
    let loaded = load_rings(bundle);
    let mut out = BTreeMap::new();
    for doc in &loaded.documents {
        if let Resource::Ring(spec) = &doc.resource {
            let policy = RingPolicy {
                auto_deploy: spec.auto_deploy,
                drift: spec.drift,
                track: spec.track.as_ref().map(|t| t.branch.value.clone()),
                freeze: spec.freeze,
            };
            out.entry(doc.name().to_owned()).or_insert(policy);
        }
    }
    out
}

/// The spec of ring `name` as `bundle` defines it (the first document of that name),
/// read even when other files of the bundle are broken.
pub fn ring_spec(bundle: &Bundle, name: &str) -> Option<RingSpec> {
    let loaded = load_rings(bundle);
    loaded.documents.iter().find_map(|doc| match &doc.resource {
        Resource::Ring(spec) if doc.name() == name => Some((**spec).clone()),
        _ => None,
    })
}

/// The documents of the files that can hold a `Ring` (those that say `Ring` at all):
/// the rest of a large fleet is not parsed just to read its rings.
fn load_rings(bundle: &Bundle) -> super::load::Loaded {
    let files = bundle
        .files
        .iter()
        .filter(|(_, bytes)| bytes.windows(4).any(|w| w == b"Ring"))
        .map(|(path, bytes)| (path.clone(), bytes.clone()))
        .collect();
    let rings = Bundle {
        commit: bundle.commit.clone(),
        tree: bundle.tree.clone(),
        root: bundle.root.clone(),
        files,
    };
    let mut diags = Diagnostics::default();
    load(&rings, &mut diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_read_even_when_another_file_is_broken() {
        let mut bundle = Bundle::default();
        bundle.files.insert(
            "rings.yaml".into(),
            b"apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: dev}\nspec: {autoDeploy: true, track: {branch: main}}\n---\napiVersion: ringops/v1\nkind: Ring\nmetadata: {name: prod}\nspec: {drift: report, promotesFrom: dev}\n".to_vec(),
        );
        bundle
            .files
            .insert("broken.yaml".into(), b"kind: [unclosed\n".to_vec());
        let policies = ring_policies(&bundle);
        assert_eq!(
            policies["dev"],
            RingPolicy {
                auto_deploy: true,
                drift: DriftMode::Revert,
                track: Some("main".into()),
                freeze: false,
            }
        );
        assert_eq!(policies["prod"].drift, DriftMode::Report);
        assert!(!policies["prod"].auto_deploy);
    }
}
