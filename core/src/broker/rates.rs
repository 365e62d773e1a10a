//! The broker's message rates, as its runtime info gives them to mqadmin clusterList and the
//! dashboard (`putTps`, `getTransferredTps`): messages a second over the last 10 s, minute and
//! ten minutes, from samples of two running totals taken at least a second apart.

use std::collections::VecDeque;

use crate::Millis;

/// The windows, in milliseconds, of the three figures.
pub const WINDOWS_MS: [Millis; 3] = [10_000, 60_000, 600_000];
/// Samples closer together than this are not kept.
const SAMPLE_GAP_MS: Millis = 1_000;

/// Samples of (time, messages put, messages got), oldest first.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    samples: VecDeque<(Millis, u64, u64)>,
}

impl Rates {
    /// Records the totals at `now`. Keeps one sample older than the longest window, so that it
    /// always has a full window once the broker ran that long.
    pub fn sample(&mut self, now: Millis, put: u64, got: u64) {
        if self.samples.back().is_some_and(|(at, _, _)| now < at + SAMPLE_GAP_MS) {
            return;
        }
        self.samples.push_back((now, put, got));
        let horizon = now.saturating_sub(WINDOWS_MS[2]);
        while self.samples.get(1).is_some_and(|(at, _, _)| *at <= horizon) {
            self.samples.pop_front();
        }
    }

    /// Messages put and got a second over each window ending at `now`, whose totals are `put`
    /// and `got`: measured from the newest sample at least a window old, or the oldest sample
    /// while the broker has not run that long; 0 with no sample at least a second old.
    pub fn per_second(&self, now: Millis, put: u64, got: u64) -> [(f64, f64); 3] {
        WINDOWS_MS.map(|window| {
            let from = self
                .samples
                .iter()
                .rev()
                .find(|(at, _, _)| at + window <= now)
                .or_else(|| self.samples.front());
            match from {
                Some((at, put_then, got_then)) if now >= at + SAMPLE_GAP_MS => {
                    let seconds = (now - at) as f64 / 1000.0;
                    (
                        put.saturating_sub(*put_then) as f64 / seconds,
                        got.saturating_sub(*got_then) as f64 / seconds,
                    )
                }
                _ => (0.0, 0.0),
            }
        })
    }

    /// Samples are in time order, at least the gap apart, and no older than needed.
    pub fn check_invariants(&self) {
        for pair in self.samples.iter().zip(self.samples.iter().skip(1)) {
            assert!(pair.0 .0 + SAMPLE_GAP_MS <= pair.1 .0, "samples out of order: {pair:?}");
        }
        if let (Some(second), Some(last)) = (self.samples.get(1), self.samples.back()) {
            assert!(second.0 > last.0.saturating_sub(WINDOWS_MS[2]), "a sample kept too long");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_over_each_window_and_start_from_what_is_known() {
        let mut rates = Rates::default();
        assert_eq!(rates.per_second(0, 0, 0), [(0.0, 0.0); 3]);
        // 100 puts and 50 gets a second, sampled every 5 s for 20 minutes.
        for t in 0..=240u64 {
            rates.sample(t * 5_000, t * 500, t * 250);
            rates.check_invariants();
        }
        let now = 240 * 5_000;
        assert_eq!(rates.per_second(now, 240 * 500, 240 * 250), [(100.0, 50.0); 3]);
        assert!(rates.samples.len() <= 122, "kept {}", rates.samples.len());
        // A burst of 1000 puts in the last 10 s shows fully in the first window only.
        let burst = rates.per_second(now, 240 * 500 + 1_000, 240 * 250);
        assert_eq!(burst[0].0, 200.0);
        assert!((burst[1].0 - (100.0 + 1_000.0 / 60.0)).abs() < 1e-9);
        assert!(burst[2].0 < burst[1].0);
    }

    #[test]
    fn a_young_broker_measures_from_its_first_sample() {
        let mut rates = Rates::default();
        rates.sample(1_000, 0, 0);
        rates.sample(1_500, 10, 0);
        assert_eq!(rates.samples.len(), 1, "samples less than a second apart are dropped");
        assert_eq!(rates.per_second(1_500, 10, 0), [(0.0, 0.0); 3]);
        assert_eq!(rates.per_second(3_000, 40, 20), [(20.0, 10.0); 3]);
    }
}
