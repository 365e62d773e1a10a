//! POP consumption under simulation: a NameServer, a SYNC_FLUSH broker under a swarm fault
//! plan, a producer, and three members of a POP consumer group (the SDK's `SimpleConsumer`),
//! one of which loses power and comes back. Each member receives up to eight messages at a
//! time, each hidden for 2-5 s, and then for each: leaves one in ten that come for the first
//! time unacknowledged (it must come again, through the group's pop retry topic), changes the
//! invisible time of one in twenty before it acknowledges it, acknowledges one in thirty after
//! its invisible time ran out, and acknowledges the rest at once.
//!
//! The producer retries no send, so that each message is stored once at most.
//!
//! A delivery is a copy: the message at a place (its topic's, or the pop retry topic's, when
//! it came again). The promises checked at the end, on the recorded history:
//! - the delivery promises every consumer scenario keeps ([`checkers::delivery`]);
//! - [`not_after_ack`]: a message comes again (a new place in the retry topic) only for a copy
//!   not acknowledged within its invisible time, and not before that time ran out; a place is
//!   delivered again only after a fault of the broker (its offsets live in memory between
//!   flushes, as RocketMQ's). A copy whose acknowledgement was answered late, refused or lost
//!   may or may not come again; a copy whose change of invisible time went unanswered may come
//!   twice. Extra copies are allowed after a fault of the broker (its reviver may put a
//!   checkpoint's messages again), and after a receive that failed (the broker may have handed
//!   out messages nobody got, up to a receive's eight).
//! - [`delivered_until_acked`]: every copy not acknowledged (left, or held by a member that
//!   lost power) comes again, within a bounded time of its invisible time or of the faults'
//!   end: nothing is lost across an ack, a change or a revive, crash or not.
//!
//! Run one seed: `cargo sim --seed 7 --scenario pop`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::history::{wall_ms, Entry, Event, History, Place};
use madsim::rand::{thread_rng, Rng};
use petrel_client::{ClientError, PoppedMessage, SimpleConsumer};
use petrel_core::broker::pop::ExtraInfo;
use tokio::time::Instant;

const TOPIC: &str = "SimPopped";
const GROUP: &str = "SimPop";
const MESSAGES: u64 = 160;
/// Messages one receive asks for: what a failed one may have handed out.
const BATCH: usize = 8;
/// Once the faults are over, every message and every copy owed comes within this.
const LIVENESS: Duration = Duration::from_secs(60);

