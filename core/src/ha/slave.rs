//! The slave's side of the HA connection (RocketMQ's `DefaultHAClient`), with one difference:
//! RocketMQ's slave appends whatever bytes arrive, and Petrel's appends only whole records that
//! pass the checks recovery makes, holding a record cut by a frame's end until the rest comes.
//! No I/O: the shell owns the socket and the store, feeds each frame in, appends what the
//! `Append` actions carry (then reports `Appended`), and writes the reports.
//!
//! Contract with the shell: an `Append` is carried out (or the connection closed) before the
//! next event, so the store's end and the bytes handed to it never differ when a frame arrives.
//!
//! In controller mode (`SlaveConfig::hello`, RocketMQ's `AutoSwitchHAClient`) the slave says
//! hello first; from the master's answer it finds the consistent point of the two logs and,
//! if its own log goes further, asks the shell to `Truncate` there before it reports. Each
//! frame then names its epoch: an older epoch than the slave's newest closes the connection,
//! a newer one begins in the store with the frame's records (`docs/failover.md`).

use std::collections::VecDeque;

use super::autoswitch::{MasterHello, SlaveHello};
use super::codec::Transfer;
use super::epoch::{EpochCache, EpochEntry};
use super::{HEARTBEAT_INTERVAL_DEFAULT_MS, HOUSEKEEPING_INTERVAL_DEFAULT_MS};
use crate::record::{scan_record, Checks, Invalid, Scanned, MAGIC_BLANK};
use crate::Millis;

/// The slave side's settings (RocketMQ's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveConfig {
    /// `mappedFileSizeCommitLog`, the same as the master's.
    pub file_bytes: u64,
    /// The longest record (or batch, or blank filler, which is shorter than the record that did
    /// not fit) the store writes, headers included: a longer one closes the connection, so the
    /// bytes held for one record are bounded.
    pub record_bytes_max: u64,
    /// `haSendHeartbeatInterval`: the longest the slave goes without reporting.
    pub heartbeat_ms: Millis,
    /// `haHousekeepingInterval`.
    pub housekeeping_ms: Millis,
    /// Controller mode: the hello this slave sends (its broker id and flags).
    pub hello: Option<SlaveHello>,
    /// Controller mode: the master epoch the controller named; a master whose newest epoch is
    /// older is a deposed one.
    pub master_epoch: i32,
}

impl SlaveConfig {
    pub fn new(file_bytes: u64, record_bytes_max: u64) -> SlaveConfig {
        SlaveConfig {
            file_bytes,
            record_bytes_max,
            heartbeat_ms: HEARTBEAT_INTERVAL_DEFAULT_MS,
            housekeeping_ms: HOUSEKEEPING_INTERVAL_DEFAULT_MS,
            hello: None,
            master_epoch: 0,
        }
    }
}

/// What happened, as the shell saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaveEvent {
    /// The connection to the master is up.
    Connected,
    /// A frame came from the master.
    Received(Transfer),
    /// The store appended what it was handed: its commit log ends at `end`.
    Appended { end: u64 },
    /// The master answered the hello (controller mode).
    Answered(MasterHello),
    /// The store was cut back as asked: its commit log ends at `end`.
    Truncated { end: u64 },
    /// The connection is down (closed by either side, or an append failed).
    Disconnected,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaveAction {
    /// Send the report that the commit log ends at `offset`.
    Report { offset: u64 },
    /// Send the hello (controller mode).
    Hello(SlaveHello),
    /// Append these whole, verified records (a blank filler among them ends its file) at
    /// `offset`, the store's end, written in `epoch` (controller mode; a newer epoch than the
    /// store's newest begins there); then report `Appended`.
    Append { offset: u64, records: Vec<u8>, epoch: Option<EpochEntry> },
    /// Cut the store back to `to` (the consistent point), then report `Truncated`.
    Truncate { to: u64 },
    /// The master's confirm offset, as far as this slave holds the log (controller mode).
    Confirm { up_to: u64 },
    /// Close the connection; `why` goes to the log. Nothing more of it is appended.
    Close { why: String },
}

