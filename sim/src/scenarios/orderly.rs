//! Ordered consumption under simulation: a NameServer, a SYNC_FLUSH broker under a swarm fault
//! plan, a producer sending each message by its key (eight keys), and an orderly consumer
//! group that grows and shrinks: member-0 from the start, member-1 joins, member-2 joins later
//! and shuts down (it commits and unlocks its queues) after a while, and one member loses
//! power and comes back. Each member locks a queue on the broker before it takes it.
//!
//! The promises checked at the end, on the recorded history:
//! - the delivery promises every consumer scenario keeps ([`checkers::delivery`]);
//! - [`keys_in_send_order`]: the acknowledged messages of a key are stored in one queue, in
//!   send order;
//! - [`queues_in_order`]: each member consumes a queue in offset order; it may go back and
//!   consume a suffix again (a take-over at an older commit), at most once per event that can
//!   cause one (a membership change, a fault of the broker); and the group never skips an
//!   offset;
//! - [`locks_exclusive`]: no two members consume a queue under locks the broker held for both
//!   at one instant (each held from its grant's answer to the consumption), unless the broker
//!   restarted between the two grants (its locks live in memory, as RocketMQ's), and none
//!   under a lock asked for 30 s before or more.
//!
//! Run one seed: `cargo sim --seed 7 --scenario orderly`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::cluster::Cluster;
use crate::faults::FaultPlan;
use crate::history::{Entry, Event, History, Place};
use crate::report;
use madsim::rand::{thread_rng, Rng};
use petrel_client::PushConsumerConfig;
use petrel_core::client::orderly::LOCK_VALID_MS;
use tokio::time::Instant;

const TOPIC: &str = "SimOrdered";
const MESSAGES: u64 = 160;
pub(crate) const KEYS: u64 = 8;
/// The membership changes a queue can be handed over in: member-1 and member-2 join, member-2
/// leaves, one member loses power and returns.
const MEMBERSHIP_CHANGES: u64 = 5;
/// Once the faults are over, every acknowledged message is consumed within this: a member
/// that lost power held its locks, which lapse on the broker a minute after their last renewal.
const LIVENESS: Duration = Duration::from_secs(120);

fn key(id: u64) -> String {
    format!("key-{}", id % KEYS)
}

