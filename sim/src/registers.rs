//! Registers: values that requests set and read, such as a NameServer's KV entries, one of its
//! settings or a broker's write permission in its routes, checked against what the client saw
//! and when (a write's request sent and answered, a read's sent and answered).
//!
//! The promise: every value read is one some write could still have left there. A write may
//! take effect at any instant of its window: from its request's sending to its answer for one
//! the server said it took, with no end for one whose outcome is unknown (no answer, or an
//! error after which it may still have landed on disk). A write answered as taken, or a reset
//! the scenario made (a restart back to a default), is definite: it surely happened in its
//! window. A read of value `v` is broken when every write of `v` surely came before a definite
//! write that surely came before the read was sent:
//!
//! ```text
//!   write of v   [----]                              (its window ends at t1)
//!   definite write of w       [------]               (its window starts after t1, ends at t2)
//!   read of v                            [--]        (sent after t2)   => broken
//! ```
//!
//! It is a necessary condition of linearizability, not a full check: a read is only checked
//! against writes that surely replaced its value, so it never fails a run a correct server
//! could have produced.
//!
//! Two more kinds of event, for what a broker keeps in memory and writes out only now and then
//! (consumer offsets, every `flushConsumerOffsetInterval`):
//! - a *lapse* (a crash of the server): afterwards a register may hold any value it held
//!   before, so only a definite write begun after the lapse replaces a value for reads after it;
//! - a *copy* of one register into another (CLONE_GROUP_OFFSET): a write of whatever the
//!   source held during the copy's window, resolved when the run is checked as the values a
//!   read of the source over that window could have answered (a definite write when the copy
//!   was answered and only one value, not absent, could have been copied; an absent source
//!   copies nothing).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};
use tokio::time::Instant;

use crate::checkers::{self, Verdict};
use crate::{report, REQUEST_TIMEOUT};

/// A register's value; `None` is absent (a deleted key).
pub type Value = Option<String>;

#[derive(Debug, Clone)]
struct Write {
    value: Value,
    earliest: Instant,
    /// `None`: it may take effect at any later instant.
    latest: Option<Instant>,
    definite: bool,
    what: &'static str,
}

#[derive(Debug, Clone)]
struct Read {
    value: Value,
    sent: Instant,
    answered: Instant,
}

/// A copy of register `from` into `to` sent at `sent`, answered as taken at `answered` (or
/// of unknown outcome, `None`).
#[derive(Debug, Clone)]
struct Copy {
    from: String,
    to: String,
    sent: Instant,
    answered: Option<Instant>,
}

/// The writes and reads of every register of a run.
pub struct Registers {
    start: Instant,
    writes: BTreeMap<String, Vec<Write>>,
    reads: BTreeMap<String, Vec<Read>>,
    lapses: Vec<Instant>,
    copies: Vec<Copy>,
}

impl Registers {
    /// Registers of a run that started at `start` (times in reports count from it).
    pub fn new(start: Instant) -> Registers {
        let (writes, reads) = (BTreeMap::new(), BTreeMap::new());
        Registers { start, writes, reads, lapses: Vec::new(), copies: Vec::new() }
    }

    /// The server crashed at `at`: what it had not written out may be gone.
    pub fn lapse(&mut self, at: Instant) {
        self.lapses.push(at);
    }

    /// A request, sent at `sent`, that copies `from` into `to`: answered as taken at
    /// `answered`, or of unknown outcome (`None`). A register copied from must not be copied
    /// into.
    pub fn copy(&mut self, from: &str, to: &str, sent: Instant, answered: Option<Instant>) {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.copies.push(Copy { from, to, sent, answered });
    }

    /// A write that surely took effect between `from` and `to`: a request answered as taken
    /// (sent at `from`, answered at `to`), a register's first value, or a reset.
    pub fn took(
        &mut self,
        register: &str,
        value: Value,
        (from, to): (Instant, Instant),
        what: &'static str,
    ) {
        let write = Write { value, earliest: from, latest: Some(to), definite: true, what };
        self.writes.entry(register.to_owned()).or_default().push(write);
    }

    /// A write that may have taken effect between `from` and `to` (any later instant for
    /// `None`), or never.
    pub fn may_have_taken(
        &mut self,
        register: &str,
        value: Value,
        from: Instant,
        to: Option<Instant>,
        what: &'static str,
    ) {
        let write = Write { value, earliest: from, latest: to, definite: false, what };
        self.writes.entry(register.to_owned()).or_default().push(write);
    }

