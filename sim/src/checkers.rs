//! The promises, as checkers over a run's [`History`](crate::history::History). Each returns a
//! [`Verdict`]: what it found on success, the first broken promise otherwise. A scenario runs
//! the ones its workload speaks to, adds its own, and ends with [`conclude`], which notes every
//! verdict in the run's report and fails the run if any promise broke.
//!
//! The shared promises (`docs/simulation.md` lists them with their scenarios):
//! - [`durable`]: a message acknowledged under SYNC_FLUSH is delivered;
//! - [`never_truncated`]: no recovery cuts the commit log below a record acknowledged under
//!   SYNC_FLUSH;
//! - [`one_message_per_place`]: a (broker, topic, queue, offset) names one message forever,
//!   and an acknowledged message is delivered where its acknowledgement said;
//! - [`intact`]: a delivered message is one that was sent, not refused, with its body intact;
//! - [`offsets_advance`]: a consumer's offsets in a queue only go forward, except where it
//!   resumed, and it never resumes past what it had read;
//! - [`never_early`]: a delayed message is not delivered before it is due;
//! - [`duplicates_bounded`]: redeliveries are counted and stay within the scenario's bound;
//! - [`live`]: once the last fault is over, every acknowledged message is delivered within a
//!   bounded time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::history::{Entry, Event, Place};
use crate::report;

/// What one checker concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub checker: String,
    /// What was checked, or the first broken promise.
    pub outcome: Result<String, String>,
}

impl Verdict {
    pub fn new(checker: impl Into<String>, outcome: Result<String, String>) -> Verdict {
        Verdict { checker: checker.into(), outcome }
    }
}

/// Notes every verdict in the run's report and fails the run (a panic, the simulator's way)
/// with every broken promise if there is one.
pub fn conclude(verdicts: &[Verdict]) {
    let mut broken = Vec::new();
    for verdict in verdicts {
        match &verdict.outcome {
            Ok(found) => report::note(format!("  ok      {:<24} {found}", verdict.checker)),
            Err(why) => {
                report::note(format!("  BROKEN  {:<24} {why}", verdict.checker));
                broken.push(format!("{}: {why}", verdict.checker));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("; "));
}

fn acked(history: &[Entry]) -> BTreeMap<u64, Option<&Place>> {
    history
        .iter()
        .filter_map(|e| match &e.event {
            Event::Acked { id, place, .. } => Some((*id, place.as_ref())),
            _ => None,
        })
        .collect()
}

/// How many acknowledged messages `consumer` has not been delivered yet: a reader that waits
/// for all of them stops at 0.
pub fn undelivered(history: &[Entry], consumer: &str) -> usize {
    let delivered: std::collections::BTreeSet<u64> =
        deliveries(history, Some(consumer)).map(|(id, _, _)| id).collect();
    acked(history).keys().filter(|id| !delivered.contains(id)).count()
}

/// Every (id, place, when) delivered to `consumer` (to anyone when `None`).
fn deliveries<'h>(
    history: &'h [Entry],
    consumer: Option<&'h str>,
) -> impl Iterator<Item = (u64, &'h Place, &'h Entry)> + 'h {
    history.iter().filter_map(move |e| match &e.event {
        Event::Delivered { consumer: c, place, id, .. } if consumer.is_none_or(|x| x == c) => {
            Some((*id, place, e))
        }
        _ => None,
    })
}

/// The promises every scenario with consumers keeps: [`durable`] and [`live`] for `consumer`
/// (anyone, when `None`), [`one_message_per_place`], [`intact`] and [`never_truncated`].
pub fn delivery(history: &[Entry], consumer: Option<&str>, bound: Duration) -> Vec<Verdict> {
    vec![
        never_truncated(history),
        durable(history, consumer),
        one_message_per_place(history),
        intact(history),
        live(history, consumer, bound),
    ]
}