/// The slave's HA state.
#[derive(Debug)]
pub struct HaSlave {
    config: SlaveConfig,
    /// Where the store's commit log ends.
    end: u64,
    /// Where the bytes handed to the store end (`end` once the store has them).
    handed: u64,
    /// Bytes received after `handed` that do not yet make a whole record.
    held: Vec<u8>,
    connected: bool,
    /// Controller mode: this store's epochs; whether the handshake is done, or a truncation
    /// asked for.
    epochs: EpochCache,
    handshaken: bool,
    truncating: bool,
    /// The last confirm offset passed on.
    confirmed: u64,
    reported: u64,
    last_read: Millis,
    last_report: Millis,
    actions: VecDeque<SlaveAction>,
}

impl HaSlave {
    /// A slave whose commit log ends at `end` (0: empty).
    pub fn new(config: SlaveConfig, end: u64) -> HaSlave {
        assert!(config.file_bytes > 0, "{config:?}");
        HaSlave {
            config,
            end,
            handed: end,
            held: Vec::new(),
            connected: false,
            epochs: EpochCache::default(),
            handshaken: false,
            truncating: false,
            confirmed: 0,
            reported: 0,
            last_read: 0,
            last_report: 0,
            actions: VecDeque::new(),
        }
    }

    /// A slave whose store holds these epochs (controller mode).
    pub fn with_epochs(mut self, epochs: EpochCache) -> HaSlave {
        self.epochs = epochs;
        self
    }