    /// A read of `register` sent at `sent` that answered `value` at `answered`.
    pub fn read(&mut self, register: &str, value: Value, sent: Instant, answered: Instant) {
        self.reads.entry(register.to_owned()).or_default().push(Read { value, sent, answered });
    }

    /// Every read checked; what was checked, or the first read no write explains.
    pub fn check(&self) -> Result<String, String> {
        let writes = self.with_copies();
        let mut count = 0;
        for (register, reads) in &self.reads {
            let writes = writes.get(register).map(Vec::as_slice).unwrap_or_default();
            for read in reads {
                self.explained(register, writes, read)?;
                count += 1;
            }
        }
        let written: usize = writes.values().map(Vec::len).sum();
        Ok(format!("{count} reads of {} registers, {written} writes", self.reads.len()))
    }

    /// The writes, with each copy resolved into writes of the values its source could have
    /// held during it.
    fn with_copies(&self) -> BTreeMap<String, Vec<Write>> {
        let mut writes = self.writes.clone();
        for copy in &self.copies {
            let sources = self.writes.get(&copy.from).map(Vec::as_slice).unwrap_or_default();
            // A copy of unknown outcome may still be made at any later time.
            let answered = copy.answered.unwrap_or(copy.sent + Duration::from_secs(1 << 30));
            let mut values: Vec<Value> = Vec::new();
            for write in sources {
                let read = Read { value: write.value.clone(), sent: copy.sent, answered };
                if !values.contains(&read.value) && self.explained("", sources, &read).is_ok() {
                    values.push(read.value);
                }
            }
            // An absent source copies nothing: the copy may have left the target as it was.
            let absent = values.contains(&None);
            values.retain(Option::is_some);
            let definite = copy.answered.is_some() && values.len() == 1 && !absent;
            let what = match definite {
                true => "a copy answered SUCCESS",
                false => "a copy of one of several values, or not answered SUCCESS",
            };
            for value in values {
                let (earliest, latest) = (copy.sent, copy.answered);
                let write = Write { value, earliest, latest, definite, what };
                writes.entry(copy.to.clone()).or_default().push(write);
            }
        }
        writes
    }

    fn explained(&self, register: &str, writes: &[Write], read: &Read) -> Result<(), String> {
        // The latest start of a definite write that surely ended before the read was sent: a
        // write that surely ended before it is gone. Since the last lapse before the read
        // answered, only writes begun after it count: the lapse may have undone the others.
        let lapsed = self.lapses.iter().filter(|l| **l <= read.answered).max();
        let replaced = writes
            .iter()
            .filter(|w| w.definite && w.latest.is_some_and(|l| l < read.sent))
            .filter(|w| lapsed.is_none_or(|l| w.earliest > *l))
            .max_by_key(|w| w.earliest);
        let candidates: Vec<&Write> = writes
            .iter()
            .filter(|w| w.value == read.value && w.earliest <= read.answered)
            .collect();
        let explains = |w: &&Write| match (replaced, w.latest) {
            (Some(last), Some(latest)) => latest >= last.earliest,
            _ => true,
        };
        if candidates.iter().any(explains) {
            return Ok(());
        }
        let mut why = format!(
            "{register}: read {:?} (sent {}, answered {})",
            read.value,
            self.at(read.sent),
            self.at(read.answered)
        );
        // Here a write of the value, if there is one, was replaced (with no definite write
        // before the read, every candidate explains it).
        match replaced.filter(|_| !candidates.is_empty()) {
            None => why.push_str(", a value no write before it gave"),
            Some(last) => {
                let _ = write!(
                    why,
                    ", but {} of {:?} ({}..{}) surely replaced every write of it ({})",
                    last.what,
                    last.value,
                    self.at(last.earliest),
                    last.latest.map(|l| self.at(l)).unwrap_or_default(),
                    candidates.iter().map(|w| self.window(w)).collect::<Vec<_>>().join(", ")
                );
            }
        }
        Err(why)
    }

    fn at(&self, instant: Instant) -> String {
        format!("{:.3} s", instant.saturating_duration_since(self.start).as_secs_f64())
    }

