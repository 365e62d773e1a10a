//! Per-topic and per-group message counts over the last minute, hour and day, as RocketMQ's
//! `StatsItem` keeps them for VIEW_BROKER_STATS_DATA (mqadmin statsAll) and a group's consume
//! TPS: a running total sampled every 10 s (the minute: the last 7 samples), every 10
//! minutes (the hour: the last 7) and every hour (the day: the last 25); a window's sum is its
//! newest sample less its oldest, and its TPS that sum over the time between them.
//!
//! The shell feeds running totals: a topic's is the sum of its queues' end offsets (so that
//! nothing is counted on the send path), a group's the messages it pulled of a topic. A key
//! counts from the sample it is first seen in ([`NewKeys::FromNow`]), or, for totals that
//! begin at zero with the key, from zero when it first appears after the first sample
//! ([`NewKeys::Whole`]: a group's pulls, counted since the broker started). A total that goes
//! back (a queue truncated, a topic's queues cut) counts from then on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::Millis;

/// The three windows: sampling step and samples kept.
const WINDOWS: [(Millis, usize); 3] = [(10_000, 7), (600_000, 7), (3_600_000, 25)];

/// One window's figures (`StatsSnapshot`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub sum: u64,
    pub tps: f64,
}

/// One key's samples: its total when first seen, and per window `(time, count since then)`.
#[derive(Debug, Clone, Default)]
struct Item {
    base: u64,
    last: u64,
    windows: [VecDeque<(Millis, u64)>; 3],
}

/// Where a key first seen counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKeys {
    /// From its total then: it may hold what came before (a topic's queues outlive the
    /// topic's deletion, so a topic created again starts with their old ends).
    FromNow,
    /// From zero, after the first sample: its total began with the key.
    Whole,
}

/// The keys' samples, and when each window is next sampled.
#[derive(Debug, Clone, Default)]
pub struct StatsTable {
    items: BTreeMap<String, Item>,
    next: [Millis; 3],
    /// Whether the first sample was taken.
    started: bool,
}

impl StatsTable {
    /// Takes `totals` at `now` into each window whose step has come; keys not among them are
    /// forgotten (their topic or group is gone). Call it at least every 10 s.
    pub fn sample(
        &mut self,
        now: Millis,
        totals: impl IntoIterator<Item = (String, u64)>,
        new_keys: NewKeys,
    ) {
        let due: Vec<usize> = (0..WINDOWS.len()).filter(|w| now >= self.next[*w]).collect();
        let mut seen = BTreeSet::new();
        let whole = self.started && new_keys == NewKeys::Whole;
        let base = |total| if whole { 0 } else { total };
        for (key, total) in totals {
            let item = self.items.entry(key.clone()).or_insert_with(|| Item::new(base(total)));
            if total < item.base + item.last {
                *item = Item::new(total);
            }
            item.last = total - item.base;
            for w in &due {
                item.push(*w, now);
            }
            seen.insert(key);
        }
        self.items.retain(|key, _| seen.contains(key));
        for w in due {
            self.next[w] = now + WINDOWS[w].0;
        }
        self.started = true;
    }

    /// The minute's, hour's and day's figures of `key`, if it was sampled.
    pub fn snapshot(&self, key: &str) -> Option<[Snapshot; 3]> {
        let item = self.items.get(key)?;
        Some(std::array::from_fn(|w| {
            let samples = &item.windows[w];
            match (samples.front(), samples.back()) {
                (Some((t0, v0)), Some((t1, v1))) if t1 > t0 => {
                    let sum = v1 - v0;
                    Snapshot { sum, tps: sum as f64 * 1000.0 / (t1 - t0) as f64 }
                }
                _ => Snapshot::default(),
            }
        }))
    }

    /// Each window's samples are in time order, counts never go back, at most as many as
    /// kept.
    pub fn check_invariants(&self) {
        for (key, item) in &self.items {
            for (w, samples) in item.windows.iter().enumerate() {
                assert!(samples.len() <= WINDOWS[w].1 + 1, "{key}: too many samples");
                for pair in samples.iter().zip(samples.iter().skip(1)) {
                    assert!(pair.0 .0 < pair.1 .0 && pair.0 .1 <= pair.1 .1, "{key}: {pair:?}");
                }
            }
        }
    }
}

impl Item {
    fn new(base: u64) -> Item {
        Item { base, ..Item::default() }
    }

    /// A sample of window `w` at `now`; the first is preceded by a zero one step earlier, as
    /// RocketMQ's, so that a window has a span from its first sample on.
    fn push(&mut self, w: usize, now: Millis) {
        let (step, kept) = WINDOWS[w];
        let samples = &mut self.windows[w];
        if samples.is_empty() {
            samples.push_back((now.saturating_sub(step), 0));
        }
        samples.push_back((now, self.last));
        while samples.len() > kept {
            samples.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wall-clock time, as the broker's are.
    const START: Millis = 1_796_000_000_000;

    #[test]
    fn a_steady_rate_shows_in_each_window_and_a_gone_key_is_forgotten() {
        let mut table = StatsTable::default();
        // 5 messages a second on T, sampled every 10 s for two hours; G is seen later.
        for t in 0..=720u64 {
            let mut totals = vec![("T".to_owned(), 1_000 + t * 50)];
            if t >= 600 {
                totals.push(("T@G".to_owned(), (t - 600) * 20));
            }
            table.sample(START + t * 10_000, totals, NewKeys::Whole);
            table.check_invariants();
        }
        let [minute, hour, day] = table.snapshot("T").unwrap();
        assert_eq!(minute, Snapshot { sum: 300, tps: 5.0 }, "the last 60 s");
        assert_eq!(hour, Snapshot { sum: 18_000, tps: 5.0 }, "the last 60 minutes");
        // The day window: samples every hour since the key was first seen, after a zero one
        // an hour before it.
        assert_eq!(day, Snapshot { sum: 36_000, tps: 36_000.0 / 10_800.0 });
        let [minute, hour, _] = table.snapshot("T@G").unwrap();
        assert_eq!(minute.tps, 2.0);
        assert_eq!(hour.sum, 120 * 20, "a key seen after the first sample counts its total");
        table.sample(START + 7_210_000, [("T@G".to_owned(), 0)], NewKeys::Whole);
        assert!(table.snapshot("T").is_none(), "T's topic is gone");
        assert_eq!(table.snapshot("T@G").unwrap()[0].sum, 0, "a total gone back counts from then");
        table.check_invariants();
    }

    #[test]
    fn what_came_before_the_first_sample_is_not_counted_and_new_keys_count_as_told() {
        for (new_keys, counted) in [(NewKeys::Whole, 4), (NewKeys::FromNow, 0)] {
            let mut table = StatsTable::default();
            table.sample(START, [("T".to_owned(), 9)], new_keys);
            assert_eq!(table.snapshot("T").unwrap(), [Snapshot::default(); 3]);
            assert!(table.snapshot("U").is_none());
            let both = [("T".to_owned(), 9), ("U".to_owned(), 4)];
            table.sample(START + 10_000, both, new_keys);
            assert_eq!(table.snapshot("T").unwrap()[0].sum, 0);
            assert_eq!(table.snapshot("U").unwrap()[0].sum, counted, "{new_keys:?}");
            // A total gone back (a queue cut) counts on from there, not as all new.
            table.sample(START + 20_000, [("T".to_owned(), 5)], new_keys);
            table.sample(START + 30_000, [("T".to_owned(), 7)], new_keys);
            assert_eq!(table.snapshot("T").unwrap()[0].sum, 2);
            table.check_invariants();
        }
    }
}
