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

/// Every ring `bundle` defines, in promotion order: each after the ring it promotes
/// from, otherwise as the files define them (a cycle, an error the compiler reports,
/// leaves its rings in file order at the end).
pub fn ring_order(bundle: &Bundle) -> Vec<String> {
    let loaded = load_rings(bundle);
    let mut left: Vec<(String, Option<String>)> = Vec::new();
    for doc in &loaded.documents {
        if let Resource::Ring(spec) = &doc.resource
            && !left.iter().any(|(name, _)| name == doc.name())
        {
            let from = spec.promotes_from.as_ref().map(|f| f.value.clone());
            left.push((doc.name().to_owned(), from));
        }
    }
    let mut order: Vec<String> = Vec::with_capacity(left.len());
    loop {
        let defined = |ring: &str| left.iter().any(|(name, _)| name == ring);
        let ready = left.iter().position(|(_, from)| {
            from.as_deref()
                .is_none_or(|f| order.iter().any(|o| o == f) || !defined(f))
        });
        match ready {
            Some(i) => order.push(left.remove(i).0),
            None => break,
        }
    }
    order.extend(left.into_iter().map(|(name, _)| name));
    order
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

    fn ring(name: &str, from: Option<&str>) -> String {
        let spec = from.map_or_else(|| "{}".to_owned(), |f| format!("{{promotesFrom: {f}}}"));
        format!(
            "apiVersion: ringops/v1\nkind: Ring\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"
        )
    }

    #[test]
    fn rings_are_ordered_after_the_ring_they_promote_from() {
        let mut bundle = Bundle::default();
        let text = [
            ring("edge", Some("production")),
            ring("production", Some("staging")),
            ring("dev", None),
            ring("staging", Some("dev")),
            ring("loop-a", Some("loop-b")),
            ring("loop-b", Some("loop-a")),
            ring("lab", None),
        ]
        .concat();
        bundle.files.insert("rings.yaml".into(), text.into_bytes());
        assert_eq!(
            ring_order(&bundle),
            [
                "dev",
                "staging",
                "production",
                "edge",
                "lab",
                "loop-a",
                "loop-b"
            ]
        );
    }
}