    fn window(&self, write: &Write) -> String {
        let end = write.latest.map(|l| self.at(l)).unwrap_or_else(|| "...".to_owned());
        format!("{} {}..{}", write.what, self.at(write.earliest), end)
    }
}

/// What a scenario's nodes recorded: the registers, and how each request was answered.
pub struct Recorded {
    pub registers: Registers,
    /// Answers by request name and code (`-1`: none).
    pub answers: BTreeMap<(&'static str, i32), u64>,
}

/// One node's requests to one server, each answer counted and each write recorded in the
/// run's shared [`Recorded`].
pub struct Operator {
    client: RemotingClient,
    addr: String,
    recorded: Arc<Mutex<Recorded>>,
}

impl Operator {
    /// A run's record, its registers' times counted from `start`.
    pub fn record(start: Instant) -> Arc<Mutex<Recorded>> {
        let registers = Registers::new(start);
        Arc::new(Mutex::new(Recorded { registers, answers: BTreeMap::new() }))
    }

    /// An operator asking `addr`, with its own client; build it on the node that asks.
    pub fn new(addr: &str, recorded: &Arc<Mutex<Recorded>>) -> Operator {
        let client = RemotingClient::new(ClientConfig::default(), None);
        Operator { client, addr: addr.to_owned(), recorded: recorded.clone() }
    }

    /// Notes how the run's requests were answered and checks its registers beside the
    /// scenario's own `verdicts`: the run fails on a read no write explains.
    pub fn conclude(recorded: &Mutex<Recorded>, mut verdicts: Vec<Verdict>) {
        let recorded = recorded.lock().unwrap_or_else(|p| p.into_inner());
        verdicts.push(Verdict::new("values read were written", recorded.registers.check()));
        report::note(format!("requests answered (name, code: count): {:?}", recorded.answers));
        checkers::conclude(&verdicts);
    }

    pub fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `command`; the answer, counted under `name`.
    pub async fn ask(
        &self,
        name: &'static str,
        command: RemotingCommand,
    ) -> Option<RemotingCommand> {
        let reply = self.client.invoke(&self.addr, command, REQUEST_TIMEOUT).await.ok();
        let code = reply.as_ref().map_or(-1, |r| r.code);
        *self.recorded().answers.entry((name, code)).or_default() += 1;
        reply
    }

