//! Orderly POP under simulation: a NameServer, a SYNC_FLUSH broker under a swarm fault plan, a
//! producer sending each message by its key (eight keys), and three members of an orderly POP
//! group (the SDK's `SimpleConsumer` with `orderly: true`), one of which loses power and comes
//! back. Each member receives up to eight messages at a time, each hidden for 2-5 s, and
//! consumes each queue's messages of the receive in order: it leaves one in ten of those that
//! come for the first time, and then the rest of that queue's messages of the receive (they
//! all come again once the invisible time ran out); of those it consumes, it never
//! acknowledges one in twenty (as if the ack were lost), acknowledges one in thirty after its
//! invisible time ran out, and the rest at once.
//!
//! The promises checked at the end, on the recorded history:
//! - the delivery promises every consumer scenario keeps ([`checkers::delivery`]), a message
//!   counting as delivered when a member consumed it;
//! - [`keys_in_send_order`]: the acknowledged messages of a key are stored in one queue, in
//!   send order;
//! - [`consumed_without_gap`]: the group consumes each queue with no gap: a member consumes an
//!   offset only once every earlier one of the queue was consumed (it may consume a suffix
//!   again: what it consumed and did not get acknowledged in time);
//! - [`queues_blocked`]: no receive gets a queue while another receive's messages of it are
//!   out (some not even asked to be acknowledged, their invisible time not run out), unless
//!   the broker crashed or stopped in between (what it wrote of its state may be older);
//! - [`out_until_acked`]: a message handed out and never asked to be acknowledged is handed
//!   out again after its invisible time.
//!
//! Run one seed: `cargo sim --seed 7 --scenario pop_orderly`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::history::{Entry, Event, History, Place};
use madsim::rand::{thread_rng, Rng};
use petrel_client::{PoppedMessage, SimpleConsumer};
use tokio::time::Instant;

use super::orderly::{keys_in_send_order, KEYS};
use super::pop::{answer, hidden, invisible};

const TOPIC: &str = "SimPopInOrder";
const GROUP: &str = "SimPopOrderly";
const MESSAGES: u64 = 160;
const BATCH: usize = 8;
/// Once the faults are over, every acknowledged message is consumed within this.
const LIVENESS: Duration = Duration::from_secs(60);
/// Instants made from wall-clock milliseconds may differ by this much.
const ROUNDING: Duration = Duration::from_millis(2);
/// A message out when the run ends, or whose invisible time ran out this shortly before, is
/// not yet owed to anyone again.
const GRACE: Duration = Duration::from_secs(15);

fn key(id: u64) -> String {
    format!("key-{}", id % KEYS)
}

/// Member `name`: receives until its node goes.
async fn member(name: String, history: History) {
    let consumer = clients::simple_consumer(GROUP, TOPIC, true);
    loop {
        let hide = Duration::from_millis(thread_rng().gen_range(2_000..5_000));
        let Ok(batch) = consumer.receive(BATCH, hide).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        for popped in &batch {
            let place = clients::place_of(&popped.message);
            history.record(invisible(&name, &popped.handle, &place));
        }
        let mut left = BTreeSet::new();
        for popped in batch {
            let queue = popped.message.queue.queue_id;
            if left.contains(&queue) {
                continue;
            }
            if popped.message.reconsume_times == 0 && thread_rng().gen_bool(0.1) {
                left.insert(queue);
                continue;
            }
            // One in twenty consumed is never acknowledged, as if the ack were lost before it
            // was sent: it and what follows it come again.
            let forget = thread_rng().gen_bool(0.05);
            consume(&consumer, &name, &history, popped, forget).await;
        }
    }
}