/// Member `name`: receives until its node goes.
async fn member(name: String, history: History) {
    let consumer = clients::simple_consumer(GROUP, TOPIC, false);
    loop {
        let hide = Duration::from_millis(thread_rng().gen_range(2_000..5_000));
        match consumer.receive(BATCH, hide).await {
            Ok(batch) => {
                // Recorded as it came: the member may lose power before it gets to each.
                for popped in &batch {
                    let place = clients::place_of(&popped.message);
                    history.record(clients::received(&name, &popped.message));
                    history.record(invisible(&name, &popped.handle, &place));
                }
                for popped in batch {
                    consume(&consumer, &name, &history, popped).await;
                }
            }
            Err(e) => {
                // A receive that could not connect asked nothing.
                let sent =
                    !matches!(&e, ClientError::Transport(why) if why.starts_with("cannot connect"));
                if sent {
                    history.record(Event::PopLost { consumer: name.clone() });
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// What `consumer` records of the message at `place` it got with `handle`.
pub(super) fn invisible(consumer: &str, handle: &str, place: &Place) -> Event {
    let (popped, until) = hidden(handle);
    Event::Invisible { consumer: consumer.to_owned(), place: place.clone(), popped, until }
}

/// What the member does with `popped`, recorded.
async fn consume(consumer: &SimpleConsumer, name: &str, history: &History, popped: PoppedMessage) {
    let place = clients::place_of(&popped.message);
    let asked =
        |change: bool| Event::PopAsked { consumer: name.to_owned(), place: place.clone(), change };
    let answered = |change: bool, answered| Event::PopAnswered {
        consumer: name.to_owned(),
        place: place.clone(),
        change,
        answered,
    };
    let roll: f64 = thread_rng().gen();
    let mut popped = popped;
    if popped.message.reconsume_times == 0 && roll < 0.1 {
        return;
    } else if roll < 0.15 {
        let longer = Duration::from_millis(thread_rng().gen_range(3_000..8_000));
        history.record(asked(true));
        let changed = consumer.change_invisible_duration(&popped, longer).await;
        history.record(answered(true, answer(&changed)));
        let Ok(changed) = changed else { return };
        history.record(invisible(name, &changed.handle, &place));
        popped = changed;
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(0..1_000))).await;
    } else if roll < 0.183 {
        let late = hidden(&popped.handle).1.saturating_duration_since(Instant::now());
        tokio::time::sleep(late + Duration::from_millis(500)).await;
    }
    history.record(asked(false));
    let acked = consumer.ack(&popped).await;
    history.record(answered(false, answer(&acked)));
}

/// When the broker popped the handle's message and when its invisible time runs out, on this
/// node's clock.
pub(super) fn hidden(handle: &str) -> (Instant, Instant) {
    let info = ExtraInfo::parse(handle).expect("the broker's handles parse");
    let (now, wall) = (Instant::now(), wall_ms());
    let at = |ms: i64| match u64::try_from(ms - wall) {
        Ok(ahead) => now + Duration::from_millis(ahead),
        Err(_) => now - Duration::from_millis(wall.abs_diff(ms)),
    };
    (at(info.pop_time), at(info.pop_time.saturating_add(info.invisible_time)))
}

/// What a member records of an answer: SUCCESS, a refusal, or none.
pub(super) fn answer<T>(outcome: &Result<T, ClientError>) -> Option<bool> {
    match outcome {
        Ok(_) => Some(true),
        Err(ClientError::Broker { .. }) => Some(false),
        Err(_) => None,
    }
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let (schedule, history, cluster) = super::one_broker_under_swarm(MESSAGES);
    let members = super::start_members(&cluster, &history, 3, member);
    let producing = history.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        clients::produce_unretried(producing, TOPIC, 0..MESSAGES, 100, 5..60).await;
    });

    let watched = (&history, MESSAGES);
    super::play_members(&cluster, &schedule, &members, watched, sending, LIVENESS).await;
    let deadline = Instant::now() + LIVENESS;
    while Copies::of(&history.entries()).owed().next().is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let entries = history.entries();
    let mut verdicts = checkers::delivery(&entries, None, LIVENESS);
    verdicts.push(not_after_ack(&entries));
    verdicts.push(delivered_until_acked(&entries, LIVENESS));
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// What [`Copies::of`] gathers besides the copies.
#[derive(Default)]
struct Seen {
    /// When the broker crashed or stopped.
    faults: Vec<Instant>,
    /// When the broker recovered its store (and so its offsets, as last flushed).
    recoveries: Vec<Instant>,
    /// When a receive failed or a member lost power (either may have handed out up to
    /// [`BATCH`] messages nobody recorded).
    lost_pops: Vec<Instant>,
}

impl Seen {
    fn fault_within(&self, from: Instant, to: Instant) -> bool {
        self.faults.iter().any(|f| (from..=to).contains(f))
    }
}

/// What became of a copy's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acked {
    /// No ack sent (a member left it, or lost power first): it must come again.
    No,
    /// Answered SUCCESS before its invisible time ran out: it must not come again.
    InTime,
    /// Sent, and answered late, refused or not at all: it may come again.
    Maybe,
}

/// One delivery of a message.
#[derive(Debug)]
struct Copy<'h> {
    id: u64,
    place: &'h Place,
    consumer: &'h str,
    at: Instant,
    /// When the broker handed it out, by its handle.
    popped: Option<Instant>,
    until: Instant,
    /// Its first handle's `until`: when a change was not answered in time, its old checkpoint
    /// may bring it again from then.
    first_until: Option<Instant>,
    acked: Acked,
    /// How many copies it may come again as: 2 after a change of its invisible time not
    /// answered in time (its old checkpoint and the new one), else 1.
    may_come: u32,
    /// When each copy it came again as was delivered.
    came: Vec<Instant>,
}