/// Member `n`: starts `after` the run began, and when `lifetime` is some, shuts down that long
/// after it started.
async fn member(n: usize, history: History, after: Duration, lifetime: Option<Duration>) {
    tokio::time::sleep(after).await;
    let config = PushConsumerConfig {
        hold: Duration::from_millis(500),
        lock_renew_interval: Duration::from_secs(5),
        ..clients::push_config("SimOrderly", TOPIC)
    };
    clients::orderly_consume(format!("member-{n}"), history, config, lifetime).await;
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    let joins = [0, thread_rng().gen_range(1_000..4_000), thread_rng().gen_range(3_000..8_000)];
    let lifetime = Duration::from_millis(thread_rng().gen_range(2_000..10_000));
    report::note(format!("members join after {joins:?} ms; member-2 leaves {lifetime:?} later"));
    report::note(format!("fault schedule of broker-a (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster = Cluster::builder().disk_faults(schedule.disk).build(&history);
    let members: Vec<_> = (0..3)
        .map(|n| {
            let history = history.clone();
            let after = Duration::from_millis(joins[n]);
            let lifetime = (n == 2).then_some(lifetime);
            cluster.process(&format!("member-{n}"), move || {
                member(n, history.clone(), after, lifetime)
            })
        })
        .collect();
    let producing = history.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        clients::produce_keyed(producing, TOPIC, 0..MESSAGES, 100, 5..60, key).await;
    });

    let watched = (&history, MESSAGES);
    let entries =
        super::play_members(&cluster, &schedule, &members, watched, sending, LIVENESS).await;
    let mut verdicts = checkers::delivery(&entries, None, LIVENESS);
    verdicts.push(keys_in_send_order(&entries));
    verdicts.push(queues_in_order(&entries, schedule.faults.len() as u64));
    verdicts.push(locks_exclusive(&entries));
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// The acknowledged messages of each key are stored in one queue, in the order they were sent
/// (ids grow with send order).
pub fn keys_in_send_order(entries: &[Entry]) -> Verdict {
    let mut by_key: BTreeMap<u64, Vec<(u64, &Place)>> = BTreeMap::new();
    for entry in entries {
        if let Event::Acked { id, place: Some(place), .. } = &entry.event {
            by_key.entry(id % KEYS).or_default().push((*id, place));
        }
    }
    for (key, mut sent) in by_key {
        sent.sort_by_key(|(id, _)| *id);
        for pair in sent.windows(2) {
            let ((a, at), (b, bt)) = (pair[0], pair[1]);
            let same_queue = (&at.broker, &at.topic, at.queue) == (&bt.broker, &bt.topic, bt.queue);
            if !same_queue || bt.offset <= at.offset {
                let why = format!("key {key}: message {a} at {at:?}, the later {b} at {bt:?}");
                return Verdict::new("keys_in_send_order", Err(why));
            }
        }
    }
    Verdict::new("keys_in_send_order", Ok("each key in one queue, in send order".into()))
}

/// Each queue in order. A member's delivery of a queue is the offset after its previous one;
/// or, when another member consumed the queue since, a later one (it took the queue back); or
/// else a re-take: at or before its previous offset (at an older commit: a suffix consumed
/// again), or past it (at a newer commit another member made: seed 2966, a member went back
/// to 0 after the broker lost its offsets, let the queue go and took it again at the commit
/// of the member that had consumed up to 26), at most once per membership change, broker
/// fault and broker stop. And no delivery skips forward past every offset the group consumed
/// before (no gap). Two members may both be consuming a queue for a while after its broker
/// restarted (see [`locks_exclusive`]); each keeps the order. A member that lost power or
/// stopped starts again from the group's commit (seed 1027): its order begins anew.
pub fn queues_in_order(entries: &[Entry], broker_faults: u64) -> Verdict {
    let stops = entries.iter().filter(|e| matches!(e.event, Event::Stopped { .. })).count();
    let bound = MEMBERSHIP_CHANGES + broker_faults + stops as u64;
    let mut queues: BTreeMap<(&str, &str, i32), QueueSeen<'_>> = BTreeMap::new();
    for (step, entry) in entries.iter().enumerate() {
        if let Event::Crashed { node, .. } | Event::Stopped { node, .. } = &entry.event {
            // Its last delivery still shows the others it had the queue in between.
            for member in queues.values_mut().filter_map(|q| q.members.get_mut(node.as_str())) {
                member.offset = -1;
            }
            continue;
        }
        let Event::Delivered { place, consumer, .. } = &entry.event else { continue };
        let queue = (place.broker.as_str(), place.topic.as_str(), place.queue);
        let seen = queues.entry(queue).or_insert(QueueSeen { top: -1, members: BTreeMap::new() });
        let last = seen.members.get(consumer.as_str()).copied();
        let (last_step, previous, backs) = last.map_or((0, -1, 0), |m| (m.step, m.offset, m.backs));
        let handed = seen.members.iter().any(|(c, m)| *c != consumer && m.step > last_step);
        let (offset, top) = (place.offset, seen.top);
        let jumped = offset > previous + 1 && previous >= 0 && !handed;
        let backs = backs + u64::from(offset <= previous || jumped);
        let why = if offset > top + 1 {
            Some(format!("{consumer} consumed offset {offset} when the group had {top}"))
        } else if backs > bound {
            Some(format!("{consumer} went back or jumped ahead {backs} times, over {bound}"))
        } else {
            None
        };
        if let Some(why) = why {
            return Verdict::new("queues_in_order", Err(format!("{queue:?}: {why}")));
        }
        seen.top = top.max(offset);
        seen.members.insert(consumer, MemberSeen { step, offset, backs });
    }
    let most = queues.values().flat_map(|q| q.members.values().map(|m| m.backs)).max();
    let (queues, most) = (queues.len(), most.unwrap_or(0));
    let found = format!("{queues} queues in order; at most {most} go-backs, bound {bound}");
    Verdict::new("queues_in_order", Ok(found))
}

/// What [`queues_in_order`] knows of a queue: the highest offset the group consumed, and each
/// member's last delivery.
struct QueueSeen<'a> {
    top: i64,
    members: BTreeMap<&'a str, MemberSeen>,
}

/// A member's last delivery of a queue (the entry's index, the offset) and its go-backs.
#[derive(Clone, Copy)]
struct MemberSeen {
    step: usize,
    offset: i64,
    backs: u64,
}

/// A consumption by one member, at `at`, under a lock asked for at `lock_asked` and whose
/// grant reached the member at `lock_answered`.
struct UnderLock<'a> {
    consumer: &'a str,
    at: Instant,
    lock_asked: Instant,
    lock_answered: Instant,
}