    /// Where the store's commit log ends.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes held for a record not yet whole.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn handle(&mut self, now: Millis, event: SlaveEvent) {
        match event {
            SlaveEvent::Connected => {
                self.connected = true;
                self.last_read = now;
                match self.config.hello {
                    Some(hello) => {
                        self.last_report = now;
                        self.actions.push_back(SlaveAction::Hello(hello));
                    }
                    None => self.report(now),
                }
            }
            SlaveEvent::Answered(answer) => {
                if self.connected {
                    self.last_read = now;
                    self.answered(now, answer);
                }
            }
            SlaveEvent::Truncated { end } => {
                assert!(self.truncating && end <= self.end, "truncated to {end} unasked");
                (self.end, self.handed, self.truncating) = (end, end, false);
                self.reported = self.reported.min(end);
                self.epochs.truncate_suffix(end as i64);
                self.confirmed = self.confirmed.min(end);
                if self.connected {
                    self.handshaken = true;
                    self.report(now);
                }
            }
            SlaveEvent::Received(transfer) => {
                if self.connected {
                    self.last_read = now;
                    if let Err(why) = self.received(transfer) {
                        self.close(why);
                    }
                }
            }
            SlaveEvent::Appended { end } => {
                assert!(
                    end >= self.end && end <= self.handed,
                    "the store ends at {end}, outside {}..={}",
                    self.end,
                    self.handed
                );
                self.end = end;
                if self.connected && end > self.reported {
                    self.report(now);
                }
            }
            SlaveEvent::Disconnected => self.disconnect(),
        }
        self.tick(now);
    }

    /// The master's answer: cut back to the consistent point if this log goes past it.
    fn answered(&mut self, now: Millis, answer: MasterHello) {
        if self.config.hello.is_none() || self.handshaken || self.truncating {
            return self.close("the master answered a handshake this slave did not send".into());
        }
        let named = self.config.master_epoch;
        if answer.epochs.last_epoch().is_none_or(|theirs| theirs < named) && named > 0 {
            return self.close(format!(
                "the master's newest epoch {:?} is older than epoch {named}, which the \
                 controller named: a deposed master, not followed",
                answer.epochs.last_epoch()
            ));
        }
        if self.epochs.entries().is_empty() {
            // A new replica: nothing to compare, nothing to cut.
            self.handshaken = true;
            return self.report(now);
        }
        let (ours, theirs) = (self.epochs.last_epoch(), answer.epochs.last_epoch());
        if theirs < ours {
            // A deposed master that does not know it yet: following it would cut records of
            // a newer epoch.
            return self.close(format!(
                "the master's newest epoch {theirs:?} is older than this log's {ours:?}: a \
                 deposed master, not followed"
            ));
        }
        let (end, master_end) = (self.end as i64, answer.end as i64);
        // Two logs that begin at the same offset but share no epoch share nothing but their
        // start: this log's records are of epochs the master never held, so none was ever
        // confirmed (a master is elected from the sync-state set, and a record is confirmed
        // once every member holds it); it is cut back to its start and copied afresh.
        let (first, master_first) =
            (self.epochs.entries().first(), answer.epochs.entries().first());
        let same_start = match (first, master_first) {
            (Some(ours), Some(theirs)) if ours.start == theirs.start => Some(ours.start),
            _ => None,
        };
        let point = self.epochs.consistent_point(end, &answer.epochs, master_end).or(same_start);
        match point {
            None => self.close(format!(
                "no epoch in common with the master (this log: {:?} to {end}; the master's: \
                 {:?} to {master_end}); clear this broker's store to copy the master afresh",
                self.epochs.entries(),
                answer.epochs.entries()
            )),
            Some(point) if (point as u64) < self.end => {
                self.truncating = true;
                self.actions.push_back(SlaveAction::Truncate { to: point as u64 });
            }
            Some(_) => {
                self.handshaken = true;
                self.report(now);
            }
        }
    }

    fn report(&mut self, now: Millis) {
        self.reported = self.end;
        self.last_report = now;
        self.actions.push_back(SlaveAction::Report { offset: self.end });
    }

    fn close(&mut self, why: String) {
        self.actions.push_back(SlaveAction::Close { why });
        self.disconnect();
    }

    /// A new connection starts from the store's end: whatever was held is asked for again.
    fn disconnect(&mut self) {
        self.connected = false;
        self.handshaken = false;
        self.held.clear();
        self.handed = self.end;
    }

    fn received(&mut self, transfer: Transfer) -> Result<(), String> {
        if self.config.hello.is_some() && (!self.handshaken || self.truncating) {
            return Err("the master sent data before the handshake was done".into());
        }
        let expected = self.handed + self.held.len() as u64;
        let empty = self.end == 0 && self.handed == 0 && self.held.is_empty();
        if empty && transfer.offset.is_multiple_of(self.config.file_bytes) {
            // An empty slave's log starts where the master's first frame does.
            self.end = transfer.offset;
            self.handed = transfer.offset;
        } else if transfer.offset != expected {
            return Err(format!(
                "the master sent bytes from {}, but this slave's log ends at {expected}",
                transfer.offset
            ));
        }
        let epoch = self.frame_epoch(&transfer)?;
        if transfer.data.is_empty() && !self.held.is_empty() {
            // A master sends a heartbeat only once it has sent everything it has, and what it
            // has ends with a whole record: a record still incomplete has a damaged length.
            return Err(format!(
                "the master has nothing more to send, but the record at {} is incomplete \
                 ({} bytes held): its length must be damaged",
                self.handed,
                self.held.len()
            ));
        }
        // The frame's bytes move in, and whole records move out, without a copy unless a record
        // is cut by the frame's end.
        match self.held.is_empty() {
            true => self.held = transfer.data,
            false => self.held.extend_from_slice(&transfer.data),
        }
        let whole = self.whole_records()?;
        if whole > 0 {
            let records = match whole == self.held.len() {
                true => std::mem::take(&mut self.held),
                false => self.held.drain(..whole).collect(),
            };
            self.actions.push_back(SlaveAction::Append { offset: self.handed, records, epoch });
            self.handed += whole as u64;
        }
        if let Some(confirm) = transfer.confirm.map(|c| c.min(self.handed)) {
            if confirm > self.confirmed {
                self.confirmed = confirm;
                self.actions.push_back(SlaveAction::Confirm { up_to: confirm });
            }
        }
        Ok(())
    }

    /// Controller mode: the frame's epoch, checked against this log's, and taken as its newest
    /// when newer. `None` on the classic protocol.
    fn frame_epoch(&mut self, transfer: &Transfer) -> Result<Option<EpochEntry>, String> {
        if self.config.hello.is_none() {
            return Ok(None);
        }
        let Some(epoch) = transfer.epoch else {
            return Err("a frame without its epoch on a controller-mode connection".into());
        };
        let last = self.epochs.last();
        match last.map(|last| epoch.epoch.cmp(&last.epoch)) {
            Some(std::cmp::Ordering::Less) => Err(format!(
                "the master sent epoch {} but this log is at epoch {}: a deposed master",
                epoch.epoch,
                last.map_or(-1, |l| l.epoch)
            )),
            Some(std::cmp::Ordering::Equal) => Ok(Some(epoch)),
            _ if transfer.data.is_empty() => Ok(Some(epoch)),
            _ => {
                let here = self.handed + self.held.len() as u64;
                if !self.held.is_empty() || epoch.start as u64 > here {
                    return Err(format!(
                        "epoch {} starts at {}, but this log's bytes end at {here}",
                        epoch.epoch, epoch.start
                    ));
                }
                self.epochs.append(epoch.epoch, epoch.start).map_err(|e| e.to_string())?;
                Ok(Some(epoch))
            }
        }
    }

    /// How many held bytes, from the start, are whole records that pass every check.
    fn whole_records(&self) -> Result<usize, String> {
        let file_bytes = self.config.file_bytes;
        let mut at = 0usize;
        while at < self.held.len() {
            let position = self.handed + at as u64;
            let to_file_end = file_bytes - position % file_bytes;
            let rest = &self.held[at..];
            let Some(head) = rest.get(..8) else { break };
            let total = i32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
            let magic = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
            let fits = u64::try_from(total).is_ok_and(|t| t >= 8 && t <= to_file_end);
            let bounded = total as u64 <= self.config.record_bytes_max;
            if !fits || !bounded {
                return Err(format!(
                    "a record of {total} bytes at {position} does not fit: {to_file_end} bytes \
                     to the end of its file, records of at most {} bytes",
                    self.config.record_bytes_max
                ));
            }
            if magic == MAGIC_BLANK && total as u64 != to_file_end {
                return Err(format!(
                    "a blank filler at {position} of {total} bytes does not reach the end of \
                     its file ({to_file_end} bytes on)"
                ));
            }
            let Some(bytes) = rest.get(..total as usize) else { break };
            let checks = Checks { physical_offset: Some(position as i64), crc: true };
            match scan_record(bytes, checks) {
                Scanned::Record(_) | Scanned::Blank => at += total as usize,
                Scanned::Invalid(invalid) => {
                    return Err(format!(
                        "the record at {position} fails its checks: {}",
                        why(invalid)
                    ));
                }
            }
        }
        Ok(at)
    }

    /// Time passed: a report or a housekeeping close may be due.
    pub fn tick(&mut self, now: Millis) {
        if !self.connected {
            return;
        }
        // Nothing is reported before the handshake is done.
        let waiting = self.config.hello.is_some() && !self.handshaken;
        if now.saturating_sub(self.last_read) > self.config.housekeeping_ms {
            let why = format!("the master sent nothing for {} ms", self.config.housekeeping_ms);
            self.close(why);
        } else if !waiting && now.saturating_sub(self.last_report) >= self.config.heartbeat_ms {
            self.report(now);
        }
    }

    pub fn poll_action(&mut self) -> Option<SlaveAction> {
        self.actions.pop_front()
    }

    /// When `tick` next has work without any event.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.connected.then(|| {
            let silent = self.last_read.saturating_add(self.config.housekeeping_ms + 1);
            match self.config.hello.is_some() && !self.handshaken {
                true => silent,
                false => silent.min(self.last_report.saturating_add(self.config.heartbeat_ms)),
            }
        })
    }

    pub fn check_invariants(&self) {
        assert!(self.end <= self.handed, "store end {} past handed {}", self.end, self.handed);
        self.epochs.check_invariants();
        if let Some(last) = self.epochs.last() {
            assert!(last.start as u64 <= self.handed, "epoch {last:?} past the log's end");
        }
        assert!(!(self.handshaken && self.truncating), "handshaken while truncating");
        assert!(self.reported <= self.end, "reported {} past the end {}", self.reported, self.end);
        let held = self.held.len() as u64;
        assert!(held <= self.config.record_bytes_max, "{held} bytes held for one record");
        if !self.connected {
            assert!(self.held.is_empty() && self.handed == self.end, "a closed link holds nothing");
        }
    }
}