/// A record acknowledged under SYNC_FLUSH is never truncated: every recovery of its broker
/// after the acknowledgement keeps the commit log past the record's start. (The broker checks
/// after every request that it acknowledged only what it had confirmed; this is the same
/// promise seen from outside, across crashes.)
pub fn never_truncated(history: &[Entry]) -> Verdict {
    let mut acked: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    let mut recoveries = 0;
    for entry in history {
        match &entry.event {
            Event::Acked { id, place: Some(place), stored_at: Some(at) } => {
                acked.entry(place.broker.as_str()).or_default().push((*at, *id));
            }
            Event::Recovered { node, end } => {
                recoveries += 1;
                let lost = acked.get(node.as_str()).and_then(|records| {
                    records.iter().filter(|(at, _)| at >= end).min_by_key(|(at, _)| *at)
                });
                if let Some((at, id)) = lost {
                    let why = format!(
                        "{node} recovered its commit log to {end}, cutting message {id} \
                         acknowledged at {at}"
                    );
                    return Verdict::new("never_truncated", Err(why));
                }
            }
            _ => {}
        }
    }
    let count: usize = acked.values().map(Vec::len).sum();
    let found = format!("{count} acknowledged records kept by {recoveries} recoveries");
    Verdict::new("never_truncated", Ok(found))
}

/// Acknowledged under SYNC_FLUSH means delivered: every acknowledged message reached
/// `consumer` (any consumer, when `None`).
pub fn durable(history: &[Entry], consumer: Option<&str>) -> Verdict {
    let delivered: BTreeSet<u64> = deliveries(history, consumer).map(|(id, _, _)| id).collect();
    let acked = acked(history);
    let lost: Vec<String> = acked
        .iter()
        .filter(|(id, _)| !delivered.contains(id))
        .map(|(id, place)| match place {
            Some(p) => format!("{id} ({} {}:{} at {})", p.broker, p.topic, p.queue, p.offset),
            None => id.to_string(),
        })
        .collect();
    let outcome = match lost.is_empty() {
        true => Ok(format!("{} acknowledged, all delivered", acked.len())),
        false => {
            Err(format!("acknowledged under SYNC_FLUSH, never delivered: {}", lost.join(", ")))
        }
    };
    Verdict::new(named("durable", consumer), outcome)
}

/// A place names one message forever, and an acknowledged message is delivered where its
/// acknowledgement said it was stored.
pub fn one_message_per_place(history: &[Entry]) -> Verdict {
    let mut at: BTreeMap<&Place, u64> = BTreeMap::new();
    for (id, place) in acked(history).into_iter().filter_map(|(id, p)| Some((id, p?))) {
        if let Some(other) = at.insert(place, id) {
            let why = format!("{place:?} acknowledged for message {other} and message {id}");
            return Verdict::new("one_message_per_place", Err(why));
        }
    }
    let acked_places = at.len();
    for (id, place, _) in deliveries(history, None) {
        let first = *at.entry(place).or_insert(id);
        if first != id {
            let why = format!("{place:?} named message {first}, then message {id}");
            return Verdict::new("one_message_per_place", Err(why));
        }
    }
    let found = format!("{} places, {acked_places} of them acknowledged", at.len());
    Verdict::new("one_message_per_place", Ok(found))
}

