//! The confirm machine (ARCHITECTURE.md's "flush / confirm" core): from what was appended to
//! the commit log, what the disk made durable and what replicas hold, it decides when the
//! commit log must be persisted, up to where producers may be acknowledged, and up to where
//! consumers may see records (the *confirm offset*).
//!
//! No I/O and no clock. The store's shell feeds it [`ConfirmEvent`]s and `tick`s, and carries
//! out its [`ConfirmAction`]s: it persists when told and reports back with
//! [`ConfirmEvent::Persisted`], answers the producers waiting below an `Acknowledge`, and
//! dispatches records to consume queues only below a `Confirm`.
//!
//! The configurations are one shape with different waits (STYLE.md, habit 3):
//!
//! | flushDiskType | replication | acknowledged up to | confirmed up to |
//! |---|---|---|---|
//! | SYNC_FLUSH | none | persisted | persisted |
//! | ASYNC_FLUSH | none | appended | appended |
//! | either | `acks_required = n` | also held by n replicas | as without, or also held by n replicas when `confirm_waits_for_replicas` |
//! | either, a controller-mode slave | `upstream_confirms` | also confirmed by the master | as acknowledged |
//!
//! Replica acknowledgements are part of the shape now so that SYNC_MASTER and the in-sync
//! replica set attach without changing it; no shell sends them until replication lands.
//!
//! ```
//! use petrel_core::confirm::{ConfirmAction, ConfirmConfig, ConfirmEvent, ConfirmMachine};
//! let mut machine = ConfirmMachine::new(ConfirmConfig::sync_flush(), 0, 0, 0);
//! machine.handle(1, ConfirmEvent::Appended { end: 100, epoch: 0 });
//! assert_eq!(machine.poll_action(), Some(ConfirmAction::Persist { up_to: 100 }));
//! machine.handle(2, ConfirmEvent::Persisted { offset: 100 });
//! assert_eq!(machine.poll_action(), Some(ConfirmAction::Confirm { up_to: 100 }));
//! assert_eq!(machine.poll_action(), Some(ConfirmAction::Acknowledge { up_to: 100 }));
//! assert_eq!(machine.poll_action(), None);
//! machine.check_invariants();
//! ```

use std::collections::{BTreeMap, VecDeque};

use crate::Millis;

/// When the commit log is persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// SYNC_FLUSH: every append asks for a persist, and records wait for it. One persist is
    /// outstanding at a time and covers everything appended before it ran (the group commit).
    Sync,
    /// ASYNC_FLUSH (RocketMQ's FlushRealTimeService): every `interval_ms`, persist when at
    /// least `least_bytes` are not yet durable, or whatever is not once every `thorough_ms`
    /// (counted from the last such check, whether or not it found anything to persist).
    Async { interval_ms: Millis, least_bytes: u64, thorough_ms: Millis },
}

/// The machine's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmConfig {
    pub flush: FlushPolicy,
    /// How many replicas must hold a record before its producer is acknowledged: 0 for a
    /// lone master or an ASYNC_MASTER, 1 for a SYNC_MASTER with one slave.
    pub acks_required: usize,
    /// Whether consumers, too, wait for those replicas (RocketMQ 5's controller mode with
    /// `allAckInSyncStateSet`); classic SYNC_MASTER confirms on the flush alone.
    pub confirm_waits_for_replicas: bool,
    /// A slave in controller mode: nothing past the master's confirm offset is confirmed
    /// (RocketMQ's slave dispatches only up to the confirm offset its master sends): a record
    /// the next master may not have is not shown to consumers.
    pub upstream_confirms: bool,
}

impl ConfirmConfig {
    /// SYNC_FLUSH on a lone master.
    pub fn sync_flush() -> ConfirmConfig {
        ConfirmConfig {
            flush: FlushPolicy::Sync,
            acks_required: 0,
            confirm_waits_for_replicas: false,
            upstream_confirms: false,
        }
    }

    /// ASYNC_FLUSH on a lone master, with RocketMQ's defaults: every 500 ms when 4 pages are
    /// dirty, everything every 10 s.
    pub fn async_flush() -> ConfirmConfig {
        let flush =
            FlushPolicy::Async { interval_ms: 500, least_bytes: 4 * 4096, thorough_ms: 10_000 };
        ConfirmConfig {
            flush,
            acks_required: 0,
            confirm_waits_for_replicas: false,
            upstream_confirms: false,
        }
    }
}

