//! The master's side of the HA connection (RocketMQ's `DefaultHAConnection`): for each slave
//! connected to the HA port, where its next transfer starts, how far it has the log, and when
//! to send a heartbeat or give the connection up. No I/O: the shell reads the commit log and
//! writes the frames the actions describe, and reports what it read from each slave.
//!
//! ```text
//!   Connected ──▶ waiting for the first report ── Reported(r) ──▶ transferring from
//!                                                                 r, or the newest file's start if r = 0
//!   transferring: Transfer(from, size) ── Sent ──▶ next Transfer, or a Heartbeat once idle for 5 s
//!   any state: nothing read for 20 s, or a report past the master's end ──▶ Close
//! ```
//!
//! Each report that moves a slave forward leaves as `ReplicaAcked` for the confirm machine;
//! a slave that leaves, as `ReplicaGone`.
//!
//! In controller mode (`MasterConfig::auto_switch`, RocketMQ's `AutoSwitchHAConnection`) the
//! slave first says hello (its broker id and flags); the master answers with where its log
//! ends and its epochs (`Answer`), and only then takes reports. A first report of 0 starts at
//! the newest file with `syncFromLastFile`, else at the log's first offset; and no frame holds
//! records of two epochs (`docs/failover.md`).

use std::collections::{BTreeMap, VecDeque};

use super::autoswitch::SlaveHello;
use super::epoch::EpochCache;
use super::{
    HEARTBEAT_INTERVAL_DEFAULT_MS, HOUSEKEEPING_INTERVAL_DEFAULT_MS, TRANSFER_BATCH_DEFAULT_BYTES,
};
use crate::confirm::ReplicaId;
use crate::Millis;

/// The master side's settings (RocketMQ's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterConfig {
    /// `mappedFileSizeCommitLog`: a frame never crosses a file boundary, and a new slave starts
    /// at the newest file.
    pub file_bytes: u64,
    /// `haTransferBatchSize`.
    pub batch_bytes: u32,
    /// `haSendHeartbeatInterval`.
    pub heartbeat_ms: Millis,
    /// `haHousekeepingInterval`.
    pub housekeeping_ms: Millis,
    /// Controller mode: the AutoSwitch handshake and epoch-bounded frames.
    pub auto_switch: bool,
}

impl MasterConfig {
    pub fn new(file_bytes: u64) -> MasterConfig {
        MasterConfig {
            file_bytes,
            batch_bytes: TRANSFER_BATCH_DEFAULT_BYTES,
            heartbeat_ms: HEARTBEAT_INTERVAL_DEFAULT_MS,
            housekeeping_ms: HOUSEKEEPING_INTERVAL_DEFAULT_MS,
            auto_switch: false,
        }
    }
}

/// What happened, as the shell saw it. A slave is named by its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterEvent {
    /// A slave connected to the HA port.
    Connected { slave: ReplicaId },
    /// A slave reported that its commit log ends at `offset`.
    Reported { slave: ReplicaId, offset: u64 },
    /// The shell finished writing the last frame asked of it for this slave.
    Sent { slave: ReplicaId },
    /// The connection closed (either side, or a write failed).
    Closed { slave: ReplicaId },
    /// The master's commit log now ends at `end`.
    Appended { end: u64 },
    /// A slave said hello (controller mode).
    Hello { slave: ReplicaId, hello: SlaveHello },
    /// The master's log now begins at `min` and holds these epochs (controller mode; given
    /// before the `Appended` of a new epoch's first record).
    Log { min: u64, epochs: EpochCache },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterAction {
    /// Send `size` bytes of the commit log from `from` (all written, within one file) in one
    /// frame, then report `Sent`.
    Transfer { slave: ReplicaId, from: u64, size: u32 },
    /// Send a heartbeat frame (size 0) naming `offset`, then report `Sent`.
    Heartbeat { slave: ReplicaId, offset: u64 },
    /// Answer a slave's hello with the log's end `end` and the epochs up to it, then report
    /// `Sent` (controller mode).
    Answer { slave: ReplicaId, end: u64 },
    /// Close the connection; `why` goes to the log.
    Close { slave: ReplicaId, why: String },
    /// The slave has the log up to `offset`: for the confirm machine.
    ReplicaAcked { slave: ReplicaId, offset: u64 },
    /// The slave is gone: for the confirm machine.
    ReplicaGone { slave: ReplicaId },
}

#[derive(Debug, Clone)]
struct Link {
    /// Where the next frame starts; `None` until the slave's first report.
    next: Option<u64>,
    /// How far the slave has the log, by its reports.
    acked: u64,
    /// A frame is being written: nothing more until `Sent`.
    sending: bool,
    /// The slave's hello (controller mode: no report counts before it).
    hello: Option<SlaveHello>,
    last_read: Millis,
    last_write: Millis,
}