/// Every copy of a run, each later copy matched to the one it came from; and the first broken
/// promise of [`not_after_ack`], if one.
#[derive(Default)]
struct Copies<'h> {
    copies: Vec<Copy<'h>>,
    broken: Option<String>,
    /// Copies that came again with nothing to come from, excused ([`Copies::excused`]).
    unseen: usize,
    /// How many of those a failed receive excused.
    lost_used: usize,
}

impl<'h> Copies<'h> {
    fn of(entries: &'h [Entry]) -> Copies<'h> {
        let mut copies = Copies::default();
        let mut seen = Seen::default();
        for entry in entries {
            let at = entry.at;
            match &entry.event {
                Event::Crashed { node, .. } | Event::Stopped { node, .. }
                    if node.starts_with("broker-") =>
                {
                    seen.faults.push(at);
                }
                Event::Recovered { node, .. } if node.starts_with("broker-") => {
                    seen.recoveries.push(at);
                }
                // A member that lost power may have been receiving.
                Event::Crashed { node, .. } if node.starts_with("member-") => {
                    seen.lost_pops.push(at);
                }
                Event::PopLost { .. } => seen.lost_pops.push(at),
                Event::Delivered { consumer, place, id, .. } => copies.copies.push(Copy {
                    id: *id,
                    place,
                    consumer,
                    at,
                    popped: None,
                    until: at,
                    first_until: None,
                    acked: Acked::No,
                    may_come: 1,
                    came: Vec::new(),
                }),
                Event::Invisible { consumer, place, popped, until } => {
                    let Some(i) = copies.latest(consumer, place) else { continue };
                    let copy = &mut copies.copies[i];
                    copy.until = *until;
                    copy.first_until.get_or_insert(*until);
                    copy.popped.get_or_insert(*popped);
                }
                Event::PopAsked { consumer, place, change } => {
                    if let Some(i) = copies.latest(consumer, place) {
                        copies.copies[i].asked(*change);
                    }
                }
                Event::PopAnswered { consumer, place, change, answered } => {
                    if let Some(i) = copies.latest(consumer, place) {
                        copies.copies[i].answered(*change, *answered, at);
                    }
                }
                _ => {}
            }
        }
        copies.judge(&seen);
        copies
    }

    /// Goes through the copies in the order they were popped (a member may consume a copy
    /// long after it received it): a place popped before must have seen a fault of the broker
    /// in between; a new place of the retry topic is matched to a copy it came from.
    fn judge(&mut self, seen: &Seen) {
        let mut order: Vec<usize> = (0..self.copies.len()).collect();
        order.sort_by_key(|&i| self.copies[i].popped());
        let mut places: BTreeMap<&Place, Instant> = BTreeMap::new();
        for i in order {
            let copy = &self.copies[i];
            let (id, place, popped) = (copy.id, copy.place, copy.popped());
            if let Some(before) = places.insert(place, popped) {
                if !seen.fault_within(before, popped) && self.broken.is_none() {
                    self.broken = Some(format!(
                        "{place:?} popped at {before:?} and again for {} at {popped:?}, with no \
                         fault of the broker in between",
                        copy.consumer
                    ));
                }
            } else if place.topic.starts_with("%RETRY%") {
                self.came_again(id, place, popped, seen);
            }
        }
    }

    /// The latest copy `consumer` got from `place`.
    fn latest(&self, consumer: &str, place: &Place) -> Option<usize> {
        self.copies.iter().rposition(|c| c.consumer == consumer && c.place == place)
    }

    /// Message `id` came again at `place`, popped at `at`: matched
    /// to a copy it may come from (one that owes a copy first); with none, excused (see
    /// [`Copies::excused`]) or a broken promise.
    fn came_again(&mut self, id: u64, place: &Place, at: Instant, seen: &Seen) {
        let from = |copy: &Copy<'_>| {
            copy.id == id
                && copy.acked != Acked::InTime
                && copy.due() <= at
                && (copy.came.len() as u32) < copy.may_come
        };
        let must = self.copies.iter().position(|c| from(c) && c.owed());
        if let Some(i) = must.or_else(|| self.copies.iter().position(from)) {
            self.copies[i].came.push(at);
            return;
        }
        if self.excused(id, at, seen) {
            self.unseen += 1;
            return;
        }
        let early =
            self.copies.iter().find(|c| c.id == id && c.acked != Acked::InTime && c.place != place);
        let why = match early {
            Some(c) => format!(
                "message {id} came again at {place:?} at {at:?}, before the invisible time of \
                 its copy from {:?} ran out ({:?})",
                c.place, c.until
            ),
            None => format!(
                "message {id} came again at {place:?} at {at:?}, after each copy of it was \
                 acknowledged in time"
            ),
        };
        self.broken.get_or_insert(why);
    }