/// A replica, as the shell names it (RocketMQ's broker id).
pub type ReplicaId = u64;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmEvent {
    /// The commit log now ends at `end`; the records appended were written in `epoch`.
    Appended { end: u64, epoch: u32 },
    /// A persist finished: everything below `offset` is durable (and so was appended).
    Persisted { offset: u64 },
    /// `replica` holds the commit log up to `offset`.
    ReplicaAcked { replica: ReplicaId, offset: u64 },
    /// `replica` left (disconnected or dropped from the in-sync set): its acks count no more.
    ReplicaGone { replica: ReplicaId },
    /// The master confirmed its log up to `offset` (a controller-mode slave).
    UpstreamConfirmed { offset: u64 },
}

/// What the shell must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmAction {
    /// Make the commit log durable up to at least `up_to`, then report `Persisted`.
    Persist { up_to: u64 },
    /// Producers whose records end at or below `up_to` may be answered.
    Acknowledge { up_to: u64 },
    /// Records ending at or below `up_to` may be dispatched to consumers.
    Confirm { up_to: u64 },
}

/// The machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct ConfirmMachine {
    config: ConfirmConfig,
    epoch: u32,
    appended: u64,
    persisted: u64,
    /// The end of the persist asked for and not reported yet.
    persisting: Option<u64>,
    replicas: BTreeMap<ReplicaId, u64>,
    /// The furthest `acks_required` replicas ever held the log together. It can fall back when
    /// one leaves, but what was acknowledged under it stays acknowledged.
    replicated_max: u64,
    /// How far the master confirmed (`upstream_confirms`).
    upstream: u64,
    acknowledged: u64,
    confirmed: u64,
    /// ASYNC_FLUSH: when to look at the dirty bytes next, and when the last thorough persist
    /// was asked for.
    flush_check_at: Millis,
    thorough_at: Millis,
    actions: VecDeque<ConfirmAction>,
}

impl ConfirmMachine {
    /// A machine over a commit log that ends at `end`, all of it durable and confirmed (what
    /// recovery leaves), last written in `epoch`.
    pub fn new(config: ConfirmConfig, end: u64, epoch: u32, now: Millis) -> ConfirmMachine {
        let interval = match config.flush {
            FlushPolicy::Async { interval_ms, .. } => interval_ms,
            FlushPolicy::Sync => 0,
        };
        ConfirmMachine {
            config,
            epoch,
            appended: end,
            persisted: end,
            persisting: None,
            replicas: BTreeMap::new(),
            replicated_max: end,
            upstream: end,
            acknowledged: end,
            confirmed: end,
            flush_check_at: now.saturating_add(interval),
            thorough_at: now,
            actions: VecDeque::new(),
        }
    }

    /// A machine over a commit log that ends at `end`, all of it durable, confirmed (and
    /// acknowledged) only up to `confirmed`: a store just cut back, whose confirm offset is
    /// its master's.
    pub fn resume(
        config: ConfirmConfig,
        end: u64,
        confirmed: u64,
        epoch: u32,
        now: Millis,
    ) -> ConfirmMachine {
        assert!(confirmed <= end, "confirmed {confirmed} past the end {end}");
        let mut machine = ConfirmMachine::new(config, end, epoch, now);
        (machine.confirmed, machine.acknowledged, machine.upstream) =
            (confirmed, confirmed, confirmed);
        machine.replicated_max = confirmed;
        machine
    }

    pub fn config(&self) -> &ConfirmConfig {
        &self.config
    }

    /// Producers may be answered for records ending at or below this.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Consumers may see records ending at or below this.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Everything below this is durable.
    pub fn persisted(&self) -> u64 {
        self.persisted
    }

    /// Replicas connected, and the furthest any of them holds the log (0 with none).
    pub fn replicas(&self) -> (usize, u64) {
        (self.replicas.len(), self.replicas.values().copied().max().unwrap_or(0))
    }