/// Consumes `popped` (recorded as delivered) and acknowledges it, now or late, unless it
/// forgets to.
async fn consume(
    consumer: &SimpleConsumer,
    name: &str,
    history: &History,
    popped: PoppedMessage,
    forget: bool,
) {
    history.record(clients::received(name, &popped.message));
    if forget {
        return;
    }
    let place = clients::place_of(&popped.message);
    if thread_rng().gen_bool(1.0 / 30.0) {
        let late = hidden(&popped.handle).1.saturating_duration_since(Instant::now());
        tokio::time::sleep(late + Duration::from_millis(500)).await;
    }
    let (consumer_name, change) = (name.to_owned(), false);
    history.record(Event::PopAsked {
        consumer: consumer_name.clone(),
        place: place.clone(),
        change,
    });
    let acked = consumer.ack(&popped).await;
    let answered = answer(&acked);
    history.record(Event::PopAnswered { consumer: consumer_name, place, change, answered });
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let (schedule, history, cluster) = super::one_broker_under_swarm(MESSAGES);
    let members = super::start_members(&cluster, &history, 3, member);
    let producing = history.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        clients::produce_keyed(producing, TOPIC, 0..MESSAGES, 100, 5..60, key).await;
    });

    let watched = (&history, MESSAGES);
    super::play_members(&cluster, &schedule, &members, watched, sending, LIVENESS).await;
    // What a restart handed back (an offset rolled back) takes a while to come round again.
    let deadline = Instant::now() + LIVENESS;
    while !hand_outs_owed(&history.entries(), Instant::now()).1.is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let entries = history.entries();
    // A member leaves messages and loses acks on purpose, each holding its queue back for an
    // invisible time: a queue's backlog drains at that pace, so liveness is counted from the
    // message before in the queue (seed 1196377131: 33 messages behind in one queue at the
    // healing, the last consumed 60.2 s after its acknowledgement).
    let mut verdicts = vec![
        checkers::never_truncated(&entries),
        checkers::durable(&entries, None),
        checkers::one_message_per_place(&entries),
        checkers::intact(&entries),
        checkers::live_in_order(&entries, None, LIVENESS),
    ];
    verdicts.push(keys_in_send_order(&entries));
    verdicts.push(consumed_without_gap(&entries));
    verdicts.push(queues_blocked(&entries));
    verdicts.push(out_until_acked(&entries));
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// The group consumes each queue with no gap: an offset only once every earlier one of the
/// queue was consumed (the queue's first consumption may start anywhere: where the group
/// first found it). Going back over a suffix already consumed is allowed: an orderly pop
/// hands out again what was not acknowledged in time.
pub fn consumed_without_gap(entries: &[Entry]) -> Verdict {
    let mut top: BTreeMap<Queue<'_>, i64> = BTreeMap::new();
    let (mut consumed, mut again) = (0, 0);
    for entry in entries {
        let Event::Delivered { consumer, place, .. } = &entry.event else { continue };
        let queue = (place.broker.as_str(), place.topic.as_str(), place.queue);
        let seen = top.entry(queue).or_insert(place.offset - 1);
        if place.offset > *seen + 1 {
            let why = format!(
                "{consumer} consumed {place:?} when the group had consumed the queue to {}",
                *seen
            );
            return Verdict::new("consumed_without_gap", Err(why));
        }
        consumed += 1;
        again += u64::from(place.offset <= *seen);
        *seen = (*seen).max(place.offset);
    }
    let found = format!("{consumed} consumptions of {} queues, {again} of them again", top.len());
    Verdict::new("consumed_without_gap", Ok(found))
}

/// A queue: its broker, topic and id.
type Queue<'h> = (&'h str, &'h str, i32);

/// Every message handed out that no member ever asked to acknowledge (left, forgotten, or
/// held by a member that lost power) is handed out again after each hand-out (once its
/// invisible time ran out, or sooner after a fault of the broker: [`queues_blocked`] judges
/// when); unless the run ended within [`GRACE`] of that time. (An ack sent may have landed,
/// late or not, and a restart may hand out again what was acknowledged: such a message may
/// come again or not.)
pub fn out_until_acked(entries: &[Entry]) -> Verdict {
    let Some(end) = entries.last().map(|e| e.at) else {
        return Verdict::new("out_until_acked", Ok("nothing happened".into()));
    };
    let (again, owed) = hand_outs_owed(entries, end);
    if let Some(HandedOut { consumer, place, popped, until }) = owed.first() {
        let why = format!(
            "{place:?} handed out to {consumer} at {popped:?}, no ack asked, never handed out \
             again after its invisible time ({until:?})"
        );
        return Verdict::new("out_until_acked", Err(why));
    }
    let found = format!("{again} hand-outs of messages never acknowledged, each handed out again");
    Verdict::new("out_until_acked", Ok(found))
}

/// A message handed out to a member.
struct HandedOut<'h> {
    consumer: &'h str,
    place: &'h Place,
    popped: Instant,
    until: Instant,
}