fn why(invalid: Invalid) -> &'static str {
    match invalid {
        Invalid::Truncated => "truncated",
        Invalid::Magic(_) => "not a record magic",
        Invalid::Length => "its lengths disagree",
        Invalid::PhysicalOffset => "it claims another physical offset",
        Invalid::Zeros => "zeros where a torn write leaves them",
        Invalid::BodyCrc => "body CRC mismatch",
        Invalid::RecordCrc => "record CRC mismatch",
        Invalid::Blank => "a blank filler of the wrong length",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_record, RecordInput, RecordPlace};
    use proptest::prelude::*;

    const FILE: u64 = 4096;

    fn config() -> SlaveConfig {
        SlaveConfig::new(FILE, 2048)
    }

    /// A master's log from `start`: `count` records of `body` bytes, a blank filler wherever
    /// the next record does not fit, as the store writes it.
    fn log(start: u64, count: usize, body: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let host = "10.0.0.1:10911".parse().unwrap();
        let payload = vec![b'x'; body];
        for i in 0..count {
            let input = RecordInput {
                topic: "T",
                queue_id: 0,
                flag: 0,
                sys_flag: 0,
                born_timestamp: 1,
                born_host: host,
                store_host: host,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: &payload,
                properties: b"",
            };
            let len = crate::record::encoded_len(&input, true).unwrap() as u64;
            let at = start + out.len() as u64;
            let room = FILE - at % FILE;
            if len + 8 > room {
                out.extend_from_slice(&(room as i32).to_be_bytes());
                out.extend_from_slice(&MAGIC_BLANK.to_be_bytes());
                out.resize(out.len() + room as usize - 8, 0);
            }
            let at = start + out.len() as u64;
            let place = RecordPlace {
                queue_offset: i as i64,
                physical_offset: at as i64,
                store_timestamp: 2,
            };
            encode_record(&input, place, true, &mut out).unwrap();
        }
        out
    }

    /// Feeds `log` (starting at `start`) in frames cut at `cuts`, never across a file, carrying
    /// out every append; returns the bytes appended and the actions other than appends.
    fn replay(
        slave: &mut HaSlave,
        start: u64,
        log: &[u8],
        cuts: &[usize],
    ) -> (Vec<u8>, Vec<SlaveAction>) {
        let mut stored = Vec::new();
        let mut others = Vec::new();
        let mut at = 0usize;
        let mut cuts = cuts.iter().copied();
        while at < log.len() {
            let position = start + at as u64;
            let file_end = (FILE - position % FILE) as usize;
            let size = cuts.next().unwrap_or(700).clamp(1, file_end).min(log.len() - at);
            let transfer = Transfer::classic(position, log[at..at + size].to_vec());
            slave.handle(1, SlaveEvent::Received(transfer));
            at += size;
            while let Some(action) = slave.poll_action() {
                match action {
                    SlaveAction::Append { offset, records, .. } => {
                        assert_eq!(offset, slave.end(), "appended at the store's end");
                        stored.extend_from_slice(&records);
                        let end = offset + records.len() as u64;
                        slave.handle(1, SlaveEvent::Appended { end });
                    }
                    other => others.push(other),
                }
            }
            slave.check_invariants();
        }
        (stored, others)
    }

    #[test]
    fn whole_records_are_appended_and_a_cut_record_waits_for_its_rest() {
        let bytes = log(0, 12, 500);
        let mut slave = HaSlave::new(config(), 0);
        slave.handle(0, SlaveEvent::Connected);
        assert_eq!(slave.poll_action(), Some(SlaveAction::Report { offset: 0 }));
        let (stored, others) = replay(&mut slave, 0, &bytes, &[100, 3, 900, 5, 2000]);
        assert_eq!(stored, bytes, "every byte, blank fillers included, in order");
        assert_eq!(slave.held(), 0);
        assert!(others.iter().all(|a| matches!(a, SlaveAction::Report { .. })), "{others:?}");
        let last = others.last().unwrap();
        assert_eq!(last, &SlaveAction::Report { offset: bytes.len() as u64 });
    }

    #[test]
    fn an_empty_slave_starts_its_log_at_the_masters_file() {
        let bytes = log(2 * FILE, 3, 100);
        let mut slave = HaSlave::new(config(), 0);
        slave.handle(0, SlaveEvent::Connected);
        let (stored, _) = replay(&mut slave, 2 * FILE, &bytes, &[]);
        assert_eq!((stored, slave.end()), (bytes.clone(), 2 * FILE + bytes.len() as u64));
        // Not a file boundary: refused.
        let mut slave = HaSlave::new(config(), 0);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, SlaveEvent::Received(Transfer::classic(100, vec![])));
        let actions: Vec<_> = std::iter::from_fn(|| slave.poll_action()).collect();
        assert!(matches!(&actions[1], SlaveAction::Close { why } if why.contains("from 100")));
    }

    fn closes(slave: &mut HaSlave, transfer: Transfer, expected: &str) {
        slave.handle(2, SlaveEvent::Received(transfer));
        let actions: Vec<_> = std::iter::from_fn(|| slave.poll_action()).collect();
        let close = actions.iter().find_map(|a| match a {
            SlaveAction::Close { why } => Some(why.clone()),
            _ => None,
        });
        let why = close.unwrap_or_else(|| panic!("no close in {actions:?}"));
        assert!(why.contains(expected), "{why}");
        assert!(actions.iter().all(|a| !matches!(a, SlaveAction::Append { .. })), "{actions:?}");
        slave.check_invariants();
    }

    fn connected() -> HaSlave {
        let mut slave = HaSlave::new(config(), 0);
        slave.handle(0, SlaveEvent::Connected);
        while slave.poll_action().is_some() {}
        slave
    }

    #[test]
    fn bad_bytes_close_the_connection_and_append_nothing() {
        let bytes = log(0, 2, 300);
        let mut damaged = bytes.clone();
        let last = damaged.len() - 40;
        damaged[last] ^= 1;
        let first_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let mut slave = connected();
        let misplaced = Transfer::classic(0, damaged[first_len..].to_vec());
        closes(&mut slave, misplaced, "claims another physical offset");
        let mut slave = connected();
        let second = Transfer::classic(first_len as u64, damaged[first_len..].to_vec());
        slave.handle(1, SlaveEvent::Received(Transfer::classic(0, bytes[..first_len].to_vec())));
        while let Some(action) = slave.poll_action() {
            if let SlaveAction::Append { records, offset, .. } = action {
                slave.handle(1, SlaveEvent::Appended { end: offset + records.len() as u64 });
            }
        }
        closes(&mut slave, second, "fails its checks");
        assert_eq!(
            slave.end(),
            first_len as u64,
            "the good record stays; the bad one is not stored"
        );
        // A gap: bytes that do not start at the slave's end.
        let mut slave = connected();
        slave.handle(1, SlaveEvent::Received(Transfer::classic(0, bytes[..10].to_vec())));
        closes(&mut slave, Transfer::classic(20, vec![1]), "ends at 10");
        // A record longer than any the store writes, refused before its bytes are held.
        let mut slave = connected();
        let mut huge = 5000i32.to_be_bytes().to_vec();
        huge.extend_from_slice(&crate::record::MAGIC_V1.to_be_bytes());
        closes(&mut slave, Transfer::classic(0, huge), "does not fit");
        // A damaged length that makes a record look longer than it is: the slave would wait for
        // bytes that never come; the master's next heartbeat says so.
        let mut slave = connected();
        let mut longer = bytes[..first_len].to_vec();
        longer[..4].copy_from_slice(&(first_len as i32 + 100).to_be_bytes());
        slave.handle(1, SlaveEvent::Received(Transfer::classic(0, longer)));
        assert_eq!(slave.poll_action(), None, "waiting for the rest");
        let heartbeat = Transfer::classic(first_len as u64, vec![]);
        closes(&mut slave, heartbeat, "its length must be damaged");
        // A blank filler that stops short of its file's end.
        let mut slave = connected();
        let mut blank = 64i32.to_be_bytes().to_vec();
        blank.extend_from_slice(&MAGIC_BLANK.to_be_bytes());
        closes(&mut slave, Transfer::classic(0, blank), "does not reach the end");
    }

    #[test]
    fn reports_every_five_seconds_and_gives_up_a_silent_master() {
        let mut slave = HaSlave::new(config(), 300);
        slave.handle(0, SlaveEvent::Connected);
        assert_eq!(slave.poll_action(), Some(SlaveAction::Report { offset: 300 }));
        assert_eq!(slave.poll_timeout(), Some(5_000));
        slave.tick(5_000);
        assert_eq!(slave.poll_action(), Some(SlaveAction::Report { offset: 300 }));
        slave.handle(9_000, SlaveEvent::Received(Transfer::classic(300, vec![])));
        assert_eq!(slave.poll_action(), None, "a heartbeat at the slave's end is fine");
        slave.tick(29_001);
        let action = slave.poll_action();
        assert!(
            matches!(action, Some(SlaveAction::Close { ref why }) if why.contains("20000 ms")),
            "{action:?}"
        );
        assert_eq!(slave.poll_timeout(), None);
        slave.check_invariants();
    }

    fn auto_slave(end: u64, entries: &[(i32, i64)]) -> HaSlave {
        let hello = SlaveHello { broker_id: 2, sync_from_last_file: false, async_learner: false };
        let config = SlaveConfig { hello: Some(hello), ..config() };
        let entries = entries.iter().map(|&(epoch, start)| EpochEntry { epoch, start }).collect();
        HaSlave::new(config, end).with_epochs(EpochCache::from_entries(entries).unwrap())
    }

    fn answer(end: u64, entries: &[(i32, i64)]) -> SlaveEvent {
        let entries = entries.iter().map(|&(epoch, start)| EpochEntry { epoch, start }).collect();
        SlaveEvent::Answered(MasterHello {
            end,
            epochs: EpochCache::from_entries(entries).unwrap(),
        })
    }

    fn drain(slave: &mut HaSlave) -> Vec<SlaveAction> {
        slave.check_invariants();
        std::iter::from_fn(|| slave.poll_action()).collect()
    }

    /// Controller mode: hello first, nothing reported until the answer; a log past the
    /// consistent point is cut there before the report; a log within it is reported as it is.
    #[test]
    fn the_handshake_cuts_the_log_to_the_consistent_point() {
        let hello = SlaveHello { broker_id: 2, sync_from_last_file: false, async_learner: false };
        // Epoch 3 was this slave's own as a deposed master; the new master began epoch 4 at 900.
        let mut slave = auto_slave(1500, &[(1, 0), (3, 500)]);
        slave.handle(0, SlaveEvent::Connected);
        assert_eq!(drain(&mut slave), [SlaveAction::Hello(hello)]);
        slave.tick(10_000);
        assert_eq!(drain(&mut slave), [], "no report before the answer");
        assert_eq!(slave.poll_timeout(), Some(20_001), "only the housekeeping deadline");
        slave.handle(10, answer(2000, &[(1, 0), (3, 500), (4, 900)]));
        assert_eq!(drain(&mut slave), [SlaveAction::Truncate { to: 900 }]);
        slave.handle(11, SlaveEvent::Truncated { end: 900 });
        assert_eq!(drain(&mut slave), [SlaveAction::Report { offset: 900 }]);
        assert_eq!(slave.end(), 900);
        // A log that ends within what both share is not cut.
        let mut slave = auto_slave(700, &[(1, 0), (3, 500)]);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, answer(2000, &[(1, 0), (3, 500), (4, 900)]));
        assert_eq!(drain(&mut slave)[1], SlaveAction::Report { offset: 700 });
        // No shared epoch, both logs from 0: this one's records were never confirmed, and
        // all of it goes.
        let mut slave = auto_slave(700, &[(3, 0)]);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, answer(2000, &[(4, 0)]));
        assert_eq!(drain(&mut slave)[1], SlaveAction::Truncate { to: 0 });
        // No shared epoch and different starts: closed, nothing cut.
        let mut slave = auto_slave(700, &[(2, 100)]);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, answer(2000, &[(1, 0), (4, 900)]));
        let actions = drain(&mut slave);
        assert!(
            matches!(&actions[1], SlaveAction::Close { why } if why.contains("no epoch in common")),
            "{actions:?}"
        );
        // A master whose newest epoch is older than this log's is a deposed one: not followed,
        // nothing cut.
        let mut slave = auto_slave(1500, &[(1, 0), (3, 500)]);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, answer(900, &[(1, 0), (2, 400)]));
        let actions = drain(&mut slave);
        let deposed = matches!(&actions[1], SlaveAction::Close { why } if why.contains("deposed"));
        assert!(deposed, "{actions:?}");
        assert_eq!(slave.end(), 1500);
        // Nor is one older than the epoch the controller named, even by an empty slave.
        let hello = SlaveHello { broker_id: 2, sync_from_last_file: false, async_learner: false };
        let config = SlaveConfig { hello: Some(hello), master_epoch: 4, ..config() };
        let mut slave = HaSlave::new(config, 0);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, answer(900, &[(1, 0), (3, 400)]));
        let actions = drain(&mut slave);
        let named =
            matches!(&actions[1], SlaveAction::Close { why } if why.contains("controller named"));
        assert!(named, "{actions:?}");
        // A new replica reports its end (0) at once.
        let mut slave = auto_slave(0, &[]);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, answer(2000, &[(1, 0)]));
        assert_eq!(drain(&mut slave)[1], SlaveAction::Report { offset: 0 });
    }

    /// Frames carry their epoch: a newer one begins with the frame's records, an older one
    /// (a deposed master) closes, and the master's confirm offset is passed on as far as the
    /// slave holds the log.
    #[test]
    fn frames_name_their_epoch_and_carry_the_confirm_offset() {
        let bytes = log(0, 6, 100);
        // Six records of one size in one file: the fourth starts half way.
        let boundary = bytes.len() / 2;
        let mut slave = auto_slave(0, &[]);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, answer(bytes.len() as u64, &[(1, 0), (2, boundary as i64)]));
        drain(&mut slave);
        let frame = |from: usize, to: usize, epoch: (i32, i64), confirm: u64| Transfer {
            offset: from as u64,
            data: bytes[from..to].to_vec(),
            epoch: Some(EpochEntry { epoch: epoch.0, start: epoch.1 }),
            confirm: Some(confirm),
        };
        slave.handle(2, SlaveEvent::Received(frame(0, boundary, (1, 0), 50)));
        let actions = drain(&mut slave);
        let epoch_1 = Some(EpochEntry { epoch: 1, start: 0 });
        assert_eq!(
            actions[0],
            SlaveAction::Append { offset: 0, records: bytes[..boundary].to_vec(), epoch: epoch_1 }
        );
        assert_eq!(actions[1], SlaveAction::Confirm { up_to: 50 });
        slave.handle(3, SlaveEvent::Appended { end: boundary as u64 });
        drain(&mut slave);
        let confirm = bytes.len() as u64 + 10;
        slave.handle(
            4,
            SlaveEvent::Received(frame(boundary, bytes.len(), (2, boundary as i64), confirm)),
        );
        let actions = drain(&mut slave);
        let epoch_2 = Some(EpochEntry { epoch: 2, start: boundary as i64 });
        let append = SlaveAction::Append {
            offset: boundary as u64,
            records: bytes[boundary..].to_vec(),
            epoch: epoch_2,
        };
        assert_eq!(actions[0], append);
        assert_eq!(
            actions[1],
            SlaveAction::Confirm { up_to: bytes.len() as u64 },
            "no further than held"
        );
        slave.handle(5, SlaveEvent::Appended { end: bytes.len() as u64 });
        drain(&mut slave);
        let stale =
            Transfer { offset: bytes.len() as u64, data: vec![], epoch: epoch_1, confirm: Some(0) };
        slave.handle(6, SlaveEvent::Received(stale));
        let actions = drain(&mut slave);
        assert!(
            matches!(&actions[0], SlaveAction::Close { why } if why.contains("deposed master")),
            "{actions:?}"
        );
    }

    /// Data before the answer, or a frame without its epoch, closes the connection.
    #[test]
    fn controller_mode_refuses_frames_out_of_turn() {
        let bytes = log(0, 1, 10);
        let mut slave = auto_slave(0, &[]);
        slave.handle(0, SlaveEvent::Connected);
        slave.handle(1, SlaveEvent::Received(Transfer::classic(0, bytes.clone())));
        let actions = drain(&mut slave);
        assert!(
            matches!(&actions[1], SlaveAction::Close { why } if why.contains("before the handshake"))
        );
        assert_eq!(slave.end(), 0, "nothing taken");
        slave.handle(2, SlaveEvent::Connected);
        slave.handle(3, answer(100, &[(1, 0)]));
        drain(&mut slave);
        slave.handle(4, SlaveEvent::Received(Transfer::classic(0, bytes)));
        let actions = drain(&mut slave);
        assert!(
            matches!(&actions[0], SlaveAction::Close { why } if why.contains("without its epoch"))
        );
    }

    proptest! {
        /// However the master cuts its frames, the slave stores the log exactly, and after a
        /// reconnection in the middle it asks for and stores the rest.
        #[test]
        fn any_cuts_store_the_log_exactly(
            cuts in proptest::collection::vec(1usize..3000, 0..40),
            count in 1usize..30,
            body in 1usize..1500,
            reconnect_after in 0usize..20,
        ) {
            let bytes = log(0, count, body);
            let mut slave = HaSlave::new(config(), 0);
            slave.handle(0, SlaveEvent::Connected);
            let split = cuts.iter().take(reconnect_after).sum::<usize>().min(bytes.len());
            let (mut stored, _) = replay(&mut slave, 0, &bytes[..split], &cuts);
            slave.handle(5, SlaveEvent::Disconnected);
            slave.handle(6, SlaveEvent::Connected);
            let resume = slave.end();
            prop_assert_eq!(stored.len() as u64, resume);
            let (rest, _) = replay(&mut slave, resume, &bytes[resume as usize..], &cuts);
            stored.extend(rest);
            prop_assert_eq!(stored, bytes);
        }
    }
}