    pub fn handle(&mut self, now: Millis, event: ConfirmEvent) {
        match event {
            ConfirmEvent::Appended { end, epoch } => {
                assert!(
                    epoch >= self.epoch,
                    "an append of epoch {epoch} after epoch {}",
                    self.epoch
                );
                self.epoch = epoch;
                self.appended = self.appended.max(end);
                if self.persists_promptly() {
                    self.ask_persist();
                }
            }
            ConfirmEvent::Persisted { offset } => {
                // A persist covers everything written when it ran, including appends whose
                // events have not arrived yet.
                self.appended = self.appended.max(offset);
                self.persisted = self.persisted.max(offset);
                self.persisting = None;
                // Appends that came while it ran wait for the next one.
                if self.persists_promptly() {
                    self.ask_persist();
                }
            }
            ConfirmEvent::ReplicaAcked { replica, offset } => {
                let held = self.replicas.entry(replica).or_insert(0);
                *held = (*held).max(offset.min(self.appended));
                self.ask_persist();
            }
            ConfirmEvent::ReplicaGone { replica } => {
                self.replicas.remove(&replica);
            }
            ConfirmEvent::UpstreamConfirmed { offset } => {
                self.upstream = self.upstream.max(offset.min(self.appended));
            }
        }
        self.tick(now);
    }

    /// The broker's role changed (controller mode): acks, replicas and the upstream bound are
    /// counted the new way from now on. What was acknowledged or confirmed stays so.
    pub fn reconfigure(&mut self, now: Millis, config: ConfirmConfig) {
        assert_eq!(config.flush, self.config.flush, "the flush policy is the store's own");
        if config.upstream_confirms && !self.config.upstream_confirms {
            self.upstream = self.confirmed;
        }
        self.config = config;
        self.tick(now);
    }

    /// Time passed: under ASYNC_FLUSH, a periodic persist may be due.
    pub fn tick(&mut self, now: Millis) {
        if let FlushPolicy::Async { interval_ms, least_bytes, thorough_ms } = self.config.flush {
            if now >= self.flush_check_at {
                self.flush_check_at = now.saturating_add(interval_ms);
                let thorough = now >= self.thorough_at.saturating_add(thorough_ms);
                let dirty = self.appended - self.persisted;
                if dirty > 0 && (dirty >= least_bytes || thorough) && self.persisting.is_none() {
                    self.ask_persist();
                }
                if thorough {
                    self.thorough_at = now;
                }
            }
        }
        self.advance();
    }

    pub fn poll_action(&mut self) -> Option<ConfirmAction> {
        self.actions.pop_front()
    }

