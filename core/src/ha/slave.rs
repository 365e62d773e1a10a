//! The slave's side of the HA connection (RocketMQ's `DefaultHAClient`), with one difference:
//! RocketMQ's slave appends whatever bytes arrive, and Petrel's appends only whole records that
//! pass the checks recovery makes, holding a record cut by a frame's end until the rest comes.
//! No I/O: the shell owns the socket and the store, feeds each frame in, appends what the
//! `Append` actions carry (then reports `Appended`), and writes the reports.
//!
//! Contract with the shell: an `Append` is carried out (or the connection closed) before the
//! next event, so the store's end and the bytes handed to it never differ when a frame arrives.

use std::collections::VecDeque;

use super::codec::Transfer;
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
}

impl SlaveConfig {
    pub fn new(file_bytes: u64, record_bytes_max: u64) -> SlaveConfig {
        SlaveConfig {
            file_bytes,
            record_bytes_max,
            heartbeat_ms: HEARTBEAT_INTERVAL_DEFAULT_MS,
            housekeeping_ms: HOUSEKEEPING_INTERVAL_DEFAULT_MS,
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
    /// The connection is down (closed by either side, or an append failed).
    Disconnected,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaveAction {
    /// Send the report that the commit log ends at `offset`.
    Report { offset: u64 },
    /// Append these whole, verified records (a blank filler among them ends its file) at
    /// `offset`, the store's end; then report `Appended`.
    Append { offset: u64, records: Vec<u8> },
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
            reported: 0,
            last_read: 0,
            last_report: 0,
            actions: VecDeque::new(),
        }
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
                self.report(now);
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
        self.held.clear();
        self.handed = self.end;
    }

    fn received(&mut self, transfer: Transfer) -> Result<(), String> {
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
            self.actions.push_back(SlaveAction::Append { offset: self.handed, records });
            self.handed += whole as u64;
        }
        Ok(())
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
        if now.saturating_sub(self.last_read) > self.config.housekeeping_ms {
            let why = format!("the master sent nothing for {} ms", self.config.housekeeping_ms);
            self.close(why);
        } else if now.saturating_sub(self.last_report) >= self.config.heartbeat_ms {
            self.report(now);
        }
    }

    pub fn poll_action(&mut self) -> Option<SlaveAction> {
        self.actions.pop_front()
    }

    /// When `tick` next has work without any event.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.connected.then(|| {
            let report = self.last_report.saturating_add(self.config.heartbeat_ms);
            report.min(self.last_read.saturating_add(self.config.housekeeping_ms + 1))
        })
    }

    pub fn check_invariants(&self) {
        assert!(self.end <= self.handed, "store end {} past handed {}", self.end, self.handed);
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
            let transfer = Transfer { offset: position, data: log[at..at + size].to_vec() };
            slave.handle(1, SlaveEvent::Received(transfer));
            at += size;
            while let Some(action) = slave.poll_action() {
                match action {
                    SlaveAction::Append { offset, records } => {
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
        slave.handle(1, SlaveEvent::Received(Transfer { offset: 100, data: vec![] }));
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
        let misplaced = Transfer { offset: 0, data: damaged[first_len..].to_vec() };
        closes(&mut slave, misplaced, "claims another physical offset");
        let mut slave = connected();
        let second = Transfer { offset: first_len as u64, data: damaged[first_len..].to_vec() };
        slave.handle(
            1,
            SlaveEvent::Received(Transfer { offset: 0, data: bytes[..first_len].to_vec() }),
        );
        while let Some(action) = slave.poll_action() {
            if let SlaveAction::Append { records, offset } = action {
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
        slave.handle(1, SlaveEvent::Received(Transfer { offset: 0, data: bytes[..10].to_vec() }));
        closes(&mut slave, Transfer { offset: 20, data: vec![1] }, "ends at 10");
        // A record longer than any the store writes, refused before its bytes are held.
        let mut slave = connected();
        let mut huge = 5000i32.to_be_bytes().to_vec();
        huge.extend_from_slice(&crate::record::MAGIC_V1.to_be_bytes());
        closes(&mut slave, Transfer { offset: 0, data: huge }, "does not fit");
        // A damaged length that makes a record look longer than it is: the slave would wait for
        // bytes that never come; the master's next heartbeat says so.
        let mut slave = connected();
        let mut longer = bytes[..first_len].to_vec();
        longer[..4].copy_from_slice(&(first_len as i32 + 100).to_be_bytes());
        slave.handle(1, SlaveEvent::Received(Transfer { offset: 0, data: longer }));
        assert_eq!(slave.poll_action(), None, "waiting for the rest");
        let heartbeat = Transfer { offset: first_len as u64, data: vec![] };
        closes(&mut slave, heartbeat, "its length must be damaged");
        // A blank filler that stops short of its file's end.
        let mut slave = connected();
        let mut blank = 64i32.to_be_bytes().to_vec();
        blank.extend_from_slice(&MAGIC_BLANK.to_be_bytes());
        closes(&mut slave, Transfer { offset: 0, data: blank }, "does not reach the end");
    }

    #[test]
    fn reports_every_five_seconds_and_gives_up_a_silent_master() {
        let mut slave = HaSlave::new(config(), 300);
        slave.handle(0, SlaveEvent::Connected);
        assert_eq!(slave.poll_action(), Some(SlaveAction::Report { offset: 300 }));
        assert_eq!(slave.poll_timeout(), Some(5_000));
        slave.tick(5_000);
        assert_eq!(slave.poll_action(), Some(SlaveAction::Report { offset: 300 }));
        slave.handle(9_000, SlaveEvent::Received(Transfer { offset: 300, data: vec![] }));
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