    /// Whether a copy of message `id` popped at `at` that came from no copy seen may still be
    /// the broker's due: a copy it came from came again already and the broker crashed or
    /// stopped after that copy's invisible time (its reviver may judge a checkpoint again); or
    /// a receive failed before, or a member lost power (up to [`BATCH`] messages each), that
    /// could have handed it out: no receive got it from its topic, or one did and the broker
    /// recovered its offsets (as last flushed) between the two.
    fn excused(&mut self, id: u64, at: Instant, seen: &Seen) -> bool {
        let judged_again = self.copies.iter().any(|c| {
            c.id == id
                && c.acked != Acked::InTime
                && !c.came.is_empty()
                && c.due() <= at
                && seen.fault_within(c.due(), at)
        });
        // Where it was first popped from its topic: a place is popped once but for a fault.
        let from_topic = self
            .copies
            .iter()
            .filter(|c| c.id == id && !c.place.topic.starts_with("%RETRY%"))
            .map(Copy::popped)
            .min();
        let lost = seen.lost_pops.iter().filter(|t| **t <= at);
        let could = lost.clone().any(|t| {
            let (from, to) = from_topic.map_or((*t, *t), |p| (p.min(*t), p.max(*t)));
            from_topic.is_none() || seen.recoveries.iter().any(|r| (from..=to).contains(r))
        });
        if judged_again {
            return true;
        }
        if could && self.lost_used < lost.count() * BATCH {
            self.lost_used += 1;
            return true;
        }
        false
    }

    /// Copies not acknowledged that have not come again yet.
    fn owed(&self) -> impl Iterator<Item = &Copy<'h>> {
        self.copies.iter().filter(|c| c.owed())
    }
}

impl Copy<'_> {
    /// When the broker handed it out (when it was delivered, if its handle is not known).
    fn popped(&self) -> Instant {
        self.popped.unwrap_or(self.at)
    }

    /// When it may come again from.
    fn due(&self) -> Instant {
        match self.may_come {
            1 => self.until,
            _ => self.first_until.unwrap_or(self.until).min(self.until),
        }
    }

    /// Not acknowledged, and not come again yet.
    fn owed(&self) -> bool {
        self.acked == Acked::No && self.came.is_empty()
    }

    /// An ack was sent: it may land. A change was sent: the new checkpoint may be written and
    /// the old one not acknowledged (the member lets the copy be unless the change is answered).
    fn asked(&mut self, change: bool) {
        match change {
            false => self.acked = Acked::Maybe,
            true => self.may_come = 2,
        }
    }

    /// An answer at `at`. A change answered in time replaces the checkpoint; one answered
    /// late (its old checkpoint may have been judged already) or not at all leaves the copy
    /// free to come again from the old one, whatever becomes of the new.
    fn answered(&mut self, change: bool, answered: Option<bool>, at: Instant) {
        let in_time = at < self.until;
        match (change, answered) {
            (false, Some(true)) if in_time && self.may_come == 1 => self.acked = Acked::InTime,
            (true, Some(true)) if in_time => self.may_come = 1,
            _ => {}
        }
    }
}

