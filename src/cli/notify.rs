//! Notifications from commands: after a command that writes ran, every deployment
//! state it entered is posted to the `[[notify]]` targets (a command is short-lived,
//! so it posts once it is done and waits a little for delivery; the daemon posts as it
//! goes). A target that is down never fails the command.

use super::history::open_reader;
use super::{Context, Failure};
use crate::adapters::notify::{Event, Notifier, NotifySettings, TargetConfig};
use crate::model::deployment::Timestamp;
use std::time::Duration;

/// How long a command waits for its notifications to be delivered.
const FLUSH: Duration = Duration::from_secs(10);

/// How far back a command looks for the deployments it may have changed.
const RECENT: usize = 50;

/// The state changes made from now on, to post when the command is done.
pub struct Notifications {
    since: Timestamp,
    sending: Option<(tokio::runtime::Runtime, Notifier)>,
}

impl Notifications {
    /// Starts delivery to `targets` (nothing at all when there are none).
    pub fn start(targets: &[TargetConfig]) -> Result<Self, Failure> {
        let since = now();
        if targets.is_empty() {
            return Ok(Notifications {
                since,
                sending: None,
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Failure::Internal(e.into()))?;
        let settings = NotifySettings {
            targets: targets.to_vec(),
            ..NotifySettings::default()
        };
        let notifier = {
            let _inside = runtime.enter();
            Notifier::start(settings).map_err(|e| Failure::User(e.into()))?
        };
        Ok(Notifications {
            since,
            sending: Some((runtime, notifier)),
        })
    }

    /// Posts every state a deployment entered since [`Notifications::start`], oldest
    /// first, and waits (a little) for delivery.
    pub fn finish(self, ctx: &Context) {
        let Some((runtime, notifier)) = self.sending else {
            return;
        };
        let Ok(Some(reader)) = open_reader(ctx.state_dir()) else {
            return;
        };
        let mut events = Vec::new();
        for d in reader.history(None, RECENT).unwrap_or_default() {
            for e in reader.events(d.id).unwrap_or_default() {
                if let Some(state) = e.state.filter(|_| e.at.0 >= self.since.0) {
                    events.push(Event::of(&d, state, e.at));
                }
            }
        }
        events.sort_by_key(|e| (e.at.0, e.deployment.0));
        for event in events {
            notifier.send(event);
        }
        if let Err(e) = runtime.block_on(notifier.flush(FLUSH)) {
            eprintln!("note: {} notification(s) not delivered in time", e.pending);
        }
    }
}

fn now() -> Timestamp {
    crate::adapters::store::Clock::now(&crate::adapters::store::SystemClock)
}
