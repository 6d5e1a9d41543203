//! Crossing channels in the render stage: a channel whose producers and consumers are in
//! different worker groups gets its transport's sender job on every producing worker and
//! its receiver job on every consuming worker, with `transport` (name, senders,
//! receivers and their addresses) in the template context.
//!
//! Owns the transport jobs' names, parameters and sources. It may not decide where the
//! workflow's own jobs run (that is [`super::place`]) and renders through
//! [`super::render`].

use super::catalog::Entry;
use super::expand::{ChannelInfo, Expanded, args};
use super::params;
use super::place::{self, Slot};
use super::render::{Output, Render, Renderer, channel_list};
use crate::model::manifest::{AdapterSpec, BlueprintSpec};
use minijinja::{Value, context};
use std::collections::BTreeSet;

/// A channel that crosses worker groups, rendered in one ring.
struct Crossing<'c> {
    wf: &'c Expanded<'c>,
    channel: &'c str,
    ring: &'c str,
    /// The transport's file.
    file: &'c str,
    /// `transport` in the template context.
    value: Value,
    /// Files of the groups of every sender and receiver: their addresses are in `value`.
    group_files: BTreeSet<&'c str>,
}

impl Renderer<'_> {
    /// Renders the sender and receiver jobs of a channel that crosses worker groups.
    pub(super) fn crossing(
        &self,
        wf: &Expanded,
        name: &str,
        channel: &ChannelInfo,
        slots: &[Vec<Slot>],
        ring: &str,
        out: &mut Output,
    ) {
        let Some(tname) = channel.transport else {
            return;
        };
        let Some(transport) = self.cat.transports.get(tname.value.as_str()) else {
            return;
        };
        let senders = hosts(slots, &channel.producers);
        let receivers = hosts(slots, &channel.consumers);
        let group_files = senders
            .iter()
            .chain(&receivers)
            .filter_map(|w| self.cat.workers.get(w))
            .map(|e| e.doc.file.as_str())
            .collect();
        let crossing = Crossing {
            wf,
            channel: name,
            ring,
            group_files,
            file: transport.file(),
            value: context! {
                name => tname.value.clone(),
                channel => name,
                senders => self.endpoints(&senders),
                receivers => self.endpoints(&receivers),
            },
        };
        for (role, adapter, hosts) in [
            ("sender", &transport.spec.sender, &senders),
            ("receiver", &transport.spec.receiver, &receivers),
        ] {
            self.adapter(&crossing, role, adapter, hosts, out);
        }
    }

    /// The workers of one side of a crossing channel, with their addresses.
    fn endpoints(&self, set: &BTreeSet<&str>) -> Vec<Value> {
        set.iter()
            .map(|w| {
                let address = self
                    .cat
                    .workers
                    .get(w)
                    .and_then(|e| e.worker.address.clone());
                context! { worker => *w, address => address }
            })
            .collect()
    }

    /// Renders the `role` ("sender" or "receiver") job of a crossing channel on each of
    /// its hosts in the ring.
    fn adapter(
        &self,
        c: &Crossing,
        role: &str,
        adapter: &AdapterSpec,
        hosts: &BTreeSet<&str>,
        out: &mut Output,
    ) {
        let Some(bp) = self.cat.blueprints.get(adapter.blueprint.value.as_str()) else {
            return;
        };
        let job_name = format!("_{}.{role}", c.channel);
        let with = args(c.file, &adapter.with);
        let at = adapter.blueprint.at;
        let owner = (c.file, at, job_name.as_str());
        let Some(params) = params::resolve(bp, &with, owner, self.secrets, out.diags) else {
            return;
        };
        let sources = adapter_sources(c, bp);
        let (inputs, outputs) = sides(role, channel_list(c.wf, [c.channel]));
        for worker in hosts {
            let Some(entry) = self.cat.workers.get(worker) else {
                continue;
            };
            if entry.worker.ring.value != c.ring {
                continue;
            }
            place::check_features(self.cat, bp, entry.group, c.file, at, out.diags);
            let r = Render {
                workflow: c.wf.name,
                job: &job_name,
                blueprint: &adapter.blueprint.value,
                slot: Slot {
                    worker,
                    replica: None,
                },
                replicas: None,
                group: entry.group,
                params: &params,
                sources: &sources,
                inputs: inputs.clone(),
                outputs: outputs.clone(),
                transport: c.value.clone(),
            };
            self.render(&r, out);
        }
    }
}

/// `inputs` and `outputs` of a transport job: a sender reads the channel, a receiver
/// writes it.
fn sides(role: &str, channels: Value) -> (Value, Value) {
    let none = Value::from(Vec::<Value>::new());
    match role {
        "sender" => (channels, none),
        _ => (none, channels),
    }
}

/// The workers hosting the jobs at `jobs` (indexes into a workflow's jobs).
fn hosts<'s>(slots: &[Vec<Slot<'s>>], jobs: &[usize]) -> BTreeSet<&'s str> {
    jobs.iter()
        .flat_map(|&j| slots[j].iter().map(|s| s.worker))
        .collect()
}

/// Repository files a crossing channel's transport job is built from.
fn adapter_sources(c: &Crossing, bp: &Entry<BlueprintSpec>) -> BTreeSet<String> {
    let mut sources = BTreeSet::from([
        c.wf.entry.file().to_owned(),
        c.file.to_owned(),
        bp.file().to_owned(),
    ]);
    sources.extend(c.wf.jobs.iter().flat_map(|j| j.sources.iter().cloned()));
    sources.extend(c.group_files.iter().map(|f| (*f).to_owned()));
    sources
}
