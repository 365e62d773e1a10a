//! SQL92 filtering under simulation: a NameServer, a SYNC_FLUSH broker with
//! `enablePropertyFilter=true` under a swarm fault plan, a producer whose messages carry
//! properties (a region, a price, sometimes a `vip` flag, a tag), and two members of one push
//! consumer group subscribed with an SQL92 expression; one member loses power and comes back.
//!
//! The promises checked at the end, on the recorded history:
//! - `selected_only`: no message the expression does not select is ever delivered;
//! - every acknowledged message it selects is delivered, whole, from where its
//!   acknowledgement said, within a bounded time once the faults are over (the delivery
//!   checkers, over the selected messages).
//!
//! Which messages the expression selects is worked out here by plain Rust over the message's
//! id ([`selected`]), not by the broker's evaluator.
//!
//! Run one seed: `cargo sim --seed 7 --scenario filter`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::cluster::Cluster;
use crate::faults::FaultPlan;
use crate::history::{Entry, Event, History};
use crate::report;
use petrel_client::{Message, PushConsumerConfig, Subscription};

const TOPIC: &str = "SimFiltered";
const MESSAGES: u64 = 200;
/// Once the faults are over, every acknowledged selected message is consumed within this.
const LIVENESS: Duration = Duration::from_secs(60);
const REGIONS: [&str; 3] = ["eu", "us", "ap"];
const TAGS: [&str; 5] = ["TagA", "TagB", "TagC", "TagA", "TagB"];
const EXPRESSION: &str = "(region IN ('eu', 'ap') AND price >= 30.5) \
     OR (vip = TRUE AND n BETWEEN 20 AND 180) \
     OR (TAGS = 'TagC' AND NOT (n < 100))";

/// Message `id`'s properties: `n`, `region` by turns, `price` as `id % 50` and a tenth of
/// `id % 10`, `vip` on every fourth message only (true on every eighth), and a tag.
fn dress(id: u64, message: Message) -> Message {
    let mut message = message.with_tags(TAGS[(id % 5) as usize]);
    let properties = &mut message.properties;
    properties.insert("n".into(), id.to_string());
    properties.insert("region".into(), REGIONS[(id % 3) as usize].into());
    properties.insert("price".into(), format!("{}.{}", id % 50, id % 10));
    if id.is_multiple_of(4) {
        properties.insert("vip".into(), id.is_multiple_of(8).to_string());
    }
    message
}

/// Whether [`EXPRESSION`] selects message `id`. An absent `vip` makes its condition unknown,
/// which never selects.
fn selected(id: u64) -> bool {
    let price = (id % 50) as f64 + (id % 10) as f64 / 10.0;
    let regional = id % 3 != 1 && price >= 30.5;
    let vip = id.is_multiple_of(8) && (20..=180).contains(&id);
    let tagged = id % 5 == 2 && id >= 100;
    regional || vip || tagged
}

async fn member(name: String, history: History) {
    let subscription = Subscription::sql92(EXPRESSION);
    let config = PushConsumerConfig {
        subscriptions: [(TOPIC.to_owned(), subscription)].into_iter().collect(),
        hold: Duration::from_millis(500),
        ..clients::push_config("SimFilterGroup", TOPIC)
    };
    clients::push_consume(name, history, config).await;
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    report::note(format!("fault schedule of broker-a (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster = Cluster::builder()
        .tune(|config| config.property_filter = true)
        .disk_faults(schedule.disk)
        .build(&history);
    let members = super::start_members(&cluster, &history, 2, member);
    let producing = history.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        clients::produce_dressed(producing, TOPIC, 0..MESSAGES, 100, 5..40, dress).await;
    });

    let strikes = super::broker_and_member_strikes(&schedule, &members, MESSAGES);
    cluster.play(strikes, || history.sends_settled(), || sending.is_finished()).await;
    cluster.heal();
    sending.await.expect("the producer's task ends");
    settle(&history).await;
    cluster.check_invariants();
    let entries = history.entries();
    let mut verdicts = checkers::delivery(&only_selected(&entries), None, LIVENESS);
    verdicts.push(selected_only(&entries));
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// Waits until every acknowledged selected message was delivered (or [`LIVENESS`] passed),
/// then as long again as a long poll, for anything unselected to show.
async fn settle(history: &History) {
    let deadline = tokio::time::Instant::now() + LIVENESS;
    while tokio::time::Instant::now() < deadline {
        let delivered = history.delivered(None);
        if history.acked().iter().filter(|id| selected(**id)).all(|id| delivered.contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// The history without the sends of messages the expression does not select: what the
/// delivery checkers must find delivered.
fn only_selected(entries: &[Entry]) -> Vec<Entry> {
    let unselected = |event: &Event| match event {
        Event::Sent { id, .. }
        | Event::Acked { id, .. }
        | Event::Refused { id, .. }
        | Event::InDoubt { id } => !selected(*id),
        _ => false,
    };
    entries.iter().filter(|e| !unselected(&e.event)).cloned().collect()
}

/// No message the expression does not select is delivered.
fn selected_only(entries: &[Entry]) -> Verdict {
    let (mut delivered, mut unselected_acked) = (0, 0);
    for entry in entries {
        match &entry.event {
            Event::Delivered { id, place, consumer, .. } if !selected(*id) => {
                let why = format!("{consumer} was handed message {id} from {place:?}, which {EXPRESSION} does not select");
                return Verdict::new("selected_only", Err(why));
            }
            Event::Delivered { .. } => delivered += 1,
            Event::Acked { id, .. } if !selected(*id) => unselected_acked += 1,
            _ => {}
        }
    }
    let found = format!(
        "{delivered} deliveries, all selected; none of {unselected_acked} acknowledged others"
    );
    Verdict::new("selected_only", Ok(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Place;
    use tokio::time::Instant;

    fn entry(event: Event) -> Entry {
        Entry { at: Instant::now(), event }
    }

    #[test]
    fn the_hand_worked_selection_matches_the_expression_on_a_few_ids() {
        // 0 and 16: vip true but n < 20; 24: vip true, n in range; 32: eu, price 32.2;
        // 102: TagC, n >= 100; 37: us.
        let picked: Vec<u64> =
            [0, 16, 24, 32, 102, 37].into_iter().filter(|id| selected(*id)).collect();
        assert_eq!(picked, [24, 32, 102]);
    }

    #[test]
    fn an_unselected_delivery_is_caught() {
        let place = Place { broker: "b".into(), topic: TOPIC.into(), queue: 0, offset: 0 };
        let delivered = |id| {
            entry(Event::Delivered {
                consumer: "m".into(),
                place: place.clone(),
                id,
                body_hash: 0,
                stored_wall: 0,
            })
        };
        assert!(selected_only(&[delivered(24)]).outcome.is_ok());
        assert!(selected_only(&[delivered(37)]).outcome.is_err());
        let kept =
            only_selected(&[entry(Event::InDoubt { id: 37 }), entry(Event::InDoubt { id: 24 })]);
        assert_eq!(kept.len(), 1);
    }
}
