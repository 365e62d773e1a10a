//! The Rust lite pull consumer under simulation: a NameServer, a SYNC_FLUSH broker on a
//! simulated disk under a swarm fault plan (power losses, partitions, one-way cuts, latency,
//! torn writes, failed fsyncs, ENOSPC, bit flips)
//! while messages flow, a producer (every eighth body large enough to go compressed), and a pull
//! consumer that polls every queue and now and then seeks one of them somewhere it has read.
//!
//! The promises checked at the end, on the recorded history:
//! - a seek is obeyed: the next message the consumer gets from that queue is the one at the
//!   offset it sought;
//! - a (queue, offset) never names two different messages, and an acknowledged message is
//!   read exactly where the acknowledgement said it was stored, whole;
//! - after the last fault, seeking every queue to its start reads every acknowledged message,
//!   within a bounded time;
//! - a commit is kept: a new consumer of the group starts where the last one committed, and
//!   reads nothing the consumer before it read, unless a commit that went unanswered (the
//!   network may deliver it late, after the last one, as TCP retransmits it) set the offset
//!   back: then it starts exactly where that commit said.
//!
//! Run one seed: `cargo sim --seed 7 --scenario pull_consumer`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::cluster::{Cluster, Strike, NAMESRV};
use crate::history::{Entry, Event, History};
use madsim::rand::{thread_rng, Rng};
use petrel_client::{ConsumeFrom, PullConsumer, PullConsumerConfig, ReceivedMessage};
use petrel_core::client::MessageQueue;

const TOPIC: &str = "SimPulled";
const GROUP: &str = "SimSeekers";
const MESSAGES: u64 = 200;
/// Once the faults are over, the sweep reads every acknowledged message within this.
const LIVENESS: Duration = Duration::from_secs(60);
/// How often the seeker commits (the SDK's auto-commit period).
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// What the seeks did, beside the run's history.
#[derive(Default)]
struct Seeks {
    /// Seeks whose first message was checked, and seeks made.
    checked: usize,
    made: usize,
    /// The first seek that was not obeyed.
    disobeyed: Option<String>,
    /// The last fault is over and the producer is done: time to sweep.
    sweep: bool,
}

type Shared = Arc<Mutex<Seeks>>;

fn consumer() -> PullConsumer {
    let config = PullConsumerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        group: GROUP.into(),
        consume_from: ConsumeFrom::First,
        pull_batch: 8,
        // The scenario commits itself, every COMMIT_INTERVAL, so that the history knows every
        // commit and its outcome.
        auto_commit: false,
        ..PullConsumerConfig::default()
    };
    PullConsumer::start(config).unwrap()
}