impl UnderLock<'_> {
    /// Whether the broker may have granted this lock before `restart` and `other`'s after it.
    fn granted_across(&self, restart: Instant, other: &UnderLock<'_>) -> bool {
        self.lock_asked < restart && restart <= other.lock_answered
    }
}

/// No two members consume a queue under locks the broker held for both at one instant. A
/// member's lock was granted between its ask and its answer, and it relied on it until it
/// consumed: it was held from the answer to the consumption at least. Two such spans of two
/// members may overlap only when the broker restarted (it crashed or stopped, forgetting its
/// locks) after one lock's grant and before the other's. An ask's time alone says nothing of
/// its grant: an ask held up in the network reaches the broker after another member took the
/// queue and let it go (seed 500069). And no member consumes under a lock asked for 30 s
/// before or more (so that window closes within 30 s).
pub fn locks_exclusive(entries: &[Entry]) -> Verdict {
    let mut restarts: BTreeMap<&str, Vec<Instant>> = BTreeMap::new();
    let mut consumed: BTreeMap<(&str, &str, i32), Vec<UnderLock<'_>>> = BTreeMap::new();
    for entry in entries {
        match &entry.event {
            Event::Crashed { node, .. } | Event::Stopped { node, .. } => {
                restarts.entry(node.as_str()).or_default().push(entry.at);
            }
            Event::UnderLock { consumer, place, lock_asked, lock_answered } => {
                let queue = (place.broker.as_str(), place.topic.as_str(), place.queue);
                let (lock_asked, lock_answered) = (*lock_asked, *lock_answered);
                let record = UnderLock { consumer, at: entry.at, lock_asked, lock_answered };
                consumed.entry(queue).or_default().push(record);
            }
            _ => {}
        }
    }
    let mut checked = 0;
    let trusted = Duration::from_millis(LOCK_VALID_MS);
    for (queue, records) in &consumed {
        let restarted = restarts.get(queue.0).map_or(&[][..], Vec::as_slice);
        for one in records {
            if one.at >= one.lock_asked + trusted {
                let why = format!(
                    "{queue:?}: {} consumed at {:?} under a lock asked for at {:?}, over {trusted:?} before",
                    one.consumer, one.at, one.lock_asked
                );
                return Verdict::new("locks_exclusive", Err(why));
            }
            for other in records.iter().filter(|r| r.consumer != one.consumer) {
                checked += 1;
                let both_held = one.lock_answered.max(other.lock_answered) <= one.at.min(other.at);
                let forgotten = restarted
                    .iter()
                    .any(|r| one.granted_across(*r, other) || other.granted_across(*r, one));
                if both_held && !forgotten {
                    let why = format!(
                        "{queue:?}: {} consumed at {:?} under a lock granted by {:?}, and {} at {:?} under its own, granted by {:?}",
                        one.consumer, one.at, one.lock_answered, other.consumer, other.at, other.lock_answered
                    );
                    return Verdict::new("locks_exclusive", Err(why));
                }
            }
        }
    }
    Verdict::new("locks_exclusive", Ok(format!("{checked} pairs of consumptions by two members")))
}