    /// When `tick` next has work: the next ASYNC_FLUSH check; none under SYNC_FLUSH, where
    /// only events move the machine.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.config.flush {
            FlushPolicy::Async { .. } => Some(self.flush_check_at),
            FlushPolicy::Sync => None,
        }
    }

    /// Whether every append asks for a persist at once: under SYNC_FLUSH, and whenever a
    /// replica is connected, since a master sends its replicas only what is durable
    /// (docs/decisions/0003-replicate-durable-bytes-only.md).
    fn persists_promptly(&self) -> bool {
        self.config.flush == FlushPolicy::Sync || !self.replicas.is_empty()
    }

    fn ask_persist(&mut self) {
        if self.persisting.is_none() && self.appended > self.persisted {
            self.persisting = Some(self.appended);
            self.actions.push_back(ConfirmAction::Persist { up_to: self.appended });
        }
    }

    /// How far the flush policy lets a record be acknowledged or confirmed.
    pub fn durable_bound(&self) -> u64 {
        match self.config.flush {
            FlushPolicy::Sync => self.persisted,
            FlushPolicy::Async { .. } => self.appended,
        }
    }

    /// How far `acks_required` replicas hold the log (everything when none are required).
    fn replicated_bound(&self) -> u64 {
        let required = self.config.acks_required;
        if required == 0 {
            return u64::MAX;
        }
        let mut held: Vec<u64> = self.replicas.values().copied().collect();
        if held.len() < required {
            return 0;
        }
        held.sort_unstable_by(|a, b| b.cmp(a));
        held[required - 1]
    }

    fn advance(&mut self) {
        let durable = self.durable_bound();
        let replicated = self.replicated_bound();
        self.replicated_max = self.replicated_max.max(replicated.min(self.appended));
        let upstream = match self.config.upstream_confirms {
            true => self.upstream,
            false => u64::MAX,
        };
        let acknowledged = durable.min(replicated).min(upstream);
        let confirmed = match self.config.confirm_waits_for_replicas {
            true => durable.min(replicated),
            false => durable,
        }
        .min(upstream);
        // Consumers may see a record before its producer hears of it, never after.
        if confirmed > self.confirmed {
            self.confirmed = confirmed;
            self.actions.push_back(ConfirmAction::Confirm { up_to: confirmed });
        }
        if acknowledged > self.acknowledged {
            self.acknowledged = acknowledged;
            self.actions.push_back(ConfirmAction::Acknowledge { up_to: acknowledged });
        }
    }

    /// What must hold between any two events. The offsets only grow: every field that holds
    /// one is only ever raised (`max`), and each action's offset is above the one before.
    pub fn check_invariants(&self) {
        assert!(self.persisted <= self.appended, "persisted past appended");
        assert!(self.acknowledged <= self.appended, "acknowledged past appended");
        assert!(self.confirmed <= self.appended, "confirmed past appended");
        assert!(
            self.acknowledged <= self.durable_bound(),
            "acknowledged {} past what the flush policy made durable ({})",
            self.acknowledged,
            self.durable_bound()
        );
        assert!(
            self.acknowledged <= self.replicated_max,
            "acknowledged {} past what {} replicas ever held ({})",
            self.acknowledged,
            self.config.acks_required,
            self.replicated_max
        );
        assert!(self.confirmed <= self.durable_bound(), "confirmed past durable");
        if self.config.upstream_confirms {
            assert!(self.confirmed <= self.upstream, "confirmed past the master's confirm offset");
        }
        // A producer is never told of a record its consumers may not see.
        assert!(
            self.acknowledged <= self.confirmed,
            "acknowledged {} past confirmed {}",
            self.acknowledged,
            self.confirmed
        );
        if let Some(asked) = self.persisting {
            assert!(asked > self.persisted && asked <= self.appended, "a stale persist");
        }
        let mut last: [Option<u64>; 2] = [None, None];
        for action in &self.actions {
            let (slot, up_to) = match *action {
                ConfirmAction::Acknowledge { up_to } => (0, up_to),
                ConfirmAction::Confirm { up_to } => (1, up_to),
                ConfirmAction::Persist { .. } => continue,
            };
            assert!(last[slot].is_none_or(|before| before < up_to), "an action went back");
            last[slot] = Some(up_to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(machine: &mut ConfirmMachine) -> Vec<ConfirmAction> {
        machine.check_invariants();
        std::iter::from_fn(|| machine.poll_action()).collect()
    }

    use ConfirmAction::{Acknowledge, Confirm, Persist};

    #[test]
    fn sync_flush_acknowledges_after_the_persist_and_groups_appends_behind_one() {
        let mut m = ConfirmMachine::new(ConfirmConfig::sync_flush(), 50, 0, 0);
        m.handle(1, ConfirmEvent::Appended { end: 100, epoch: 0 });
        assert_eq!(drain(&mut m), [Persist { up_to: 100 }]);
        // Two more appends while the persist runs: they wait for the next one.
        m.handle(2, ConfirmEvent::Appended { end: 150, epoch: 0 });
        m.handle(2, ConfirmEvent::Appended { end: 200, epoch: 0 });
        assert_eq!(drain(&mut m), []);
        m.handle(3, ConfirmEvent::Persisted { offset: 100 });
        assert_eq!(
            drain(&mut m),
            [Persist { up_to: 200 }, Confirm { up_to: 100 }, Acknowledge { up_to: 100 }]
        );
        // The shell's persist covered more than it was asked for.
        m.handle(4, ConfirmEvent::Persisted { offset: 200 });
        assert_eq!(drain(&mut m), [Confirm { up_to: 200 }, Acknowledge { up_to: 200 }]);
        assert_eq!((m.acknowledged(), m.confirmed(), m.persisted()), (200, 200, 200));
    }

    #[test]
    fn async_flush_acknowledges_at_once_and_persists_on_its_period() {
        let mut m = ConfirmMachine::new(ConfirmConfig::async_flush(), 0, 0, 0);
        m.handle(10, ConfirmEvent::Appended { end: 1000, epoch: 0 });
        assert_eq!(drain(&mut m), [Confirm { up_to: 1000 }, Acknowledge { up_to: 1000 }]);
        assert_eq!(m.poll_timeout(), Some(500));
        // Under four pages dirty at the first check: nothing to persist yet.
        m.tick(500);
        assert_eq!(drain(&mut m), []);
        m.handle(600, ConfirmEvent::Appended { end: 20_000, epoch: 0 });
        drain(&mut m);
        m.tick(1000);
        assert_eq!(drain(&mut m), [Persist { up_to: 20_000 }]);
        m.handle(1001, ConfirmEvent::Persisted { offset: 20_000 });
        assert_eq!(drain(&mut m), []);
        // A little more, then the thorough interval persists it anyway.
        m.handle(1100, ConfirmEvent::Appended { end: 20_100, epoch: 0 });
        drain(&mut m);
        for now in (1500..10_000).step_by(500) {
            m.tick(now);
            assert_eq!(drain(&mut m), [], "at {now}");
        }
        m.tick(10_000);
        assert_eq!(drain(&mut m), [Persist { up_to: 20_100 }]);
    }

    #[test]
    fn a_sync_master_acknowledges_what_its_replica_holds_and_confirms_on_the_flush() {
        let config = ConfirmConfig { acks_required: 1, ..ConfirmConfig::sync_flush() };
        let mut m = ConfirmMachine::new(config, 0, 0, 0);
        m.handle(1, ConfirmEvent::Appended { end: 100, epoch: 0 });
        m.handle(2, ConfirmEvent::Persisted { offset: 100 });
        assert_eq!(drain(&mut m), [Persist { up_to: 100 }, Confirm { up_to: 100 }]);
        m.handle(3, ConfirmEvent::ReplicaAcked { replica: 1, offset: 60 });
        assert_eq!(drain(&mut m), [Acknowledge { up_to: 60 }]);
        m.handle(4, ConfirmEvent::ReplicaGone { replica: 1 });
        m.handle(5, ConfirmEvent::ReplicaAcked { replica: 2, offset: 100 });
        assert_eq!(drain(&mut m), [Acknowledge { up_to: 100 }]);
    }

    #[test]
    fn with_a_replica_connected_asynchronous_flushes_come_at_once() {
        let mut m = ConfirmMachine::new(ConfirmConfig::async_flush(), 0, 0, 0);
        m.handle(1, ConfirmEvent::Appended { end: 100, epoch: 0 });
        assert_eq!(drain(&mut m), [Confirm { up_to: 100 }, Acknowledge { up_to: 100 }]);
        // A replica arrives: what is not durable yet is persisted now, and so is every append.
        m.handle(2, ConfirmEvent::ReplicaAcked { replica: 1, offset: 0 });
        assert_eq!(drain(&mut m), [Persist { up_to: 100 }]);
        m.handle(3, ConfirmEvent::Appended { end: 150, epoch: 0 });
        assert_eq!(drain(&mut m), [Confirm { up_to: 150 }, Acknowledge { up_to: 150 }]);
        m.handle(4, ConfirmEvent::Persisted { offset: 100 });
        assert_eq!(drain(&mut m), [Persist { up_to: 150 }]);
        // Gone again: back to the interval.
        m.handle(5, ConfirmEvent::ReplicaGone { replica: 1 });
        m.handle(6, ConfirmEvent::Persisted { offset: 150 });
        m.handle(7, ConfirmEvent::Appended { end: 200, epoch: 0 });
        assert_eq!(drain(&mut m), [Confirm { up_to: 200 }, Acknowledge { up_to: 200 }]);
        m.check_invariants();
    }

    #[test]
    fn with_all_acks_required_consumers_wait_for_the_slowest_needed_replica() {
        let config = ConfirmConfig {
            acks_required: 2,
            confirm_waits_for_replicas: true,
            ..ConfirmConfig::async_flush()
        };
        let mut m = ConfirmMachine::new(config, 0, 3, 0);
        m.handle(1, ConfirmEvent::Appended { end: 100, epoch: 3 });
        m.handle(2, ConfirmEvent::ReplicaAcked { replica: 1, offset: 100 });
        assert_eq!(drain(&mut m), [Persist { up_to: 100 }], "a replica makes flushes prompt");
        m.handle(3, ConfirmEvent::ReplicaAcked { replica: 2, offset: 40 });
        assert_eq!(drain(&mut m), [Confirm { up_to: 40 }, Acknowledge { up_to: 40 }]);
    }

    /// A controller-mode slave confirms (and so dispatches) only what its master confirmed;
    /// made master, it confirms its whole durable log at once.
    #[test]
    fn a_slave_confirms_no_further_than_its_master() {
        let config = ConfirmConfig { upstream_confirms: true, ..ConfirmConfig::async_flush() };
        let mut m = ConfirmMachine::new(config, 0, 1, 0);
        m.handle(1, ConfirmEvent::Appended { end: 100, epoch: 1 });
        assert_eq!(drain(&mut m), []);
        m.handle(2, ConfirmEvent::UpstreamConfirmed { offset: 60 });
        assert_eq!(drain(&mut m), [Confirm { up_to: 60 }, Acknowledge { up_to: 60 }]);
        m.handle(3, ConfirmEvent::UpstreamConfirmed { offset: 500 });
        assert_eq!(drain(&mut m), [Confirm { up_to: 100 }, Acknowledge { up_to: 100 }]);
        m.handle(4, ConfirmEvent::Appended { end: 150, epoch: 1 });
        assert_eq!(drain(&mut m), []);
        m.reconfigure(5, ConfirmConfig::async_flush());
        assert_eq!(drain(&mut m), [Confirm { up_to: 150 }, Acknowledge { up_to: 150 }]);
    }

    #[test]
    #[should_panic(expected = "an append of epoch 1 after epoch 2")]
    fn an_append_from_an_older_epoch_is_a_bug() {
        let mut m = ConfirmMachine::new(ConfirmConfig::sync_flush(), 0, 2, 0);
        m.handle(1, ConfirmEvent::Appended { end: 10, epoch: 1 });
    }

    proptest::proptest! {
        /// Whatever the events, the invariants hold and acknowledgements never pass what the
        /// configuration requires to be durable and replicated.
        #[test]
        fn invariants_hold_under_any_events(
            sync in proptest::bool::ANY,
            acks_required in 0usize..3,
            waits in proptest::bool::ANY,
            steps in proptest::collection::vec((0u8..7, 0u64..400, 0u64..4), 1..60),
        ) {
            let flush = match sync {
                true => FlushPolicy::Sync,
                false => FlushPolicy::Async { interval_ms: 10, least_bytes: 50, thorough_ms: 40 },
            };
            let config = ConfirmConfig {
                flush,
                acks_required,
                confirm_waits_for_replicas: waits,
                upstream_confirms: false,
            };
            let mut m = ConfirmMachine::new(config, 0, 0, 0);
            let (mut now, mut end, mut asked) = (0, 0, None);
            let (mut acked, mut confirmed) = (0, 0);
            for (kind, amount, replica) in steps {
                now += amount % 7;
                match kind {
                    0 => { end += amount; m.handle(now, ConfirmEvent::Appended { end, epoch: 0 }) }
                    1 => if let Some(up_to) = asked.take() {
                        m.handle(now, ConfirmEvent::Persisted { offset: up_to });
                    },
                    2 => m.handle(now, ConfirmEvent::ReplicaAcked { replica, offset: amount.min(end) }),
                    3 => m.handle(now, ConfirmEvent::ReplicaGone { replica }),
                    4 => m.handle(now, ConfirmEvent::UpstreamConfirmed { offset: amount }),
                    5 => {
                        // A role change: another count of acks, the upstream bound on or off.
                        let upstream_confirms = replica % 2 == 0;
                        let acks_required = replica as usize / 2;
                        m.reconfigure(now, ConfirmConfig { acks_required, upstream_confirms, ..config });
                    }
                    _ => m.tick(now),
                }
                m.check_invariants();
                while let Some(action) = m.poll_action() {
                    match action {
                        Persist { up_to } => asked = Some(up_to),
                        Acknowledge { up_to } => { proptest::prop_assert!(up_to > acked); acked = up_to }
                        Confirm { up_to } => { proptest::prop_assert!(up_to > confirmed); confirmed = up_to }
                    }
                }
                if sync {
                    proptest::prop_assert!(acked <= m.persisted());
                }
            }
        }
    }
}