/// Of the hand-outs of messages no member asked to acknowledge whose invisible time ran out
/// [`GRACE`] before `end`: how many were handed out again, and those that were not.
fn hand_outs_owed(entries: &[Entry], end: Instant) -> (usize, Vec<HandedOut<'_>>) {
    let mut outs: BTreeMap<&Place, Vec<HandedOut<'_>>> = BTreeMap::new();
    let mut asked: BTreeSet<&Place> = BTreeSet::new();
    for entry in entries {
        match &entry.event {
            Event::Invisible { consumer, place, popped, until } => {
                let out = HandedOut { consumer, place, popped: *popped, until: *until };
                outs.entry(place).or_default().push(out);
            }
            Event::PopAsked { place, change: false, .. } => {
                asked.insert(place);
            }
            _ => {}
        }
    }
    let (mut again, mut owed) = (0, Vec::new());
    for (place, mut outs) in outs {
        if asked.contains(place) {
            continue;
        }
        outs.sort_by_key(|out| out.popped);
        let due = outs.iter().filter(|out| out.until + GRACE <= end).count();
        again += due.min(outs.len() - 1);
        if due == outs.len() {
            owed.extend(outs.pop());
        }
    }
    (again, owed)
}

/// One receive's messages of one queue.
struct HandOut<'h> {
    consumer: &'h str,
    queue: Queue<'h>,
    popped: Instant,
    until: Instant,
    places: Vec<&'h Place>,
}