/// A message comes again only for a copy not acknowledged within its invisible time, once that
/// ran out; a place is delivered again only after a fault of the broker (see the module's
/// promises for what a fault or a failed receive excuses).
pub fn not_after_ack(entries: &[Entry]) -> Verdict {
    let copies = Copies::of(entries);
    let outcome = match copies.broken {
        Some(why) => Err(why),
        None => {
            let again = copies.copies.iter().map(|c| c.came.len()).sum::<usize>();
            let in_time = copies.copies.iter().filter(|c| c.acked == Acked::InTime).count();
            Ok(format!(
                "{} copies, {in_time} acknowledged in time, {again} came again from one not, \
                 {} from none seen ({} by a failed receive)",
                copies.copies.len(),
                copies.unseen,
                copies.lost_used
            ))
        }
    };
    Verdict::new("not_after_ack", outcome)
}

/// Every copy not acknowledged came again, within `bound` of the later of its invisible time
/// and the faults' end.
pub fn delivered_until_acked(entries: &[Entry], bound: Duration) -> Verdict {
    let healed = entries.iter().rev().find(|e| e.event == Event::Healed).map(|e| e.at);
    let Some(healed) = healed else {
        return Verdict::new("delivered_until_acked", Err("the faults never ended".into()));
    };
    let copies = Copies::of(entries);
    if let Some(copy) = copies.owed().next() {
        let why = format!(
            "message {} delivered to {} from {:?} at {:?}, not acknowledged, never came again",
            copy.id, copy.consumer, copy.place, copy.at
        );
        return Verdict::new("delivered_until_acked", Err(why));
    }
    let mut slowest = Duration::ZERO;
    let mut owed = 0;
    for copy in copies.copies.iter().filter(|c| c.acked == Acked::No) {
        owed += 1;
        let came = copy.came[0].saturating_duration_since(copy.due().max(healed));
        if came > bound {
            let why = format!(
                "message {} from {:?} came again {came:?} after its invisible time and the \
                 faults' end, over {bound:?}",
                copy.id, copy.place
            );
            return Verdict::new("delivered_until_acked", Err(why));
        }
        slowest = slowest.max(came);
    }
    let found = format!("{owed} copies not acknowledged, each came again (slowest {slowest:.1?})");
    Verdict::new("delivered_until_acked", Ok(found))
}

/// The POP checkers on small synthetic histories: one each must pass, and the breaks each must
/// catch.
#[cfg(test)]
mod tests {
    use super::*;

    /// A history written in milliseconds from a start.
    struct Script {
        start: Instant,
        entries: Vec<Entry>,
    }

    impl Script {
        fn new() -> Script {
            Script { start: Instant::now(), entries: Vec::new() }
        }

        fn at(&self, ms: u64) -> Instant {
            self.start + Duration::from_millis(ms)
        }

        fn push(mut self, ms: u64, event: Event) -> Script {
            self.entries.push(Entry { at: self.at(ms), event });
            self
        }

        /// `consumer` got message `id` from `place` at `ms`, popped then, hidden until `until`.
        fn popped(self, ms: u64, consumer: &str, (id, place): (u64, &Place), until: u64) -> Script {
            let (popped, until) = (self.at(ms), self.at(until));
            let delivered = Event::Delivered {
                consumer: consumer.into(),
                place: place.clone(),
                id,
                body_hash: 0,
                stored_wall: 0,
            };
            let hidden =
                Event::Invisible { consumer: consumer.into(), place: place.clone(), popped, until };
            self.push(ms, delivered).push(ms, hidden)
        }

