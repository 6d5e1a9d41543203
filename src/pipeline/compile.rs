//! The whole compiler: a [`Bundle`] and secrets → every ring's [`DesiredState`], or every
//! problem found. A bundle with any problem renders nothing.

use super::catalog::Catalog;
use super::expand::expand_all;
use super::load::load;
use super::render::{Renderer, SecretSource, Templates};
use crate::model::{Bundle, DesiredState, Diagnostic, Diagnostics};
use std::collections::BTreeMap;

/// Which rings to render.
#[derive(Clone, Copy, Debug)]
pub enum Rings<'r> {
    /// Every ring: what `validate` checks.
    All,
    /// One ring: what `plan` and `render` need. Other rings are still checked, not rendered.
    One(&'r str),
}

/// A compiled bundle.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// Every ring the bundle defines, in name order.
    pub rings: Vec<String>,
    /// Desired states of the rendered rings.
    pub states: BTreeMap<String, DesiredState>,
}

/// Compiles a bundle; returns every problem, sorted, if there is any.
pub fn compile(
    bundle: &Bundle,
    secrets: &dyn SecretSource,
    which: Rings,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut diags = Diagnostics::default();
    let loaded = load(bundle, &mut diags);
    let cat = Catalog::build(&loaded, bundle, &mut diags);
    let workflows = expand_all(&cat, &mut diags);
    let templates = Templates::compile(&cat, bundle, &mut diags);
    let renderer = Renderer {
        cat: &cat,
        workflows: &workflows,
        templates: &templates,
        secrets,
    };
    let mut compiled = Compiled {
        rings: cat.rings.keys().map(|r| (*r).to_owned()).collect(),
        states: BTreeMap::new(),
    };
    for ring in cat.rings.keys() {
        let wanted = match which {
            Rings::All => true,
            Rings::One(r) => r == *ring,
        };
        let state = renderer.ring(ring, wanted, &mut diags);
        if wanted {
            compiled.states.insert((*ring).to_owned(), state);
        }
    }
    if diags.is_empty() {
        Ok(compiled)
    } else {
        Err(diags.into_sorted())
    }
}
