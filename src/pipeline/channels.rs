//! Channels of the expand stage: declaring a workflow's (and an imported module's)
//! channels, binding them to the jobs that produce and consume them, and the checks
//! that need the whole step graph: every channel fed and read, crossings between worker
//! groups have a known transport, and no cycles.
//!
//! Owns [`ChannelInfo`]'s producers, consumers and `crossing` flag. It may not add or
//! change jobs; that is [`super::expand`] and [`super::module`].

use super::catalog::Catalog;
use super::checks::check_name;
use super::expand::{ChannelInfo, Expanded};
use crate::model::manifest::Channel;
use crate::model::{Diagnostics, Spanned};
use std::collections::{BTreeMap, BTreeSet};

/// Channels declared in `file`, by full name (`<prefix>.<name>` inside a module).
pub fn declare_channels<'a>(
    file: &'a str,
    channels: &'a BTreeMap<String, Spanned<Channel>>,
    prefix: Option<&str>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, ChannelInfo<'a>> {
    channels
        .iter()
        .map(|(name, ch)| {
            check_name(file, &Spanned::new(name.clone(), ch.at), "channel", diags);
            let full = match prefix {
                Some(p) => format!("{p}.{name}"),
                None => name.clone(),
            };
            let info = ChannelInfo {
                transport: ch.value.transport.as_ref(),
                file,
                at: ch.at,
                producers: Vec::new(),
                consumers: Vec::new(),
                crossing: false,
            };
            (full, info)
        })
        .collect()
}

/// Records producers and consumers; checks every channel is declared, fed and read.
pub fn bind_channels(cat: &Catalog, wf: &mut Expanded, diags: &mut Diagnostics) {
    record_jobs(wf, diags);
    for (name, ch) in wf.channels.iter_mut() {
        if ch.producers.is_empty() {
            diags.error(
                ch.file,
                ch.at,
                "channel-producer",
                format!("channel `{name}` has no producer (no step lists it in `outputs`)"),
            );
        }
        if ch.consumers.is_empty() {
            diags.error(
                ch.file,
                ch.at,
                "channel-consumer",
                format!("channel `{name}` has no consumer (no step lists it in `inputs`)"),
            );
        }
        let groups = |jobs: &[usize]| -> BTreeSet<&str> {
            jobs.iter()
                .map(|&j| wf.jobs[j].placement.group.value.as_str())
                .collect()
        };
        let (from, to) = (groups(&ch.producers), groups(&ch.consumers));
        ch.crossing = from.union(&to).count() > 1;
        check_transport(cat, name, ch, (&from, &to), diags);
    }
}

/// Adds each job to the producers or consumers of the channels it names.
fn record_jobs(wf: &mut Expanded, diags: &mut Diagnostics) {
    for (i, job) in wf.jobs.iter().enumerate() {
        for (list, is_output) in [(&job.inputs, false), (&job.outputs, true)] {
            for channel in list {
                let name = &channel.name;
                match wf.channels.get_mut(name) {
                    Some(ch) if is_output => ch.producers.push(i),
                    Some(ch) => ch.consumers.push(i),
                    None => diags.error(
                        channel.file,
                        channel.at,
                        "unknown-channel",
                        format!(
                            "step `{}` uses channel `{name}`, which is not declared in `channels`",
                            job.name
                        ),
                    ),
                }
            }
        }
    }
}

fn check_transport(
    cat: &Catalog,
    name: &str,
    ch: &ChannelInfo,
    (from, to): (&BTreeSet<&str>, &BTreeSet<&str>),
    diags: &mut Diagnostics,
) {
    let list = |groups: &BTreeSet<&str>| {
        let names: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
        names.join(", ")
    };
    match ch.transport {
        Some(t) if !cat.transports.contains_key(t.value.as_str()) => {
            cat.unknown(diags, ch.file, t, "transport")
        }
        None if ch.crossing => diags.error(
            ch.file,
            ch.at,
            "channel-transport",
            format!(
                "channel `{name}` crosses worker groups (from {} to {}) but has no `transport`",
                list(from),
                list(to)
            ),
        ),
        _ => {}
    }
}

/// Reports a cycle in the step graph (producer → consumer), naming its steps.
pub fn check_cycles(wf: &Expanded, diags: &mut Diagnostics) {
    let n = wf.jobs.len();
    let mut next: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for ch in wf.channels.values() {
        for &p in &ch.producers {
            next[p].extend(ch.consumers.iter().copied());
        }
    }
    let mut state = vec![0u8; n];
    let mut stack = Vec::new();
    for start in 0..n {
        if let Some(cycle) = dfs(start, &next, &mut state, &mut stack) {
            let names: Vec<&str> = cycle.iter().map(|&j| wf.jobs[j].name.as_str()).collect();
            let first = &wf.jobs[cycle[0]];
            diags.error(
                first.file,
                first.at,
                "cycle",
                format!("workflow `{}` has a cycle: {}", wf.name, names.join(" → ")),
            );
            return;
        }
    }
}

fn dfs(
    node: usize,
    next: &[BTreeSet<usize>],
    state: &mut [u8],
    stack: &mut Vec<usize>,
) -> Option<Vec<usize>> {
    match state[node] {
        2 => return None,
        1 => {
            let from = stack.iter().position(|&j| j == node).unwrap_or(0);
            let mut cycle = stack[from..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        _ => {}
    }
    state[node] = 1;
    stack.push(node);
    for &m in &next[node] {
        if let Some(cycle) = dfs(m, next, state, stack) {
            return Some(cycle);
        }
    }
    stack.pop();
    state[node] = 2;
    None
}