    /// Sends a request that writes `value` to `register`: a definite write when answered
    /// SUCCESS; otherwise (no answer, or an error after which the change may still be on
    /// disk, read at a later start) one that may take effect at any later time. Whether it
    /// was answered SUCCESS.
    pub async fn write(
        &self,
        request: (&'static str, RemotingCommand),
        register: &str,
        value: Value,
    ) -> bool {
        self.write_each(request, vec![(register.to_owned(), value)]).await
    }

    /// As [`Operator::write`], for a request that writes several registers at once.
    pub async fn write_each(
        &self,
        (name, command): (&'static str, RemotingCommand),
        writes: Vec<(String, Value)>,
    ) -> bool {
        let sent = Instant::now();
        let reply = self.ask(name, command).await;
        let answered = Instant::now();
        let took = matches!(reply, Some(r) if r.code == response::SUCCESS);
        let registers = &mut self.recorded().registers;
        for (register, value) in writes {
            match took {
                true => {
                    registers.took(&register, value, (sent, answered), "a write answered SUCCESS")
                }
                false => registers.may_have_taken(
                    &register,
                    value,
                    sent,
                    None,
                    "a write not answered SUCCESS",
                ),
            }
        }
        took
    }

    /// Records a read of `register` sent at `sent` that answered `value` now.
    pub fn read(&self, register: &str, value: Value, sent: Instant) {
        self.recorded().registers.read(register, value, sent, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn v(text: &str) -> Value {
        Some(text.to_owned())
    }

    /// A register that held `a` from the start and was set to `b` between 10 and 20 ms.
    fn overwritten() -> (Instant, Registers) {
        let start = Instant::now();
        let mut registers = Registers::new(start);
        registers.took("r", v("a"), (start, start), "start");
        registers.took("r", v("b"), (t(start, 10), t(start, 20)), "put");
        (start, registers)
    }

    #[test]
    fn a_read_during_a_write_may_see_either_value() {
        let (start, mut registers) = overwritten();
        registers.read("r", v("a"), t(start, 12), t(start, 14));
        registers.read("r", v("b"), t(start, 12), t(start, 14));
        registers.read("r", v("b"), t(start, 30), t(start, 31));
        assert_eq!(registers.check(), Ok("3 reads of 1 registers, 2 writes".to_owned()));
    }

    #[test]
    fn a_value_replaced_before_the_read_was_sent_is_broken() {
        let (start, mut registers) = overwritten();
        registers.read("r", v("a"), t(start, 21), t(start, 22));
        let why = registers.check().unwrap_err();
        assert!(why.contains("read Some(\"a\")"), "{why}");
        assert!(why.contains("put of Some(\"b\") (0.010 s..0.020 s) surely replaced"), "{why}");
    }

    #[test]
    fn a_write_of_unknown_outcome_may_show_at_any_later_time() {
        let (start, mut registers) = overwritten();
        registers.may_have_taken("r", v("c"), t(start, 5), None, "unanswered put");
        registers.read("r", v("c"), t(start, 500), t(start, 501));
        registers.read("r", v("b"), t(start, 600), t(start, 601));
        assert!(registers.check().is_ok());
        // With a window that ended before the definite write began, it is replaced.
        let (start, mut registers) = overwritten();
        registers.may_have_taken("r", v("c"), t(start, 1), Some(t(start, 5)), "registration");
        registers.read("r", v("c"), t(start, 30), t(start, 31));
        assert!(registers.check().is_err());
    }

    #[test]
    fn a_value_never_written_or_read_before_its_write_is_broken() {
        let (start, mut registers) = overwritten();
        registers.read("r", v("z"), t(start, 30), t(start, 31));
        assert!(registers.check().unwrap_err().contains("a value no write before it gave"));
        let (start, mut registers) = overwritten();
        registers.took("r", v("late"), (t(start, 50), t(start, 60)), "put");
        registers.read("r", v("late"), t(start, 30), t(start, 31));
        assert!(registers.check().is_err(), "a read answered before its write was sent");
    }

    #[test]
    fn after_a_lapse_any_earlier_value_may_be_read_until_a_later_write() {
        let (start, mut registers) = overwritten();
        registers.lapse(t(start, 30));
        registers.read("r", v("a"), t(start, 40), t(start, 41));
        assert!(registers.check().is_ok(), "the lapse may have undone the put");
        registers.took("r", v("c"), (t(start, 50), t(start, 60)), "put");
        registers.read("r", v("a"), t(start, 70), t(start, 71));
        let why = registers.check().unwrap_err();
        assert!(why.contains("put of Some(\"c\") (0.050 s..0.060 s)"), "{why}");
    }

    #[test]
    fn a_copy_writes_what_its_source_held_during_it() {
        let copied = |from: u64, to: u64| {
            let (start, mut registers) = overwritten();
            registers.took("d", None, (start, start), "start");
            registers.copy("r", "d", t(start, from), Some(t(start, to)));
            (start, registers)
        };
        let (start, mut registers) = copied(30, 31);
        registers.read("d", v("b"), t(start, 40), t(start, 41));
        assert!(registers.check().is_ok());
        registers.read("d", None, t(start, 50), t(start, 51));
        let why = registers.check().unwrap_err();
        assert!(why.contains("a copy answered SUCCESS of Some(\"b\")"), "{why}");
        // During the put either value may be copied, and nothing surely replaced the start.
        let (start, mut registers) = copied(12, 14);
        registers.read("d", v("a"), t(start, 40), t(start, 41));
        registers.read("d", None, t(start, 40), t(start, 41));
        assert!(registers.check().is_ok());
        let (start, mut registers) = copied(30, 31);
        registers.read("d", v("a"), t(start, 40), t(start, 41));
        assert!(registers.check().is_err(), "only b was there to copy");
    }

    #[test]
    fn an_absent_source_copies_nothing() {
        let start = Instant::now();
        let mut registers = Registers::new(start);
        registers.took("r", None, (start, start), "start");
        registers.took("d", v("x"), (start, start), "start");
        registers.copy("r", "d", t(start, 10), Some(t(start, 11)));
        registers.read("d", v("x"), t(start, 20), t(start, 21));
        assert!(registers.check().is_ok());
    }

    #[test]
    fn a_register_never_written_has_nothing_to_explain_its_reads() {
        let start = Instant::now();
        let mut registers = Registers::new(start);
        registers.read("r", None, start, start);
        assert!(registers.check().is_err());
    }
}