/// The scenario's checkers on small synthetic histories: what they must pass and the breaks
/// they must catch.
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn place(queue: i32, offset: i64) -> Place {
        Place { broker: "broker-a".into(), topic: TOPIC.into(), queue, offset }
    }

    fn delivered(consumer: &str, offset: i64) -> Event {
        let place = place(0, offset);
        Event::Delivered { consumer: consumer.into(), place, id: 0, body_hash: 0, stored_wall: 0 }
    }

    /// Each event a millisecond after the one before.
    fn entries(events: Vec<Event>) -> Vec<Entry> {
        let start = Instant::now();
        let at = |i: usize| start + Duration::from_millis(i as u64);
        events.into_iter().enumerate().map(|(i, event)| Entry { at: at(i), event }).collect()
    }

    fn in_order(events: Vec<Event>) -> Result<String, String> {
        queues_in_order(&entries(events), 0).outcome
    }

    #[madsim::test]
    async fn a_queue_goes_back_after_a_take_over_but_never_skips() {
        let (a, b) = (|o| delivered("a", o), |o| delivered("b", o));
        assert!(in_order(vec![a(0), a(1), b(1), b(2), a(3)]).is_ok(), "b took over, a took back");
        assert!(in_order(vec![a(0), a(1), b(0), a(2), b(1)]).is_ok(), "two at once, each in order");
        let gap = in_order(vec![a(0), a(2)]).unwrap_err();
        assert!(gap.contains("offset 2 when the group had 0"), "{gap}");
        assert!(in_order(vec![a(0), a(1), b(2), a(0), a(2)]).is_ok(), "a re-take at b's commit");
        let hops: Vec<Event> = [a(0), a(1), a(2)]
            .into_iter()
            .chain((0..=MEMBERSHIP_CHANGES).flat_map(|_| [a(0), a(2)]))
            .collect();
        assert!(in_order(hops).unwrap_err().contains("jumped ahead"));
        let first = in_order(vec![a(1)]).unwrap_err();
        assert!(first.contains("offset 1 when the group had -1"), "{first}");
        let backs: Vec<Event> = (0..=MEMBERSHIP_CHANGES + 1).map(|_| a(0)).collect();
        assert!(in_order(backs).unwrap_err().contains("went back"));
        let crash = Event::Crashed { node: "b".into(), wall: 0 };
        let restarted = vec![a(0), a(1), a(2), b(0), b(1), crash.clone(), b(3)];
        assert!(in_order(restarted).is_ok(), "b came back at the commit a moved");
        let past = in_order(vec![a(0), b(0), crash, b(2)]).unwrap_err();
        assert!(past.contains("offset 2 when the group had 0"), "{past}");
    }

    #[madsim::test]
    async fn keys_keep_their_send_order_in_one_queue() {
        let acked = |id, queue, offset| Event::Acked {
            id,
            place: Some(place(queue, offset)),
            stored_at: None,
        };
        let (k0, k0_later) = (0, KEYS);
        let sound = vec![acked(k0, 1, 5), acked(1, 2, 0), acked(k0_later, 1, 6)];
        assert!(keys_in_send_order(&entries(sound)).outcome.is_ok());
        let swapped = vec![acked(k0, 1, 6), acked(k0_later, 1, 5)];
        assert!(keys_in_send_order(&entries(swapped)).outcome.is_err());
        let moved = vec![acked(k0, 1, 5), acked(k0_later, 2, 6)];
        assert!(keys_in_send_order(&entries(moved)).outcome.is_err());
    }

    #[madsim::test]
    async fn two_members_holding_one_queue_at_once_break_exclusivity() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let under = |consumer: &str, at: u64, asked: u64, answered: u64| Entry {
            at: ms(at),
            event: Event::UnderLock {
                consumer: consumer.into(),
                place: place(0, 0),
                lock_asked: ms(asked),
                lock_answered: ms(answered),
            },
        };
        let handed = vec![under("a", 10, 0, 1), under("a", 20, 0, 1), under("b", 40, 30, 31)];
        assert!(locks_exclusive(&handed).outcome.is_ok());
        let overlapping = vec![under("a", 10, 0, 1), under("b", 40, 15, 16), under("a", 50, 0, 1)];
        let why = locks_exclusive(&overlapping).outcome.unwrap_err();
        assert!(why.contains("b consumed at") && why.contains("and a at"), "{why}");
        let inside = vec![under("b", 40, 15, 16), under("a", 30, 20, 25)];
        assert!(locks_exclusive(&inside).outcome.is_err(), "a held it within b's span");
        let granted_later =
            vec![under("a", 10, 0, 1), under("a", 20, 0, 1), under("b", 40, 15, 35)];
        assert!(locks_exclusive(&granted_later).outcome.is_ok(), "b's ask may be granted at 35");
        let held_up = vec![under("b", 30, 10, 20), under("a", 60, 0, 50)];
        assert!(locks_exclusive(&held_up).outcome.is_ok(), "a's ask reached the broker late");
        let crash =
            Entry { at: ms(12), event: Event::Crashed { node: "broker-a".into(), wall: 12 } };
        let restarted = [vec![crash.clone()], overlapping.clone()].concat();
        assert!(locks_exclusive(&restarted).outcome.is_ok(), "the broker forgot a's lock");
        let crash_late = Entry { at: ms(45), ..crash };
        let both_before = [overlapping, vec![crash_late]].concat();
        assert!(locks_exclusive(&both_before).outcome.is_err(), "both granted before the crash");
        let stale = vec![under("a", 30_000, 0, 1)];
        assert!(locks_exclusive(&stale).outcome.unwrap_err().contains("over 30s"));
    }
}