/// The topic's queues, once its route exists (the first send creates it).
async fn assigned(consumer: &PullConsumer) -> Vec<MessageQueue> {
    loop {
        if let Ok(queues) = consumer.queues(TOPIC).await {
            if !queues.is_empty() && consumer.assign(&queues).await.is_ok() {
                return queues;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Commits every position, recording each queue's commit and whether it was answered (a
/// failed commit stops at the queue it failed on, so every one is taken as unanswered: it may
/// have been sent, and may land at any time).
async fn commit(history: &History, consumer: &PullConsumer) -> bool {
    let positions = consumer.positions();
    let sent = tokio::time::Instant::now();
    let answered = consumer.commit().await.is_ok();
    for (queue, offset) in positions {
        history.record(Event::Committed {
            consumer: "seeker".into(),
            broker: queue.broker_name.clone(),
            topic: queue.topic.clone(),
            queue: queue.queue_id,
            offset,
            sent,
            answered,
        });
    }
    answered
}

fn record(history: &History, consumer: &str, messages: &[ReceivedMessage]) {
    for message in messages {
        history.record(clients::received(consumer, message));
    }
}

/// Polls while the producer runs, seeking a random queue back or forward within what it has
/// read about one poll in eight. The first message from a sought queue must be the one sought.
async fn seek_around(
    seeks: Shared,
    history: &History,
    consumer: &PullConsumer,
    queues: &[MessageQueue],
) {
    let mut sought: BTreeMap<i32, i64> = BTreeMap::new();
    let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
    let mut committed_at = tokio::time::Instant::now();
    while !seeks.lock().unwrap().sweep {
        if committed_at.elapsed() >= COMMIT_INTERVAL {
            commit(history, consumer).await;
            committed_at = tokio::time::Instant::now();
        }
        if thread_rng().gen_ratio(1, 8) {
            let queue = &queues[thread_rng().gen_range(0..queues.len())];
            let top = highest.get(&queue.queue_id).map_or(0, |h| h + 1);
            let offset = thread_rng().gen_range(0..=top);
            consumer.seek(queue, offset).unwrap();
            sought.insert(queue.queue_id, offset);
            seeks.lock().unwrap().made += 1;
        }
        let Ok(messages) = consumer.poll(Duration::from_millis(300)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        record(history, "seeker", &messages);
        for m in &messages {
            let queue = m.queue.queue_id;
            if let Some(offset) = sought.remove(&queue) {
                let mut seeks = seeks.lock().unwrap();
                seeks.checked += 1;
                if m.queue_offset != offset && seeks.disobeyed.is_none() {
                    let got = m.queue_offset;
                    seeks.disobeyed = Some(format!("queue {queue} sought to {offset}, read {got}"));
                }
            }
            let top = highest.entry(queue).or_insert(m.queue_offset);
            *top = (*top).max(m.queue_offset);
        }
    }
}

/// Seeks every queue to its start and reads until nothing new comes for a while, as the
/// consumer "sweeper".
async fn sweep(history: &History, consumer: &PullConsumer, queues: &[MessageQueue]) {
    for queue in queues {
        consumer.seek(queue, 0).unwrap();
    }
    let mut quiet = 0;
    let deadline = tokio::time::Instant::now() + LIVENESS;
    while quiet < 10 && tokio::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(300)).await {
            Ok(messages) if !messages.is_empty() => {
                quiet = 0;
                record(history, "sweeper", &messages);
            }
            Ok(_) => quiet += 1,
            // The broker is up after the last fault, but a connection broken by it may take
            // a request to notice: try again, without counting it as quiet.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let (schedule, history, cluster) = super::one_broker_under_swarm(MESSAGES);
    let producing = history.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        clients::produce_sized(producing, TOPIC, 0..MESSAGES, clients::some_compressed, 5..30)
            .await;
    });
    let seeks: Shared = Arc::default();
    let (reading_seeks, reading_history) = (seeks.clone(), history.clone());
    let reading = cluster.client("consumer").spawn(async move {
        let consumer = consumer();
        let queues = assigned(&consumer).await;
        seek_around(reading_seeks, &reading_history, &consumer, &queues).await;
        sweep(&reading_history, &consumer, &queues).await;
        while !commit(&reading_history, &consumer).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        consumer.shutdown().await.unwrap();
    });

    // The faults start once a send was acknowledged: the first send creates the topic, and a
    // broker cut off before its first registration is unknown to the NameServer for a whole
    // registration period, so no route would exist for the consumer to read.
    while !history.any_acked() && !sending.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let strikes = schedule.faults.iter().map(|f| (f.after, Strike::Broker(0, f.clone())));
    cluster.play(strikes.collect(), || history.sends_settled(), || sending.is_finished()).await;
    cluster.heal();
    sending.await.unwrap();
    seeks.lock().unwrap().sweep = true;
    reading.await.unwrap();
    // What the sweep must have read: everything acknowledged before the resumer's send.
    let swept = history.entries();
    resume(&cluster, &history).await;
    cluster.check_invariants();
    let entries = history.entries();
    let seeks = std::mem::take(&mut *seeks.lock().unwrap());
    checkers::conclude(&[
        checkers::never_truncated(&entries),
        checkers::durable(&swept, Some("sweeper")),
        checkers::one_message_per_place(&entries),
        checkers::intact(&entries),
        checkers::live(&swept, Some("sweeper"), LIVENESS),
        Verdict::new(
            "seeks_obeyed",
            match &seeks.disobeyed {
                Some(why) => Err(why.clone()),
                None => Ok(format!("{} of {} seeks checked", seeks.checked, seeks.made)),
            },
        ),
        resumed_at_commits(&entries),
    ]);
    cluster.stop().await;
    history.summary().to_string()
}

/// A new consumer of the group, "resumer", starts where the last one committed at shutdown
/// and reads for a while after one more message is sent.
async fn resume(cluster: &Cluster, history: &History) {
    let history = history.clone();
    cluster
        .client("resumer")
        .spawn(async move {
            let consumer = consumer();
            assigned(&consumer).await;
            clients::produce(history.clone(), TOPIC, MESSAGES..MESSAGES + 1, 100, 0..1).await;
            for _ in 0..10 {
                let messages = consumer.poll(Duration::from_millis(300)).await.unwrap();
                record(&history, "resumer", &messages);
            }
        })
        .await
        .unwrap();
}

/// The resumer reads the message sent last and nothing the consumer before it had read: the
/// commits held. It may also read a message whose send had timed out, stored only after the
/// last commit (the network delivered the request late, as TCP can). And it may start a queue
/// again at an earlier offset, but only at one a commit that went unanswered had carried: that
/// request may reach the broker after the last commit and set the offset back, as in RocketMQ.
fn resumed_at_commits(entries: &[Entry]) -> Verdict {
    let mut before = BTreeSet::new();
    let mut resumed = Vec::new();
    let mut unanswered: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for entry in entries {
        match &entry.event {
            Event::Delivered { consumer, place, id, .. } if consumer == "resumer" => {
                resumed.push((place, *id));
            }
            Event::Delivered { place, .. } => {
                before.insert(place);
            }
            Event::Committed { queue, offset, answered: false, .. } => {
                unanswered.entry(*queue).or_default().insert(*offset);
            }
            _ => {}
        }
    }
    let first_read =
        |queue: i32| resumed.iter().filter(|(p, _)| p.queue == queue).map(|(p, _)| p.offset).min();
    let again: Vec<_> = resumed
        .iter()
        .filter(|(place, _)| before.contains(place))
        .filter(|(place, _)| {
            let stale = unanswered.get(&place.queue);
            !first_read(place.queue).is_some_and(|f| stale.is_some_and(|s| s.contains(&f)))
        })
        .collect();
    let outcome = if !again.is_empty() {
        Err(format!("the resumer read again what was read before the commits: {again:?}"))
    } else if !resumed.iter().any(|(_, id)| *id == MESSAGES) {
        Err(format!("the resumer never read the message sent last; it read {resumed:?}"))
    } else {
        let stale: usize = unanswered.values().map(BTreeSet::len).sum();
        Ok(format!(
            "{} read after the commits, none read before unless a late commit set it back \
             ({stale} commits unanswered)",
            resumed.len()
        ))
    };
    Verdict::new("resumed_at_commits", outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Place;

    fn delivered(consumer: &str, offset: i64, id: u64) -> Event {
        let place = Place { broker: "b".into(), topic: TOPIC.into(), queue: 0, offset };
        Event::Delivered { consumer: consumer.into(), place, id, body_hash: 0, stored_wall: 0 }
    }

    fn committed(offset: i64, answered: bool) -> Event {
        let sent = tokio::time::Instant::now();
        let (consumer, broker, topic) = ("seeker".into(), "b".into(), TOPIC.into());
        Event::Committed { consumer, broker, topic, queue: 0, offset, sent, answered }
    }

    fn verdict(events: Vec<Event>) -> Result<String, String> {
        let at = tokio::time::Instant::now();
        let entries: Vec<Entry> = events.into_iter().map(|event| Entry { at, event }).collect();
        resumed_at_commits(&entries).outcome
    }

    /// The seeker read offsets 0-9 and committed 10 last; one commit of 3 went unanswered.
    fn history(resumer_from: i64) -> Vec<Event> {
        let mut events: Vec<Event> = (0..10).map(|o| delivered("seeker", o, o as u64)).collect();
        events.push(committed(3, false));
        events.push(committed(10, true));
        events.extend((resumer_from..10).map(|o| delivered("resumer", o, o as u64)));
        events.push(delivered("resumer", 10, MESSAGES));
        events
    }

    #[madsim::test]
    async fn a_late_commit_may_set_the_resumer_back_only_to_its_own_offset() {
        assert!(verdict(history(10)).is_ok(), "nothing read again");
        assert!(verdict(history(3)).is_ok(), "set back by the unanswered commit of 3");
        let error = verdict(history(5)).unwrap_err();
        assert!(error.contains("read again"), "5 was never committed: {error}");
        let mut answered = history(3);
        answered.retain(|e| !matches!(e, Event::Committed { answered: false, .. }));
        assert!(verdict(answered).is_err(), "with every commit answered, nothing is read again");
    }
}