/// Whatever was delivered was sent and not refused, and its body came whole.
pub fn intact(history: &[Entry]) -> Verdict {
    let mut sent: BTreeMap<u64, u32> = BTreeMap::new();
    // A refusal may be recorded after a delivery of the same message (the consumer can be
    // quicker than the producer's bookkeeping): collect them all first.
    let refused: BTreeSet<u64> = history
        .iter()
        .filter_map(|e| match e.event {
            Event::Refused { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    let mut checked = 0;
    for entry in history {
        match &entry.event {
            Event::Sent { id, body_hash, .. } => {
                sent.insert(*id, *body_hash);
            }
            Event::Delivered { id, body_hash, place, .. } => {
                let why = match sent.get(id) {
                    None => format!("message {id} delivered from {place:?} was never sent"),
                    Some(_) if refused.contains(id) => {
                        format!("message {id} delivered from {place:?}, but its send was refused")
                    }
                    Some(hash) if hash != body_hash => {
                        format!("message {id} delivered from {place:?} with another body")
                    }
                    Some(_) => {
                        checked += 1;
                        continue;
                    }
                };
                return Verdict::new("intact", Err(why));
            }
            _ => {}
        }
    }
    Verdict::new("intact", Ok(format!("{checked} deliveries whole")))
}

/// In each queue, each consumer's offsets only go forward, except where it resumed; and it
/// never resumes past what it had read (that would skip messages), unless at an offset it
/// committed itself (a commit it gave up on may still arrive after it was moved back: it had
/// read to there before).
pub fn offsets_advance(history: &[Entry]) -> Verdict {
    type Key<'h> = (&'h str, &'h str, &'h str, i32);
    let mut last: BTreeMap<Key<'_>, i64> = BTreeMap::new();
    let mut committed: BTreeSet<(Key<'_>, i64)> = BTreeSet::new();
    let mut resumes = 0;
    for entry in history {
        match &entry.event {
            Event::Committed { consumer, broker, topic, queue, offset, .. } => {
                let key = (consumer.as_str(), broker.as_str(), topic.as_str(), *queue);
                committed.insert((key, *offset));
            }
            Event::Delivered { consumer, place, .. } => {
                let key =
                    (consumer.as_str(), place.broker.as_str(), place.topic.as_str(), place.queue);
                if let Some(&previous) = last.get(&key) {
                    if place.offset <= previous {
                        let why = format!("{consumer} read {place:?} after offset {previous}");
                        return Verdict::new("offsets_advance", Err(why));
                    }
                }
                last.insert(key, place.offset);
            }
            Event::Resumed { consumer, broker, topic, queue, before, resumed } => {
                resumes += 1;
                let key = (consumer.as_str(), broker.as_str(), topic.as_str(), *queue);
                if resumed > before && !committed.contains(&(key, *resumed)) {
                    let why = format!(
                        "{consumer} resumed {broker}/{topic}/{queue} at {resumed}, past {before}"
                    );
                    return Verdict::new("offsets_advance", Err(why));
                }
                last.remove(&key);
            }
            _ => {}
        }
    }
    Verdict::new("offsets_advance", Ok(format!("{} queues read, {resumes} resumes", last.len())))
}

/// A delayed message is delivered no earlier than it is due, by the store's clock.
pub fn never_early(history: &[Entry]) -> Verdict {
    let due: BTreeMap<u64, i64> = history
        .iter()
        .filter_map(|e| match e.event {
            Event::Sent { id, due_wall: Some(due), .. } => Some((id, due)),
            _ => None,
        })
        .collect();
    let mut checked = 0;
    for entry in history {
        if let Event::Delivered { id, stored_wall, .. } = &entry.event {
            if let Some(&due) = due.get(id) {
                if *stored_wall < due {
                    let why = format!("delayed message {id} delivered at {stored_wall}, due {due}");
                    return Verdict::new("never_early", Err(why));
                }
                checked += 1;
            }
        }
    }
    Verdict::new("never_early", Ok(format!("{checked} delayed deliveries on time")))
}

/// The broker stores each message in its real topic once (a timer message's put is made once):
/// all of a message's deliveries come from one place.
pub fn stored_once(entries: &[Entry]) -> Verdict {
    let mut places: BTreeMap<u64, BTreeSet<&Place>> = BTreeMap::new();
    for entry in entries {
        if let Event::Delivered { id, place, .. } = &entry.event {
            places.entry(*id).or_default().insert(place);
        }
    }
    if let Some((id, at)) = places.iter().find(|(_, at)| at.len() > 1) {
        let why = format!("message {id} stored in its topic at {at:?}");
        return Verdict::new("stored_once", Err(why));
    }
    Verdict::new("stored_once", Ok(format!("{} messages, each from one place", places.len())))
}

/// A checker's name, with the consumer it looks at, if one.
fn named(checker: &str, consumer: Option<&str>) -> String {
    match consumer {
        Some(consumer) => format!("{checker}({consumer})"),
        None => checker.to_owned(),
    }
}

/// Deliveries of a message its consumer already had, at most `bound`.
pub fn duplicates_bounded(history: &[Entry], bound: u64) -> Verdict {
    let mut seen: BTreeSet<(&str, u64)> = BTreeSet::new();
    let mut duplicates = 0;
    for entry in history {
        if let Event::Delivered { consumer, id, .. } = &entry.event {
            if !seen.insert((consumer.as_str(), *id)) {
                duplicates += 1;
            }
        }
    }
    let outcome = match duplicates <= bound {
        true => Ok(format!("{duplicates} duplicates, bound {bound}")),
        false => Err(format!("{duplicates} duplicates, more than the bound {bound}")),
    };
    Verdict::new("duplicates_bounded", outcome)
}

/// Once the cluster healed, every acknowledged message reached `consumer` (anyone, when
/// `None`) within `bound` of the later of the healing and its acknowledgement.
pub fn live(history: &[Entry], consumer: Option<&str>, bound: Duration) -> Verdict {
    live_from(history, consumer, bound, false)
}

/// [`live`] for a queue consumed in order, where the group may hold a queue back on purpose
/// (an orderly POP member leaving a message, or its ack lost, blocks the queue for an
/// invisible time): each acknowledged message reached `consumer` within `bound` of the latest
/// of the healing, its acknowledgement and the first delivery of the message before it in its
/// queue. However long a queue's backlog, it may never stand still for `bound`.
pub fn live_in_order(history: &[Entry], consumer: Option<&str>, bound: Duration) -> Verdict {
    live_from(history, consumer, bound, true)
}

fn live_from(
    history: &[Entry],
    consumer: Option<&str>,
    bound: Duration,
    in_order: bool,
) -> Verdict {
    let name = named(if in_order { "live_in_order" } else { "live" }, consumer);
    let healed = history.iter().rev().find(|e| e.event == Event::Healed).map(|e| e.at);
    let Some(healed) = healed else {
        return Verdict::new(name, Err("the run never recorded the end of its faults".into()));
    };
    let mut first: BTreeMap<u64, tokio::time::Instant> = BTreeMap::new();
    let mut first_at: BTreeMap<&Place, tokio::time::Instant> = BTreeMap::new();
    for (id, place, entry) in deliveries(history, consumer) {
        first.entry(id).or_insert(entry.at);
        first_at.entry(place).or_insert(entry.at);
    }
    let mut slowest = Duration::ZERO;
    for entry in history {
        let Event::Acked { id, place, .. } = &entry.event else { continue };
        let Some(&at) = first.get(id) else {
            let why = format!("message {id} was not delivered within {bound:?} of the faults' end");
            return Verdict::new(name, Err(why));
        };
        let before = place.as_ref().filter(|_| in_order).and_then(|place| {
            let previous = Place { offset: place.offset - 1, ..place.clone() };
            first_at.get(&previous).copied()
        });
        let after =
            at.saturating_duration_since(healed.max(entry.at).max(before.unwrap_or(healed)));
        if after > bound {
            let why = format!("message {id} delivered {after:?} after the faults, over {bound:?}");
            return Verdict::new(name, Err(why));
        }
        slowest = slowest.max(after);
    }
    let found = format!("each delivered within {slowest:.1?} of the faults' end (bound {bound:?})");
    Verdict::new(name, Ok(found))
}

/// Each checker on small synthetic histories: one it must pass, and the break it must catch.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::SendMode;
    use tokio::time::Instant;

    fn place(offset: i64) -> Place {
        Place { broker: "b".into(), topic: "T".into(), queue: 0, offset }
    }

    fn sent(id: u64) -> Event {
        Event::Sent { id, mode: SendMode::Sync, body_hash: id as u32, due_wall: None }
    }

    fn acked(id: u64, offset: i64, stored_at: u64) -> Event {
        Event::Acked { id, place: Some(place(offset)), stored_at: Some(stored_at) }
    }

    fn delivered(id: u64, offset: i64) -> Event {
        let (consumer, body_hash, stored_wall) = ("c".into(), id as u32, 0);
        Event::Delivered { consumer, place: place(offset), id, body_hash, stored_wall }
    }

    fn entries(events: Vec<Event>) -> Vec<Entry> {
        let at = Instant::now();
        events.into_iter().map(|event| Entry { at, event }).collect()
    }

    /// Messages 1 and 2 sent, acknowledged at offsets 0 and 1 (records at 0 and 100), and
    /// delivered from there.
    fn sound() -> Vec<Event> {
        vec![sent(1), acked(1, 0, 0), sent(2), acked(2, 1, 100), delivered(1, 0), delivered(2, 1)]
    }

    fn ok(verdict: Verdict) -> bool {
        verdict.outcome.is_ok()
    }

    #[madsim::test]
    async fn a_sound_history_keeps_every_promise() {
        let history = entries(sound());
        assert!(ok(never_truncated(&history)));
        assert!(ok(durable(&history, Some("c"))));
        assert!(ok(one_message_per_place(&history)));
        assert!(ok(intact(&history)));
        assert!(ok(offsets_advance(&history)));
        assert!(ok(never_early(&history)));
        assert!(ok(duplicates_bounded(&history, 0)));
    }

    #[madsim::test]
    async fn a_recovery_below_an_acknowledged_record_is_a_truncation() {
        let recovered = |end| Event::Recovered { node: "b".into(), end };
        let mut events = sound();
        events.push(recovered(101));
        assert!(ok(never_truncated(&entries(events.clone()))), "both records start below 101");
        events.push(recovered(100));
        let why = never_truncated(&entries(events)).outcome.unwrap_err();
        assert!(why.contains("cutting message 2"), "{why}");
        // A recovery before the acknowledgement cuts nothing acknowledged.
        let mut events = sound();
        events.insert(3, recovered(100));
        assert!(ok(never_truncated(&entries(events))));
    }

    #[madsim::test]
    async fn an_acknowledged_message_never_delivered_is_lost() {
        let mut events = sound();
        events.retain(|e| !matches!(e, Event::Delivered { id: 2, .. }));
        let why = durable(&entries(events), Some("c")).outcome.unwrap_err();
        assert!(why.contains("never delivered: 2"), "{why}");
        assert!(durable(&entries(sound()), Some("another")).outcome.is_err());
    }

    #[madsim::test]
    async fn a_place_names_one_message() {
        let mut events = sound();
        events.push(delivered(3, 1));
        assert!(one_message_per_place(&entries(events)).outcome.unwrap_err().contains("message 3"));
        let mut events = sound();
        events.push(acked(3, 1, 200));
        assert!(!ok(one_message_per_place(&entries(events))), "two acks for one place");
    }

    #[madsim::test]
    async fn a_delivery_must_be_sent_unrefused_and_whole() {
        let mut never_sent = sound();
        never_sent.push(delivered(9, 2));
        assert!(intact(&entries(never_sent)).outcome.unwrap_err().contains("never sent"));
        let mut refused = sound();
        refused.push(Event::Refused { id: 2, code: 17 });
        assert!(intact(&entries(refused)).outcome.unwrap_err().contains("refused"));
        let mut altered = sound();
        altered.push(Event::Delivered {
            consumer: "c".into(),
            place: place(1),
            id: 2,
            body_hash: 7,
            stored_wall: 0,
        });
        assert!(intact(&entries(altered)).outcome.unwrap_err().contains("another body"));
    }

    #[madsim::test]
    async fn offsets_go_back_only_where_a_consumer_resumed_and_never_skip() {
        let resumed = |before, resumed| Event::Resumed {
            consumer: "c".into(),
            broker: "b".into(),
            topic: "T".into(),
            queue: 0,
            before,
            resumed,
        };
        let mut again = sound();
        again.push(delivered(1, 0));
        assert!(!ok(offsets_advance(&entries(again.clone()))));
        again.insert(6, resumed(1, 0));
        assert!(ok(offsets_advance(&entries(again))));
        let mut skipped = sound();
        skipped.push(resumed(1, 5));
        assert!(offsets_advance(&entries(skipped.clone())).outcome.unwrap_err().contains("past 1"));
        // Forward to an offset the consumer committed (its commit arrived late): no skip.
        skipped.insert(
            skipped.len() - 1,
            Event::Committed {
                consumer: "c".into(),
                broker: "b".into(),
                topic: "T".into(),
                queue: 0,
                offset: 5,
                sent: tokio::time::Instant::now(),
                answered: false,
            },
        );
        assert!(ok(offsets_advance(&entries(skipped))));
    }

    #[madsim::test]
    async fn a_delayed_message_is_not_delivered_before_it_is_due() {
        let delayed =
            |due| Event::Sent { id: 3, mode: SendMode::Sync, body_hash: 3, due_wall: Some(due) };
        let delivery = |stored_wall| Event::Delivered {
            consumer: "c".into(),
            place: place(2),
            id: 3,
            body_hash: 3,
            stored_wall,
        };
        assert!(ok(never_early(&entries(vec![delayed(1000), delivery(1000)]))));
        assert!(!ok(never_early(&entries(vec![delayed(1000), delivery(999)]))));
    }

    #[madsim::test]
    async fn a_message_stored_at_two_places_is_caught() {
        let at = |offset, consumer: &str| Event::Delivered {
            consumer: consumer.into(),
            place: place(offset),
            id: 3,
            body_hash: 3,
            stored_wall: 0,
        };
        assert!(ok(stored_once(&entries(vec![at(2, "c"), at(2, "replica-0")]))));
        assert!(!ok(stored_once(&entries(vec![at(2, "c"), at(3, "replica-0")]))));
    }

    #[madsim::test]
    async fn duplicates_are_counted_per_consumer_against_the_bound() {
        let mut events = sound();
        events.push(delivered(1, 0));
        assert!(ok(duplicates_bounded(&entries(events.clone()), 1)));
        assert!(!ok(duplicates_bounded(&entries(events), 0)));
    }

    #[madsim::test]
    async fn live_needs_each_acknowledged_message_within_the_bound_of_the_healing() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let history = |delivered_at| {
            vec![
                Entry { at: at(0), event: sent(1) },
                Entry { at: at(0), event: acked(1, 0, 0) },
                Entry { at: at(10), event: Event::Healed },
                Entry { at: at(delivered_at), event: delivered(1, 0) },
            ]
        };
        let bound = Duration::from_secs(5);
        assert!(ok(live(&history(15), Some("c"), bound)));
        assert!(live(&history(16), Some("c"), bound).outcome.unwrap_err().contains("over"));
        let unhealed: Vec<Entry> =
            history(15).into_iter().filter(|e| e.event != Event::Healed).collect();
        assert!(!ok(live(&unhealed, Some("c"), bound)));
    }

    #[madsim::test]
    async fn live_in_order_counts_from_the_message_before_in_the_queue() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let history = |second_at| {
            vec![
                Entry { at: at(0), event: sent(1) },
                Entry { at: at(0), event: acked(1, 0, 0) },
                Entry { at: at(0), event: sent(2) },
                Entry { at: at(0), event: acked(2, 1, 1) },
                Entry { at: at(10), event: Event::Healed },
                Entry { at: at(14), event: delivered(1, 0) },
                Entry { at: at(second_at), event: delivered(2, 1) },
            ]
        };
        let bound = Duration::from_secs(5);
        assert!(!ok(live(&history(19), Some("c"), bound)), "19 s is 9 s after the healing");
        assert!(ok(live_in_order(&history(19), Some("c"), bound)), "5 s after message 1");
        assert!(!ok(live_in_order(&history(20), Some("c"), bound)), "the queue stood still");
    }
}
