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

use std::collections::{BTreeMap, VecDeque};

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
}

impl MasterConfig {
    pub fn new(file_bytes: u64) -> MasterConfig {
        MasterConfig {
            file_bytes,
            batch_bytes: TRANSFER_BATCH_DEFAULT_BYTES,
            heartbeat_ms: HEARTBEAT_INTERVAL_DEFAULT_MS,
            housekeeping_ms: HOUSEKEEPING_INTERVAL_DEFAULT_MS,
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
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterAction {
    /// Send `size` bytes of the commit log from `from` (all written, within one file) in one
    /// frame, then report `Sent`.
    Transfer { slave: ReplicaId, from: u64, size: u32 },
    /// Send a heartbeat frame (size 0) naming `offset`, then report `Sent`.
    Heartbeat { slave: ReplicaId, offset: u64 },
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
    last_read: Millis,
    last_write: Millis,
}

/// The master's HA state for all its slaves.
#[derive(Debug)]
pub struct HaMaster {
    config: MasterConfig,
    end: u64,
    links: BTreeMap<ReplicaId, Link>,
    actions: VecDeque<MasterAction>,
}

impl HaMaster {
    /// A master whose commit log ends at `end`.
    pub fn new(config: MasterConfig, end: u64) -> HaMaster {
        assert!(config.file_bytes > 0 && config.batch_bytes > 0, "{config:?}");
        HaMaster { config, end, links: BTreeMap::new(), actions: VecDeque::new() }
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
                let link =
                    Link { next: None, acked: 0, sending: false, last_read: now, last_write: now };
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
        }
        self.tick(now);
    }

    fn reported(&mut self, now: Millis, slave: ReplicaId, offset: u64) {
        let end = self.end;
        let file_bytes = self.config.file_bytes;
        let Some(link) = self.links.get_mut(&slave) else { return };
        link.last_read = now;
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
            link.next = Some(match offset {
                0 => end - end % file_bytes,
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
                let size = (end.min(file_end) - next).min(u64::from(config.batch_bytes)) as u32;
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
                assert!(!link.sending, "slave {slave} sent to before its first report");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
