//! The one backoff schedule of ringops, made by backon: waits that start at a first
//! delay and double up to a cap, each lengthened by a random part of itself (jitter) so
//! that retries which failed together do not all come back at the same moment. Used by
//! notification delivery, the HTTP link's connects, the engine's wait for an
//! unreachable worker and the daemon's retry of a failed deployment; none of them
//! computes a wait itself. Owns no clock and sleeps nowhere: callers sleep.
//!
//! Jitter only lengthens (backon adds a random amount below the delay, never
//! subtracts): each wait is at least its nominal delay (`first`, then twice as long each
//! time, at most `max`), less than twice that, and never longer than `max`. Once the
//! nominal delay reaches `max` every wait is `max`; the random offsets taken on the way
//! up keep retries apart from then on. Waits are whole milliseconds (backon computes in
//! `f32` seconds; the stray nanoseconds would only clutter log lines).

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::fmt;
use std::time::Duration;

/// A backoff schedule: [`Backoff::next_delay`] gives each wait in turn, without end.
/// Keep it between attempts (the daemon keeps one per failing ring).
#[derive(Debug)]
pub struct Backoff {
    /// backon's schedule without jitter: each wait's nominal delay.
    nominal: ExponentialBackoff,
    /// The same schedule with backon's jitter. It steps in line with `nominal`:
    /// backon grows the delay before adding jitter, so jitter never compounds.
    jittered: ExponentialBackoff,
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits of `first`, then twice as long each time up to `max`, each with jitter.
    /// `Duration::MAX` as `max`: no cap (for a caller that bounds its attempts).
    pub fn new(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        Self {
            nominal: builder.build(),
            jittered: builder.with_jitter().build(),
            first,
            max,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Delay {
        // Neither ends: without_max_times (backon stops only at usize::MAX steps).
        let nominal = self.nominal.next().unwrap_or(self.max);
        let wait = self.jittered.next().unwrap_or(nominal);
        let nominal = whole_ms(nominal).max(self.first);
        let wait = whole_ms(wait).max(nominal);
        Delay { nominal, wait }.at_most(self.max)
    }
}

impl Iterator for Backoff {
    type Item = Delay;

    /// The next wait; never `None`.
    fn next(&mut self) -> Option<Delay> {
        Some(self.next_delay())
    }
}

/// One wait of a [`Backoff`]. Displays as `300ms (+112ms jitter)`, or just `10s`
/// without jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delay {
    /// The schedule's delay before jitter.
    pub nominal: Duration,
    /// How long to wait: `nominal` plus jitter.
    pub wait: Duration,
}

impl Delay {
    /// The random part of the wait.
    pub fn jitter(&self) -> Duration {
        self.wait.saturating_sub(self.nominal)
    }

    /// This delay cut to `limit` (the time left before a deadline).
    pub fn at_most(self, limit: Duration) -> Self {
        Self {
            nominal: self.nominal.min(limit),
            wait: self.wait.min(limit),
        }
    }
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.nominal))?;
        let jitter = self.jitter();
        if !jitter.is_zero() {
            write!(f, " (+{} jitter)", humantime::format_duration(jitter))?;
        }
        Ok(())
    }
}

/// `d` rounded to the nearest millisecond.
fn whole_ms(d: Duration) -> Duration {
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    u64::try_from(ms).map_or(Duration::MAX, Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_wait_is_the_first_delay_plus_less_than_itself() {
        for _ in 0..100 {
            let d = Backoff::new(300 * MS, 15 * 60 * 1000 * MS).next_delay();
            assert_eq!(d.nominal, 300 * MS);
            assert!(d.wait >= 300 * MS && d.wait <= 600 * MS, "{d:?}");
        }
    }

    #[test]
    fn the_nominal_delay_doubles_up_to_the_cap_and_stays_there() {
        let nominal: Vec<_> = Backoff::new(500 * MS, 10_000 * MS)
            .take(8)
            .map(|d| d.nominal.as_millis())
            .collect();
        assert_eq!(
            nominal,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn jitter_lengthens_a_wait_by_less_than_itself_and_never_past_the_cap() {
        let max = 10_000 * MS;
        let delays: Vec<_> = Backoff::new(500 * MS, max).take(2000).collect();
        for d in &delays {
            assert!(d.wait >= d.nominal, "{d:?}");
            assert!(d.wait <= (d.nominal * 2).min(max), "{d:?}");
        }
        // Below the cap the waits differ (all equal would mean no jitter at all).
        let firsts: std::collections::BTreeSet<_> = (0..50)
            .map(|_| Backoff::new(1000 * MS, max).next_delay().wait)
            .collect();
        assert!(firsts.len() > 1, "{firsts:?}");
        // At the cap every wait is the cap.
        assert!(delays[10..].iter().all(|d| d.wait == max));
    }

    #[test]
    fn a_first_delay_over_the_cap_is_cut_to_it() {
        let mut b = Backoff::new(3600 * 1000 * MS, 900 * 1000 * MS);
        for _ in 0..3 {
            let d = b.next_delay();
            assert_eq!((d.nominal, d.wait), (900 * 1000 * MS, 900 * 1000 * MS));
        }
    }

    #[test]
    fn without_a_cap_it_doubles_on() {
        let mut b = Backoff::new(200 * MS, Duration::MAX);
        let nominal: Vec<_> = (0..4).map(|_| b.next_delay().nominal.as_millis()).collect();
        assert_eq!(nominal, [200, 400, 800, 1600]);
    }

    #[test]
    fn a_delay_cut_to_a_deadline_waits_no_longer_than_it() {
        let d = Delay {
            nominal: 4000 * MS,
            wait: 6000 * MS,
        };
        assert_eq!(
            d.at_most(5000 * MS),
            Delay {
                nominal: 4000 * MS,
                wait: 5000 * MS
            }
        );
        let cut = d.at_most(1200 * MS);
        assert_eq!(
            (cut.nominal, cut.wait, cut.to_string()),
            (1200 * MS, 1200 * MS, "1s 200ms".into())
        );
    }

    #[test]
    fn a_delay_shows_its_nominal_part_and_its_jitter() {
        let d = Delay {
            nominal: 300 * MS,
            wait: 412 * MS,
        };
        assert_eq!(d.to_string(), "300ms (+112ms jitter)");
    }
}