        /// `consumer` acknowledged its copy from `place`, answered SUCCESS at `ms`.
        fn acked(self, ms: u64, consumer: &str, place: &Place) -> Script {
            let (consumer, place) = (consumer.to_owned(), place.clone());
            let asked =
                Event::PopAsked { consumer: consumer.clone(), place: place.clone(), change: false };
            let answered =
                Event::PopAnswered { consumer, place, change: false, answered: Some(true) };
            self.push(ms, asked).push(ms, answered)
        }

        fn healed(self, ms: u64) -> Script {
            self.push(ms, Event::Healed)
        }
    }

    fn place(topic: &str, offset: i64) -> Place {
        Place { broker: "broker-a".into(), topic: topic.into(), queue: 0, offset }
    }

    #[madsim::test]
    async fn a_copy_acknowledged_in_time_never_comes_again() {
        let (first, again) = (place(TOPIC, 3), place("%RETRY%SimPop_SimPopped", 0));
        let sound = Script::new().popped(0, "a", (7, &first), 3_000).acked(100, "a", &first);
        assert!(not_after_ack(&sound.entries).outcome.is_ok());
        let revived = sound.popped(6_000, "b", (7, &again), 9_000);
        let why = not_after_ack(&revived.entries).outcome.unwrap_err();
        assert!(why.contains("after each copy of it was acknowledged in time"), "{why}");
        let late = Script::new().popped(0, "a", (7, &first), 3_000).acked(3_500, "a", &first);
        let late = late.popped(6_000, "b", (7, &again), 9_000).acked(6_100, "b", &again);
        assert!(not_after_ack(&late.entries).outcome.is_ok(), "a late ack may not land in time");
    }

    #[madsim::test]
    async fn a_copy_left_comes_again_after_its_invisible_time_not_before() {
        let (first, again) = (place(TOPIC, 3), place("%RETRY%SimPop_SimPopped", 0));
        let left = Script::new().popped(0, "a", (7, &first), 3_000).healed(10);
        let why = delivered_until_acked(&left.entries, LIVENESS).outcome.unwrap_err();
        assert!(why.contains("never came again"), "{why}");
        let early = Script::new().popped(0, "a", (7, &first), 3_000).healed(10);
        let early = early.popped(2_000, "b", (7, &again), 5_000).acked(2_100, "b", &again);
        let why = not_after_ack(&early.entries).outcome.unwrap_err();
        assert!(why.contains("before the invisible time"), "{why}");
        let back = Script::new().popped(0, "a", (7, &first), 3_000).healed(10);
        let back = back.popped(5_000, "b", (7, &again), 8_000).acked(5_100, "b", &again);
        assert!(not_after_ack(&back.entries).outcome.is_ok());
        assert!(delivered_until_acked(&back.entries, LIVENESS).outcome.is_ok());
    }

    #[madsim::test]
    async fn a_place_popped_twice_needs_a_fault_between() {
        let first = place(TOPIC, 3);
        let twice = Script::new().popped(0, "a", (7, &first), 3_000).acked(10, "a", &first);
        let twice = twice.popped(500, "b", (7, &first), 3_500).acked(510, "b", &first);
        let why = not_after_ack(&twice.entries).outcome.unwrap_err();
        assert!(why.contains("with no fault of the broker in between"), "{why}");
        let crash = Event::Crashed { node: "broker-a".into(), wall: 0 };
        let crashed = Script::new().popped(0, "a", (7, &first), 3_000).acked(10, "a", &first);
        let crashed = crashed.push(200, crash).popped(500, "b", (7, &first), 3_500);
        assert!(not_after_ack(&crashed.entries).outcome.is_ok(), "its offsets were lost");
    }
}