/// No receive gets a queue while another receive's messages of it are out: popped before it,
/// their invisible time not run out, and one of them not even asked to be acknowledged by
/// then; unless the broker crashed or stopped between the two pops (or within [`ROUNDING`]
/// before the first: its time comes from the broker's milliseconds).
pub fn queues_blocked(entries: &[Entry]) -> Verdict {
    let mut faults: Vec<Instant> = Vec::new();
    let mut asked: BTreeMap<(&str, &Place), Vec<Instant>> = BTreeMap::new();
    let mut hand_outs: BTreeMap<(&str, Instant, Queue<'_>), HandOut<'_>> = BTreeMap::new();
    for entry in entries {
        match &entry.event {
            Event::Crashed { node, .. } | Event::Stopped { node, .. }
                if node.starts_with("broker-") =>
            {
                faults.push(entry.at);
            }
            Event::Invisible { consumer, place, popped, until } => {
                let queue = (place.broker.as_str(), place.topic.as_str(), place.queue);
                let out = hand_outs.entry((consumer, *popped, queue)).or_insert(HandOut {
                    consumer,
                    queue,
                    popped: *popped,
                    until: *until,
                    places: Vec::new(),
                });
                out.places.push(place);
            }
            Event::PopAsked { consumer, place, change: false } => {
                asked.entry((consumer, place)).or_default().push(entry.at);
            }
            _ => {}
        }
    }
    let mut by_queue: BTreeMap<Queue<'_>, Vec<&HandOut<'_>>> = BTreeMap::new();
    for out in hand_outs.values() {
        by_queue.entry(out.queue).or_default().push(out);
    }
    let mut checked = 0;
    for outs in by_queue.values_mut() {
        outs.sort_by_key(|o| o.popped);
        for (i, first) in outs.iter().enumerate() {
            for later in &outs[i + 1..] {
                if later.popped + ROUNDING >= first.until {
                    break;
                }
                checked += 1;
                let acked_by = |place: &&Place| {
                    asked.get(&(first.consumer, *place)).is_some_and(|at| {
                        at.iter().any(|t| *t >= first.popped && *t <= later.popped)
                    })
                };
                // The pop time is the broker's, in whole milliseconds: a crash that looks a
                // moment before it may have come after the pop (seed 1201188).
                let since = first.popped.checked_sub(ROUNDING).unwrap_or(first.popped);
                let fault = faults.iter().any(|f| (since..=later.popped).contains(f));
                if let Some(out) = first.places.iter().find(|p| !acked_by(p)).filter(|_| !fault) {
                    let why = format!(
                        "{} got {:?} at {:?} while {} had {out:?} out from {:?} until {:?}",
                        later.consumer,
                        later.queue,
                        later.popped,
                        first.consumer,
                        first.popped,
                        first.until
                    );
                    return Verdict::new("queues_blocked", Err(why));
                }
            }
        }
    }
    let found = format!(
        "{} receives of a queue, {checked} within another's invisible time",
        hand_outs.len()
    );
    Verdict::new("queues_blocked", Ok(found))
}

/// The orderly POP checkers on small synthetic histories: one each must pass, and the break
/// each must catch.
#[cfg(test)]
mod tests {
    use super::*;

    fn place(offset: i64) -> Place {
        Place { broker: "broker-a".into(), topic: TOPIC.into(), queue: 0, offset }
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn entry(start: Instant, ms: u64, event: Event) -> Entry {
        Entry { at: at(start, ms), event }
    }

    fn delivered(consumer: &str, offset: i64) -> Event {
        let place = place(offset);
        Event::Delivered { consumer: consumer.into(), place, id: 0, body_hash: 0, stored_wall: 0 }
    }

    /// `consumer` got `offsets` at `ms`, hidden for 3 s.
    fn handed(start: Instant, ms: u64, consumer: &str, offsets: &[i64]) -> Vec<Entry> {
        let (popped, until) = (at(start, ms), at(start, ms + 3_000));
        let hidden = |o: &i64| Event::Invisible {
            consumer: consumer.into(),
            place: place(*o),
            popped,
            until,
        };
        offsets.iter().map(|o| entry(start, ms, hidden(o))).collect()
    }

    fn asked(start: Instant, ms: u64, consumer: &str, offset: i64) -> Entry {
        let event =
            Event::PopAsked { consumer: consumer.into(), place: place(offset), change: false };
        entry(start, ms, event)
    }

    #[madsim::test]
    async fn a_queue_is_consumed_with_no_gap() {
        let start = Instant::now();
        let events = |offsets: &[i64]| -> Vec<Entry> {
            offsets.iter().map(|o| entry(start, 0, delivered("a", *o))).collect()
        };
        assert!(consumed_without_gap(&events(&[0, 1, 2, 1, 2, 3])).outcome.is_ok());
        assert!(consumed_without_gap(&events(&[0, 2])).outcome.is_err());
    }

    #[madsim::test]
    async fn a_queue_out_goes_to_no_other_receive() {
        let start = Instant::now();
        let first = handed(start, 0, "a", &[0, 1]);
        let acked = vec![asked(start, 100, "a", 0), asked(start, 110, "a", 1)];
        let second = handed(start, 1_000, "b", &[2]);
        let sound = [first.clone(), acked, second.clone()].concat();
        assert!(queues_blocked(&sound).outcome.is_ok());
        let half = [first.clone(), vec![asked(start, 100, "a", 0)], second.clone()].concat();
        assert!(queues_blocked(&half).outcome.is_err(), "1 was still out");
        let crash = entry(start, 500, Event::Crashed { node: "broker-a".into(), wall: 0 });
        let restarted = [first, vec![crash], second.clone()].concat();
        assert!(queues_blocked(&restarted).outcome.is_ok(), "the broker lost what was out");
        // A pop's time is the broker's milliseconds: a crash a millisecond before may follow it.
        let later = handed(start, 10, "a", &[0, 1]);
        let crash_at = |ms| entry(start, ms, Event::Crashed { node: "broker-a".into(), wall: 0 });
        let close = [vec![crash_at(9)], later.clone(), second.clone()].concat();
        assert!(queues_blocked(&close).outcome.is_ok(), "the crash may have followed the pop");
        let before = [vec![crash_at(5)], later, second].concat();
        assert!(queues_blocked(&before).outcome.is_err(), "the crash came before the pop");
    }

    #[madsim::test]
    async fn a_message_never_acknowledged_is_handed_out_again() {
        let start = Instant::now();
        let late = at(start, 60_000);
        let end = entry(start, 60_000, Event::Healed);
        let lost = [handed(start, 0, "a", &[0]), vec![end.clone()]].concat();
        assert!(out_until_acked(&lost).outcome.is_err());
        let again = [handed(start, 0, "a", &[0]), handed(start, 4_000, "b", &[0])].concat();
        let again = [again, vec![asked(start, 4_100, "b", 0), end]].concat();
        assert!(out_until_acked(&again).outcome.is_ok());
        assert!(hand_outs_owed(&again, late).1.is_empty());
    }
}