/// The master's HA state for all its slaves.
#[derive(Debug)]
pub struct HaMaster {
    config: MasterConfig,
    end: u64,
    /// Controller mode: where the log begins and its epochs.
    log_min: u64,
    epochs: EpochCache,
    links: BTreeMap<ReplicaId, Link>,
    actions: VecDeque<MasterAction>,
}

impl HaMaster {
    /// A master whose commit log ends at `end`.
    pub fn new(config: MasterConfig, end: u64) -> HaMaster {
        assert!(config.file_bytes > 0 && config.batch_bytes > 0, "{config:?}");
        HaMaster {
            config,
            end,
            log_min: 0,
            epochs: EpochCache::default(),
            links: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// How far `slave` has the log, by its reports.
    pub fn acked(&self, slave: ReplicaId) -> Option<u64> {
        self.links.get(&slave).map(|link| link.acked)
    }

    /// Slaves connected.
    pub fn slaves(&self) -> usize {
        self.links.len()
    }

    pub fn handle(&mut self, now: Millis, event: MasterEvent) {
        match event {
            MasterEvent::Connected { slave } => {
                let link = Link {
                    next: None,
                    acked: 0,
                    sending: false,
                    hello: None,
                    last_read: now,
                    last_write: now,
                };
                let known = self.links.insert(slave, link).is_some();
                assert!(!known, "connection {slave} reported connected twice");
            }
            MasterEvent::Reported { slave, offset } => self.reported(now, slave, offset),
            MasterEvent::Sent { slave } => {
                if let Some(link) = self.links.get_mut(&slave) {
                    link.sending = false;
                }
            }
            MasterEvent::Closed { slave } => {
                if self.links.remove(&slave).is_some() {
                    self.actions.push_back(MasterAction::ReplicaGone { slave });
                }
            }
            MasterEvent::Appended { end } => self.end = self.end.max(end),
            MasterEvent::Hello { slave, hello } => self.hello(now, slave, hello),
            MasterEvent::Log { min, epochs } => (self.log_min, self.epochs) = (min, epochs),
        }
        self.tick(now);
    }

    /// A slave's hello: answered once, and only in controller mode.
    fn hello(&mut self, now: Millis, slave: ReplicaId, hello: SlaveHello) {
        let auto_switch = self.config.auto_switch;
        let Some(link) = self.links.get_mut(&slave) else { return };
        link.last_read = now;
        let why = match (auto_switch, link.hello.is_some()) {
            (false, _) => {
                "a handshake on a classic HA port (this master is not in controller mode)"
            }
            (true, true) => "a second handshake on one connection",
            (true, false) => {
                link.hello = Some(hello);
                link.sending = true;
                link.last_write = now;
                self.actions.push_back(MasterAction::Answer { slave, end: self.end });
                return;
            }
        };
        self.drop_link(slave, format!("slave {slave}: {why}"));
    }

    fn reported(&mut self, now: Millis, slave: ReplicaId, offset: u64) {
        let end = self.end;
        let file_bytes = self.config.file_bytes;
        let (auto_switch, log_min) = (self.config.auto_switch, self.log_min);
        let Some(link) = self.links.get_mut(&slave) else { return };
        link.last_read = now;
        if auto_switch && link.hello.is_none() {
            let why = format!("slave {slave} reported before its handshake");
            self.drop_link(slave, why);
            return;
        }
        if offset > end {
            let why = format!(
                "slave {slave} reports its commit log ends at {offset}, past this master's end \
                 {end}: it holds records this master never wrote"
            );
            self.drop_link(slave, why);
            return;
        }
        // The first report counts even at 0: the slave is there to wait for (RocketMQ's
        // `isSlaveOK` counts connections).
        let first = link.next.is_none();
        if first {
            let from_last_file = link.hello.is_none_or(|hello| hello.sync_from_last_file);
            link.next = Some(match offset {
                0 if from_last_file => end - end % file_bytes,
                0 => log_min.min(end),
                _ => offset,
            });
        }
        if first || offset > link.acked {
            link.acked = offset;
            self.actions.push_back(MasterAction::ReplicaAcked { slave, offset });
        }
    }

    /// Closes the connection and forgets the slave.
    fn drop_link(&mut self, slave: ReplicaId, why: String) {
        self.links.remove(&slave);
        self.actions.push_back(MasterAction::Close { slave, why });
        self.actions.push_back(MasterAction::ReplicaGone { slave });
    }

    /// Time passed: transfers, heartbeats and housekeeping that are due.
    pub fn tick(&mut self, now: Millis) {
        let silent: Vec<ReplicaId> = self
            .links
            .iter()
            .filter(|(_, link)| now.saturating_sub(link.last_read) > self.config.housekeeping_ms)
            .map(|(slave, _)| *slave)
            .collect();
        for slave in silent {
            let why = format!("slave {slave} sent nothing for {} ms", self.config.housekeeping_ms);
            self.drop_link(slave, why);
        }
        let (end, config) = (self.end, self.config);
        for (&slave, link) in &mut self.links {
            let Some(next) = link.next.filter(|_| !link.sending) else { continue };
            if next < end {
                let file_end = next - next % config.file_bytes + config.file_bytes;
                // The next epoch's records go in frames of their own.
                let epoch_end = (self.epochs.entries().iter())
                    .find(|e| e.start as u64 > next)
                    .map_or(end, |e| e.start as u64);
                let stop = end.min(file_end).min(epoch_end);
                let size = (stop - next).min(u64::from(config.batch_bytes)) as u32;
                link.next = Some(next + u64::from(size));
                self.actions.push_back(MasterAction::Transfer { slave, from: next, size });
            } else if now.saturating_sub(link.last_write) >= config.heartbeat_ms {
                self.actions.push_back(MasterAction::Heartbeat { slave, offset: next });
            } else {
                continue;
            }
            link.sending = true;
            link.last_write = now;
        }
    }

    pub fn poll_action(&mut self) -> Option<MasterAction> {
        self.actions.pop_front()
    }

    /// When `tick` next has work without any event: a heartbeat or a housekeeping check.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let config = &self.config;
        self.links
            .values()
            .flat_map(|link| {
                let heartbeat = (link.next.is_some() && !link.sending)
                    .then(|| link.last_write.saturating_add(config.heartbeat_ms));
                let silent = link.last_read.saturating_add(config.housekeeping_ms + 1);
                heartbeat.into_iter().chain([silent])
            })
            .min()
    }

    pub fn check_invariants(&self) {
        for (slave, link) in &self.links {
            assert!(link.acked <= self.end, "slave {slave} acked {} past {}", link.acked, self.end);
            if let Some(next) = link.next {
                assert!(next <= self.end, "slave {slave} next {next} past {}", self.end);
            } else {
                // Before the first report only the answer to a hello is sent.
                let answering = link.sending && link.hello.is_some();
                assert!(
                    !link.sending || answering,
                    "slave {slave} sent to before its first report"
                );
            }
            if self.config.auto_switch && link.hello.is_none() {
                assert!(link.next.is_none(), "slave {slave} served before its handshake");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::epoch::EpochEntry;

    const FILE: u64 = 1000;

    fn master(end: u64) -> HaMaster {
        HaMaster::new(MasterConfig { batch_bytes: 300, ..MasterConfig::new(FILE) }, end)
    }

    fn drain(master: &mut HaMaster) -> Vec<MasterAction> {
        master.check_invariants();
        std::iter::from_fn(|| master.poll_action()).collect()
    }

    fn transfer(slave: ReplicaId, from: u64, size: u32) -> MasterAction {
        MasterAction::Transfer { slave, from, size }
    }

    #[test]
    fn nothing_is_sent_before_the_first_report_then_batches_follow_the_log() {
        let mut m = master(2500);
        m.handle(0, MasterEvent::Connected { slave: 1 });
        assert_eq!(drain(&mut m), []);
        m.handle(1, MasterEvent::Reported { slave: 1, offset: 1900 });
        let ack = MasterAction::ReplicaAcked { slave: 1, offset: 1900 };
        // The first frame stops at the file boundary, 2000; one frame at a time.
        assert_eq!(drain(&mut m), [ack, transfer(1, 1900, 100)]);
        m.tick(1);
        assert_eq!(drain(&mut m), [], "the frame is still being sent");
        m.handle(2, MasterEvent::Sent { slave: 1 });
        assert_eq!(drain(&mut m), [transfer(1, 2000, 300)]);
        m.handle(3, MasterEvent::Sent { slave: 1 });
        assert_eq!(drain(&mut m), [transfer(1, 2300, 200)]);
        m.handle(4, MasterEvent::Sent { slave: 1 });
        assert_eq!(drain(&mut m), []);
        // More log, more frames.
        m.handle(5, MasterEvent::Appended { end: 2600 });
        assert_eq!(drain(&mut m), [transfer(1, 2500, 100)]);
    }

    #[test]
    fn an_empty_slave_starts_at_the_newest_file() {
        let mut m = master(2500);
        m.handle(0, MasterEvent::Connected { slave: 7 });
        m.handle(0, MasterEvent::Reported { slave: 7, offset: 0 });
        let ack = MasterAction::ReplicaAcked { slave: 7, offset: 0 };
        assert_eq!(drain(&mut m), [ack.clone(), transfer(7, 2000, 300)]);
        let mut m = master(0);
        m.handle(0, MasterEvent::Connected { slave: 7 });
        m.handle(0, MasterEvent::Reported { slave: 7, offset: 0 });
        assert_eq!(drain(&mut m), [ack]);
        m.handle(1, MasterEvent::Appended { end: 10 });
        assert_eq!(drain(&mut m), [transfer(7, 0, 10)]);
    }

    #[test]
    fn a_slave_ahead_of_the_master_is_closed() {
        let mut m = master(500);
        m.handle(0, MasterEvent::Connected { slave: 2 });
        m.handle(0, MasterEvent::Reported { slave: 2, offset: 501 });
        let actions = drain(&mut m);
        assert!(
            matches!(&actions[0], MasterAction::Close { slave: 2, why } if why.contains("past this master's end 500"))
        );
        assert_eq!(actions[1], MasterAction::ReplicaGone { slave: 2 });
        assert_eq!(m.slaves(), 0);
    }

    #[test]
    fn heartbeats_when_idle_and_housekeeping_when_silent() {
        let mut m = master(100);
        m.handle(0, MasterEvent::Connected { slave: 1 });
        m.handle(0, MasterEvent::Reported { slave: 1, offset: 100 });
        assert_eq!(drain(&mut m), [MasterAction::ReplicaAcked { slave: 1, offset: 100 }]);
        assert_eq!(m.poll_timeout(), Some(5_000));
        m.tick(4_999);
        assert_eq!(drain(&mut m), []);
        m.tick(5_000);
        assert_eq!(drain(&mut m), [MasterAction::Heartbeat { slave: 1, offset: 100 }]);
        m.handle(5_001, MasterEvent::Sent { slave: 1 });
        m.handle(6_000, MasterEvent::Reported { slave: 1, offset: 100 });
        assert_eq!(drain(&mut m), [], "a report that moves nothing acks nothing");
        m.tick(26_000);
        assert_eq!(drain(&mut m).len(), 1, "a heartbeat; 20 s of silence not yet passed");
        m.handle(26_000, MasterEvent::Sent { slave: 1 });
        m.tick(26_001);
        let actions = drain(&mut m);
        assert!(
            matches!(&actions[0], MasterAction::Close { slave: 1, why } if why.contains("nothing for 20000 ms"))
        );
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn reports_ack_forward_only_and_a_closed_slave_is_gone() {
        let mut m = master(1000);
        m.handle(0, MasterEvent::Connected { slave: 3 });
        m.handle(0, MasterEvent::Reported { slave: 3, offset: 400 });
        m.handle(0, MasterEvent::Reported { slave: 3, offset: 300 });
        assert_eq!(m.acked(3), Some(400));
        let acks: Vec<_> = drain(&mut m)
            .into_iter()
            .filter(|a| matches!(a, MasterAction::ReplicaAcked { .. }))
            .collect();
        assert_eq!(acks, [MasterAction::ReplicaAcked { slave: 3, offset: 400 }]);
        m.handle(1, MasterEvent::Closed { slave: 3 });
        assert_eq!(drain(&mut m), [MasterAction::ReplicaGone { slave: 3 }]);
        m.handle(2, MasterEvent::Closed { slave: 3 });
        assert_eq!(drain(&mut m), [], "gone once");
    }

    fn auto_master(end: u64) -> HaMaster {
        let config =
            MasterConfig { batch_bytes: 300, auto_switch: true, ..MasterConfig::new(FILE) };
        let mut m = HaMaster::new(config, end);
        let entries = [(1, 1200), (2, 2150)].map(|(epoch, start)| EpochEntry { epoch, start });
        let epochs = EpochCache::from_entries(entries.to_vec()).unwrap();
        m.handle(0, MasterEvent::Log { min: 1000, epochs });
        m
    }

    fn hello(sync_from_last_file: bool) -> SlaveHello {
        SlaveHello { broker_id: 2, sync_from_last_file, async_learner: false }
    }

    /// Controller mode: a hello is answered before any report counts; a report of 0 starts at
    /// the log's first offset (or its newest file with syncFromLastFile); no frame crosses an
    /// epoch's start.
    #[test]
    fn controller_mode_answers_a_hello_then_sends_each_epoch_in_its_own_frames() {
        let mut m = auto_master(2500);
        m.handle(0, MasterEvent::Connected { slave: 1 });
        m.handle(1, MasterEvent::Hello { slave: 1, hello: hello(false) });
        assert_eq!(drain(&mut m), [MasterAction::Answer { slave: 1, end: 2500 }]);
        m.handle(2, MasterEvent::Sent { slave: 1 });
        m.handle(3, MasterEvent::Reported { slave: 1, offset: 0 });
        let ack = MasterAction::ReplicaAcked { slave: 1, offset: 0 };
        assert_eq!(drain(&mut m), [ack, transfer(1, 1000, 200)]);
        let mut sent = Vec::new();
        for now in 4..20 {
            m.handle(now, MasterEvent::Sent { slave: 1 });
            sent.extend(drain(&mut m));
        }
        let expected = [transfer(1, 1200, 300), transfer(1, 1500, 300), transfer(1, 1800, 200)];
        assert_eq!(sent[..3], expected, "epoch 1 up to the file's end");
        assert_eq!(sent[3..5], [transfer(1, 2000, 150), transfer(1, 2150, 300)], "epoch 2 apart");

        let mut m = auto_master(2500);
        m.handle(0, MasterEvent::Connected { slave: 1 });
        m.handle(1, MasterEvent::Hello { slave: 1, hello: hello(true) });
        m.handle(2, MasterEvent::Sent { slave: 1 });
        m.handle(3, MasterEvent::Reported { slave: 1, offset: 0 });
        assert_eq!(drain(&mut m)[2], transfer(1, 2000, 150), "the newest file, up to epoch 2");
    }

    /// A report before the hello, a second hello, or a hello on a classic port closes.
    #[test]
    fn handshakes_out_of_order_close_the_connection() {
        let closes = |m: &mut HaMaster, what: &str| {
            let actions = drain(m);
            let closed = actions
                .iter()
                .any(|a| matches!(a, MasterAction::Close { why, .. } if why.contains(what)));
            assert!(closed, "{what}: {actions:?}");
        };
        let mut m = auto_master(2500);
        m.handle(0, MasterEvent::Connected { slave: 1 });
        m.handle(1, MasterEvent::Reported { slave: 1, offset: 5 });
        closes(&mut m, "before its handshake");
        m.handle(2, MasterEvent::Connected { slave: 2 });
        m.handle(3, MasterEvent::Hello { slave: 2, hello: hello(false) });
        m.handle(4, MasterEvent::Hello { slave: 2, hello: hello(false) });
        closes(&mut m, "a second handshake");
        let mut m = master(100);
        m.handle(0, MasterEvent::Connected { slave: 1 });
        m.handle(1, MasterEvent::Hello { slave: 1, hello: hello(false) });
        closes(&mut m, "not in controller mode");
    }

    proptest::proptest! {
        /// Whatever the order of appends, acknowledgements of sends and the passing of time,
        /// one slave's frames cover the log from where it started, in order, each within one
        /// file and one batch, and its acks only move forward.
        #[test]
        fn frames_cover_the_log_in_order(
            steps in proptest::collection::vec((0u8..3, 1u64..900), 1..120),
            start in 0u64..5000,
        ) {
            let mut m = master(5000);
            m.handle(0, MasterEvent::Connected { slave: 1 });
            m.handle(0, MasterEvent::Reported { slave: 1, offset: start });
            let mut expected = if start == 0 { 5000 } else { start };
            let mut end = 5000;
            let mut now = 0;
            for (kind, amount) in steps {
                match kind {
                    0 => {
                        end += amount;
                        m.handle(now, MasterEvent::Appended { end });
                    }
                    1 => m.handle(now, MasterEvent::Sent { slave: 1 }),
                    _ => {
                        now += amount;
                        m.handle(now, MasterEvent::Reported { slave: 1, offset: expected.min(end) });
                    }
                }
                for action in drain(&mut m) {
                    match action {
                        MasterAction::Transfer { from, size, .. } => {
                            proptest::prop_assert_eq!(from, expected);
                            proptest::prop_assert!(size > 0 && size <= 300);
                            proptest::prop_assert_eq!(from / FILE, (from + u64::from(size) - 1) / FILE);
                            expected += u64::from(size);
                        }
                        MasterAction::Heartbeat { offset, .. } => proptest::prop_assert_eq!(offset, expected),
                        MasterAction::ReplicaAcked { offset, .. } => proptest::prop_assert!(offset <= end),
                        other => proptest::prop_assert!(false, "{:?}", other),
                    }
                }
            }
        }
    }
}
