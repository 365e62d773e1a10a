//! An operator at work under simulation: a NameServer, a SYNC_FLUSH broker under a swarm fault
//! plan, a producer, two push-consumer members of one group (one loses power and returns),
//! and an admin node that, all the while, asks what mqadmin and the dashboard ask
//! (GET_CONSUME_STATS, QUERY_CONSUME_QUEUE, GET_TOPIC_STATS_INFO, VIEW_BROKER_STATS_DATA),
//! and what it asks of a member through the broker (GET_CONSUMER_RUNNING_INFO, and
//! CONSUME_MESSAGE_DIRECTLY of an acknowledged message: the dashboard's resend), changes a
//! setting that takes effect at once (UPDATE_BROKER_CONFIG, read back with GET_BROKER_CONFIG)
//! and, once at a random moment under the faults, resets the group's offsets to a time before
//! the first send (INVOKE_BROKER_TO_RESET_OFFSET). Once the faults are over and the group has
//! settled its queues, it resets the group to the start again. In half the runs the broker
//! resets as RocketMQ 4 did (`useServerSideResetOffset=false`): it sends the members the
//! offsets (RESET_CONSUMER_CLIENT_OFFSET), and they move there and commit.
//!
//! The promises checked at the end:
//! - every acknowledged message is consumed (the operator's requests and the reset under
//!   faults lose nothing), within a bounded time once the faults are over;
//! - a group's committed offset, as GET_CONSUME_STATS answers it, never lies past its queue's
//!   end;
//! - every consume-queue unit QUERY_CONSUME_QUEUE answers for a place where a message was
//!   acknowledged points at that message's record in the commit log;
//! - a setting the broker said it took reads back as set, unless the broker restarted in
//!   between (a broker started without a config file keeps a change until it stops);
//! - a member's running info, passed on by the broker, is a push consumer's of the group,
//!   subscribed to the topic and holding only its queues and the group's retry queues;
//! - a message handed to a member is consumed by a member's listener while the request is
//!   under way, the message its id names at its place, and answered CR_SUCCESS (the
//!   members' listener takes every message);
//! - after the reset to the start on the healed cluster, with the group settled, every
//!   acknowledged message is consumed again, whether the broker or the members made it.
//!
//! Run one seed: `cargo sim --seed 7 --scenario admin`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::history::{wall_ms, Entry, Event, History, Place};
use crate::report;
use madsim::rand::{thread_rng, Rng};
use petrel::broker::BrokerConfig;
use petrel_core::admin::{
    ConsumeDirectlyStatus, ConsumeMessageDirectlyResult, ConsumerIdList, QueryConsumeQueueBody,
};
use petrel_core::record::offset_msg_id;
use petrel_core::running_info::ConsumerRunningInfo;
use petrel_net::bodies::{consume_stats_from_json, running_info_from_json, topic_stats_from_json};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    ConsumeMessageDirectlyResultRequestHeader, ConsumerGroupRequestHeader,
    GetConsumeStatsRequestHeader, GetConsumerRunningInfoRequestHeader,
    QueryConsumeQueueRequestHeader, ResetOffsetRequestHeader, TopicRequestHeader,
    ViewBrokerStatsDataRequestHeader,
};
use petrel_net::transport::{ClientConfig, RemotingClient};
use tokio::time::Instant;

const TOPIC: &str = "SimAdmin";
const GROUP: &str = "SimAdminGroup";
const BROKER_NAME: &str = "broker-a";
const MESSAGES: u64 = 200;
const QUEUES: i32 = 4;
/// The setting changed and read back: one that takes effect at once, harmless on a master.
const SETTING: &str = "accessMessageInMemoryMaxRatio";
/// Once the faults are over, every acknowledged message is consumed within this; and again
/// within this after the reset to the start.
const LIVENESS: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(3);
/// How long the group is left to settle its queues (members rebalance every second) before
/// the reset on the healed cluster.
const SETTLE: Duration = Duration::from_secs(5);

/// What the admin node saw.
#[derive(Default)]
struct Seen {
    /// GET_CONSUME_STATS: (queue, committed offset, queue end) per answer.
    stats: Vec<(i32, i64, i64)>,
    /// QUERY_CONSUME_QUEUE: (queue, index, commit-log offset) per unit answered.
    units: Vec<(i32, i64, i64)>,
    /// UPDATE_BROKER_CONFIG answered SUCCESS, then GET_BROKER_CONFIG: the value set, when the
    /// update was sent (the broker took it at some moment between that and its answer), the
    /// value read back and when that was answered.
    settings: Vec<(String, Instant, Option<String>, Instant)>,
    /// Values of updates that got no answer: each may still land at any later moment.
    unanswered_settings: Vec<String>,
    /// Requests answered, by name, and answered with another code or not at all.
    answered: BTreeMap<&'static str, (u64, u64)>,
    /// GET_CONSUMER_RUNNING_INFO answered: the member asked and what it said it runs.
    running: Vec<(String, ConsumerRunningInfo)>,
    /// CONSUME_MESSAGE_DIRECTLY answered SUCCESS: the message handed (id and place), when
    /// the request was sent and answered, and how the member said it went.
    handed: Vec<Handed>,
}

/// One message handed to a member (CONSUME_MESSAGE_DIRECTLY) and the member's answer.
#[derive(Debug, Clone)]
struct Handed {
    id: u64,
    place: Place,
    sent: Instant,
    answered: Instant,
    result: Option<ConsumeDirectlyStatus>,
}

type Shared = Arc<Mutex<Seen>>;

fn seen(shared: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

async fn member(name: String, history: History) {
    clients::push_consume(name, history, clients::push_config(GROUP, TOPIC)).await;
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let by_members = thread_rng().gen_bool(0.5);
    let tune: fn(&mut BrokerConfig) = match by_members {
        true => |config| config.server_side_reset = false,
        false => |_| {},
    };
    let (schedule, history, cluster) = super::one_tuned_broker_under_swarm(MESSAGES, tune);
    let made_by = if by_members { "the members" } else { "the broker" };
    report::note(format!("resets are made by {made_by}"));
    let broker = cluster.broker_addrs()[0].clone();
    let members = super::start_members(&cluster, &history, 2, member);
    let producing = history.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        clients::produce(producing, TOPIC, 0..MESSAGES, 100, 5..40).await;
    });
    let shared = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reset_after = thread_rng().gen_range(MESSAGES / 4..MESSAGES * 3 / 4);
    report::note(format!("the group is reset to the start after step {reset_after}"));
    let operating = {
        let (history, shared, stop, broker) =
            (history.clone(), shared.clone(), stop.clone(), broker.clone());
        cluster.client("admin").spawn(async move {
            operate(&broker, &history, &shared, &stop, reset_after).await;
        })
    };

    let watched = (&history, MESSAGES);
    let entries =
        super::play_members(&cluster, &schedule, &members, watched, sending, LIVENESS).await;
    stop.store(true, Ordering::Release);
    operating.await.unwrap();
    let mut verdicts = checkers::delivery(&entries, None, LIVENESS);
    verdicts.push(committed_within_queues(&seen(&shared)));
    verdicts.push(units_point_at_their_messages(&entries, &seen(&shared)));
    verdicts.push(settings_read_back(&entries, &seen(&shared)));
    verdicts.push(running_info_is_the_groups(&seen(&shared)));
    // The operator may have handed a message over after `entries` was taken.
    verdicts.push(handed_messages_consumed(&history.entries(), &seen(&shared)));
    let reset = cluster.client("operator").spawn({
        let history = history.clone();
        async move { reset_to_start(&broker, &history).await }
    });
    verdicts.push(reset.await.unwrap());
    report::note(format!("admin requests (answered, not): {:?}", seen(&shared).answered));
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// The operator's loop until `stop`: a request every 50-300 ms, drawn at random, and the reset
/// to a time before the first send once `reset_after` sends have settled.
async fn operate(
    broker: &str,
    history: &History,
    shared: &Shared,
    stop: &AtomicBool,
    reset_after: u64,
) {
    let started_wall = wall_ms();
    let client = RemotingClient::new(ClientConfig::default(), None);
    let mut reset_done = false;
    while !stop.load(Ordering::Acquire) {
        let pause = thread_rng().gen_range(50..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if !reset_done && history.sends_settled() >= reset_after {
            reset_done = true;
            // A time before the first send: every queue goes back to its start, so that the
            // reset skips nothing the group has yet to consume.
            let before = started_wall + thread_rng().gen_range(0..1_500);
            let answer = reset(&client, broker, before).await;
            report::note(format!("reset to the start under faults: answered {answer:?}"));
            continue;
        }
        match thread_rng().gen_range(0..7) {
            0 => consume_stats(&client, broker, shared).await,
            5 => running_info(&client, broker, shared).await,
            6 => hand_over(&client, broker, history, shared).await,
            1 => query_units(&client, broker, history, shared).await,
            2 => setting(&client, broker, shared).await,
            3 => {
                let header = TopicRequestHeader { topic: TOPIC.into() };
                let ask =
                    RemotingCommand::request(request::GET_TOPIC_STATS_INFO).with_header(&header);
                let answer = call(&client, broker, ask, shared, "GET_TOPIC_STATS_INFO").await;
                if let Some(answer) = answer {
                    topic_stats_from_json(&answer.body).expect("a topic stats table reads");
                }
            }
            _ => {
                let header = ViewBrokerStatsDataRequestHeader {
                    stats_name: "TOPIC_PUT_NUMS".into(),
                    stats_key: TOPIC.into(),
                };
                let ask =
                    RemotingCommand::request(request::VIEW_BROKER_STATS_DATA).with_header(&header);
                call(&client, broker, ask, shared, "VIEW_BROKER_STATS_DATA").await;
            }
        }
    }
    client.shutdown();
}

/// Sends `ask`; its answer when it is SUCCESS, counted in `shared` either way.
async fn call(
    client: &RemotingClient,
    broker: &str,
    ask: RemotingCommand,
    shared: &Shared,
    name: &'static str,
) -> Option<RemotingCommand> {
    let answer =
        client.invoke(broker, ask, TIMEOUT).await.ok().filter(|a| a.code == response::SUCCESS);
    count(shared, name, answer.is_some());
    answer
}

/// Counts a request of `name` as answered SUCCESS or not.
fn count(shared: &Shared, name: &'static str, taken: bool) {
    let mut seen = seen(shared);
    let counts = seen.answered.entry(name).or_default();
    if taken {
        counts.0 += 1;
    } else {
        counts.1 += 1;
    }
}

async fn consume_stats(client: &RemotingClient, broker: &str, shared: &Shared) {
    let header = GetConsumeStatsRequestHeader {
        consumer_group: GROUP.into(),
        topic: Some(TOPIC.into()),
        topic_list: None,
    };
    let ask = RemotingCommand::request(request::GET_CONSUME_STATS).with_header(&header);
    let Some(answer) = call(client, broker, ask, shared, "GET_CONSUME_STATS").await else { return };
    let stats = consume_stats_from_json(&answer.body).expect("a consume stats body reads");
    let mut seen = seen(shared);
    for (queue, offsets) in stats.offset_table {
        seen.stats.push((queue.queue_id, offsets.consumer_offset, offsets.broker_offset));
    }
}

/// Up to 16 units of a queue from an index at or below what has been acknowledged there.
async fn query_units(client: &RemotingClient, broker: &str, history: &History, shared: &Shared) {
    let queue_id = thread_rng().gen_range(0..QUEUES);
    let acked = history
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            Event::Acked { place: Some(p), .. } if p.queue == queue_id => Some(p.offset),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let index = thread_rng().gen_range(0..=acked);
    let header = QueryConsumeQueueRequestHeader {
        topic: TOPIC.into(),
        queue_id,
        index,
        count: 16,
        consumer_group: Some(GROUP.into()),
    };
    let ask = RemotingCommand::request(request::QUERY_CONSUME_QUEUE).with_header(&header);
    let Some(answer) = call(client, broker, ask, shared, "QUERY_CONSUME_QUEUE").await else {
        return;
    };
    if answer.body.is_empty() {
        // No unit from that index (not yet dispatched there): answered with no body.
        return;
    }
    let body: QueryConsumeQueueBody = from_json(&answer.body).expect("a consume queue body reads");
    let mut seen = seen(shared);
    for (i, unit) in body.queue_data.unwrap_or_default().iter().enumerate() {
        seen.units.push((queue_id, index + i as i64, unit.physic_offset));
    }
}

/// A member of the group the broker lists (GET_CONSUMER_LIST_BY_GROUP), drawn at random.
async fn listed_member(client: &RemotingClient, broker: &str, shared: &Shared) -> Option<String> {
    let header = ConsumerGroupRequestHeader { consumer_group: GROUP.into() };
    let ask = RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP).with_header(&header);
    let listed = call(client, broker, ask, shared, "GET_CONSUMER_LIST_BY_GROUP").await?;
    let listed: ConsumerIdList = from_json(&listed.body).expect("a member list reads");
    let ids = listed.consumer_id_list;
    ids.get(thread_rng().gen_range(0..ids.len().max(1))).cloned()
}

/// GET_CONSUMER_RUNNING_INFO of a member the broker lists.
async fn running_info(client: &RemotingClient, broker: &str, shared: &Shared) {
    let Some(member) = listed_member(client, broker, shared).await else { return };
    let header = GetConsumerRunningInfoRequestHeader {
        consumer_group: GROUP.into(),
        client_id: member.clone(),
        jstack_enable: Some(false),
    };
    let ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO).with_header(&header);
    let Some(answer) = call(client, broker, ask, shared, "GET_CONSUMER_RUNNING_INFO").await else {
        return;
    };
    let info = running_info_from_json(&answer.body).expect("a member's running info reads");
    seen(shared).running.push((member, info));
}

/// CONSUME_MESSAGE_DIRECTLY of an acknowledged message, drawn at random, to a member the
/// broker lists, named by its offset message id as the dashboard names it.
async fn hand_over(client: &RemotingClient, broker: &str, history: &History, shared: &Shared) {
    let acked: Vec<(u64, Place, u64)> = history
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            Event::Acked { id, place: Some(place), stored_at: Some(at) } => {
                Some((*id, place.clone(), *at))
            }
            _ => None,
        })
        .collect();
    if acked.is_empty() {
        return;
    }
    let (id, place, at) = acked[thread_rng().gen_range(0..acked.len())].clone();
    let Some(member) = listed_member(client, broker, shared).await else { return };
    let store_host = broker.parse().expect("the broker's address is a socket address");
    let header = ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: GROUP.into(),
        client_id: Some(member),
        msg_id: Some(offset_msg_id(store_host, at as i64)),
        broker_name: None,
        topic: Some(TOPIC.into()),
        topic_sys_flag: None,
        group_sys_flag: None,
    };
    let ask = RemotingCommand::request(request::CONSUME_MESSAGE_DIRECTLY).with_header(&header);
    let sent = Instant::now();
    let Some(answer) = call(client, broker, ask, shared, "CONSUME_MESSAGE_DIRECTLY").await else {
        return;
    };
    let said: ConsumeMessageDirectlyResult =
        from_json(&answer.body).expect("a member's result reads");
    let handed = Handed { id, place, sent, answered: Instant::now(), result: said.consume_result };
    seen(shared).handed.push(handed);
}

/// Sets the setting to a value drawn at random and reads it back.
async fn setting(client: &RemotingClient, broker: &str, shared: &Shared) {
    let value = thread_rng().gen_range(20..=60).to_string();
    let mut update = RemotingCommand::request(request::UPDATE_BROKER_CONFIG);
    update.body = format!("{SETTING}={value}\n").into_bytes().into();
    let sent = Instant::now();
    let answer = client.invoke(broker, update, TIMEOUT).await;
    let taken = matches!(&answer, Ok(a) if a.code == response::SUCCESS);
    if answer.is_err() {
        seen(shared).unanswered_settings.push(value.clone());
    }
    count(shared, "UPDATE_BROKER_CONFIG", taken);
    if !taken {
        return;
    }
    let get = RemotingCommand::request(request::GET_BROKER_CONFIG);
    let Some(answer) = call(client, broker, get, shared, "GET_BROKER_CONFIG").await else { return };
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let read = text.lines().find_map(|l| l.strip_prefix(&format!("{SETTING}="))).map(str::to_owned);
    seen(shared).settings.push((value, sent, read, Instant::now()));
}

/// INVOKE_BROKER_TO_RESET_OFFSET of the group's topic to `timestamp`: the answer's code, or
/// `None` for no answer.
async fn reset(client: &RemotingClient, broker: &str, timestamp: i64) -> Option<i32> {
    let header = ResetOffsetRequestHeader {
        group: GROUP.into(),
        topic: TOPIC.into(),
        queue_id: None,
        offset: None,
        timestamp,
        is_force: true,
    };
    let ask = RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET).with_header(&header);
    client.invoke(broker, ask, TIMEOUT).await.ok().map(|a| a.code)
}

/// The operator resets the group to the topic's start on the healed cluster, once its
/// members have settled which queue is whose (asking again until the broker says it did);
/// every acknowledged message must then be consumed again.
///
/// With no message acknowledged the promise holds at once: the topic may not exist (admin
/// seed 231151801: the broker stopped on failed syncs through every send).
///
/// Only a settled group is promised this: while two members pull one queue (a rebalance under
/// way), the pull that takes the reset may be one whose member is letting the queue go, and
/// the member keeping it then commits its own position over the reset (as in RocketMQ, whose
/// server-side reset is taken by the first pull of the queue).
async fn reset_to_start(broker: &str, history: &History) -> Verdict {
    let acked = |e: &Entry| matches!(e.event, Event::Acked { place: Some(_), .. });
    if !history.entries().iter().any(acked) {
        let none = "no message was acknowledged: nothing to consume again".to_owned();
        return Verdict::new("reset_redelivers", Ok(none));
    }
    tokio::time::sleep(SETTLE).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let deadline = Instant::now() + LIVENESS;
    // Deliveries count from the send of the reset the broker took: members told by the broker
    // may consume again before its answer reaches the operator.
    let sent = loop {
        let sent = Instant::now();
        if reset(&client, broker, 0).await == Some(response::SUCCESS) {
            break sent;
        }
        if Instant::now() > deadline {
            return Verdict::new(
                "reset_redelivers",
                Err("the reset was never answered SUCCESS".into()),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    client.shutdown();
    let missing = || {
        let entries = history.entries();
        let mut acked: BTreeMap<Place, u64> = BTreeMap::new();
        for entry in &entries {
            if let Event::Acked { id, place: Some(place), .. } = &entry.event {
                acked.insert(place.clone(), *id);
            }
        }
        for entry in entries.iter().filter(|e| e.at >= sent) {
            if let Event::Delivered { place, .. } = &entry.event {
                acked.remove(place);
            }
        }
        acked
    };
    while !missing().is_empty() && Instant::now() < sent + LIVENESS {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = missing();
    let outcome = match left.first_key_value() {
        None => Ok("every acknowledged message consumed again after the reset".to_owned()),
        Some((place, id)) => Err(format!(
            "{} acknowledged messages not consumed again within {LIVENESS:?} of the reset, \
             message {id} at {place:?} among them",
            left.len()
        )),
    };
    Verdict::new("reset_redelivers", outcome)
}

/// The committed offsets GET_CONSUME_STATS answered never lie past their queue's end.
fn committed_within_queues(seen: &Seen) -> Verdict {
    let past = seen.stats.iter().find(|(_, committed, end)| committed > end);
    let outcome = match past {
        Some((queue, committed, end)) => {
            Err(format!("queue {queue}: committed offset {committed} past the queue's end {end}"))
        }
        None => Ok(format!("{} queue figures, none past its end", seen.stats.len())),
    };
    Verdict::new("committed_within_queues", outcome)
}

/// Each unit answered for a place where a message was acknowledged names that message's
/// record: the commit-log offset its acknowledgement gave.
fn units_point_at_their_messages(entries: &[Entry], seen: &Seen) -> Verdict {
    let mut stored: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    for entry in entries {
        if let Event::Acked { place: Some(place), stored_at: Some(at), .. } = &entry.event {
            if place.broker == BROKER_NAME && place.topic == TOPIC {
                stored.insert((place.queue, place.offset), *at);
            }
        }
    }
    let checked = seen.units.iter().filter(|(q, i, _)| stored.contains_key(&(*q, *i))).count();
    let wrong = seen.units.iter().find(|(queue, index, physic)| {
        stored.get(&(*queue, *index)).is_some_and(|at| *at as i64 != *physic)
    });
    let outcome = match wrong {
        Some((queue, index, physic)) => Err(format!(
            "queue {queue} index {index}: the unit names commit-log offset {physic}, the message \
             acknowledged there is at {}",
            stored[&(*queue, *index)]
        )),
        None => Ok(format!("{checked} units of acknowledged messages, each pointing at it")),
    };
    Verdict::new("units_point_at_their_messages", outcome)
}

/// Each running info answered is a push consumer's of the group: subscribed to the topic, and
/// holding queues of the topic on this broker and of the group's retry topic only.
fn running_info_is_the_groups(seen: &Seen) -> Verdict {
    let retry = format!("%RETRY%{GROUP}");
    let wrong = seen.running.iter().find_map(|(member, info)| {
        let subscribed = info.subscription_set.iter().any(|s| s.topic == TOPIC);
        let foreign = info.mq_table.iter().map(|(q, _)| q).find(|q| {
            let ours = q.topic == TOPIC && q.broker_name == BROKER_NAME && q.queue_id < QUEUES;
            !ours && q.topic != retry
        });
        match (info.is_push(), subscribed, foreign) {
            (false, _, _) => Some(format!("{member} answered as no push consumer")),
            (_, false, _) => Some(format!("{member} answered without a subscription to {TOPIC}")),
            (_, _, Some(queue)) => Some(format!("{member} answered holding {queue}")),
            _ => None,
        }
    });
    let outcome = match wrong {
        Some(why) => Err(why),
        None => Ok(format!("{} members' running info, each the group's", seen.running.len())),
    };
    Verdict::new("running_info_is_the_groups", outcome)
}

/// Each message handed to a member was consumed by a member's listener while its request was
/// under way, as the message its id names at its place, and answered CR_SUCCESS: the members'
/// listener takes every message.
fn handed_messages_consumed(entries: &[Entry], seen: &Seen) -> Verdict {
    let consumed = |handed: &Handed| {
        entries.iter().any(|e| {
            (handed.sent..=handed.answered).contains(&e.at)
                && matches!(&e.event, Event::Delivered { id, place, .. }
                    if *id == handed.id && *place == handed.place)
        })
    };
    let wrong = seen.handed.iter().find_map(|handed| {
        let Handed { id, place, .. } = handed;
        match handed.result {
            Some(ConsumeDirectlyStatus::CrSuccess) if consumed(handed) => None,
            Some(ConsumeDirectlyStatus::CrSuccess) => Some(format!(
                "message {id} at {place:?} answered CR_SUCCESS, but no listener consumed it \
                 while the request was under way"
            )),
            other => Some(format!("message {id} at {place:?} answered {other:?}")),
        }
    });
    let outcome = match wrong {
        Some(why) => Err(why),
        None => Ok(format!("{} messages handed to members, each consumed", seen.handed.len())),
    };
    Verdict::new("handed_messages_consumed", outcome)
}

/// A setting the broker took reads back as set, unless the broker lost power or stopped
/// between the update's send and the read's answer, or what is read is the value of an earlier update that got no
/// answer (held up by the network, it may land after a later one).
fn settings_read_back(entries: &[Entry], seen: &Seen) -> Verdict {
    let restarted = |from: Instant, to: Instant| {
        entries.iter().any(|e| {
            (from..=to).contains(&e.at)
                && matches!(&e.event, Event::Crashed { node, .. } | Event::Stopped { node, .. } if node == BROKER_NAME)
        })
    };
    // An update that got no answer may land late, over a later one: its value may be read.
    let late =
        |read: &Option<String>| read.as_ref().is_some_and(|r| seen.unanswered_settings.contains(r));
    let lost = seen.settings.iter().find(|(value, sent, read, read_at)| {
        read.as_deref() != Some(value.as_str()) && !restarted(*sent, *read_at) && !late(read)
    });
    let outcome = match lost {
        Some((value, sent, read, read_at)) => Err(format!(
            "{SETTING} set to {value} (sent at {sent:?}) read back as {read:?} (answered \
             at {read_at:?}), the broker running all the while"
        )),
        None => Ok(format!("{} settings read back", seen.settings.len())),
    };
    Verdict::new("settings_read_back", outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(queue: i32, offset: i64, stored_at: u64) -> Entry {
        let place = Place { broker: BROKER_NAME.into(), topic: TOPIC.into(), queue, offset };
        let event = Event::Acked { id: 1, place: Some(place), stored_at: Some(stored_at) };
        Entry { at: Instant::now(), event }
    }

    #[madsim::test]
    async fn a_unit_naming_another_record_is_caught() {
        let entries = vec![acked(0, 0, 0), acked(0, 1, 400)];
        let mut seen = Seen { units: vec![(0, 0, 0), (0, 1, 400), (0, 2, 800)], ..Seen::default() };
        assert!(units_point_at_their_messages(&entries, &seen).outcome.is_ok());
        seen.units.push((0, 1, 401));
        assert!(units_point_at_their_messages(&entries, &seen).outcome.is_err());
    }

    #[madsim::test]
    async fn a_running_info_not_the_groups_is_caught() {
        use petrel_core::broker::filter::SubscriptionData;
        use petrel_core::client::MessageQueue;
        let subscription = SubscriptionData { topic: TOPIC.into(), ..SubscriptionData::default() };
        let queue =
            |topic: &str, id| (MessageQueue::new(topic, BROKER_NAME, id), Default::default());
        let info = ConsumerRunningInfo {
            properties: [("PROP_CONSUME_TYPE".to_owned(), "CONSUME_PASSIVELY".to_owned())].into(),
            subscription_set: vec![subscription],
            mq_table: vec![queue(TOPIC, 0), queue(&format!("%RETRY%{GROUP}"), 0)],
            ..ConsumerRunningInfo::default()
        };
        let check = |info: &ConsumerRunningInfo| {
            let seen = Seen { running: vec![("m".into(), info.clone())], ..Seen::default() };
            running_info_is_the_groups(&seen).outcome.is_ok()
        };
        assert!(check(&info));
        let mut other_queue = info.clone();
        other_queue.mq_table.push(queue(TOPIC, QUEUES));
        assert!(!check(&other_queue));
        let mut other_topic = info.clone();
        other_topic.mq_table.push(queue("Another", 0));
        assert!(!check(&other_topic));
        let mut pull = info.clone();
        pull.properties.insert("PROP_CONSUME_TYPE".into(), "CONSUME_ACTIVELY".into());
        assert!(!check(&pull));
        assert!(!check(&ConsumerRunningInfo { subscription_set: Vec::new(), ..info }));
    }

    #[madsim::test]
    async fn a_handed_message_not_consumed_is_caught() {
        let place = Place { broker: BROKER_NAME.into(), topic: TOPIC.into(), queue: 1, offset: 7 };
        let sent = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let delivered = |id, place: &Place| Entry {
            at: Instant::now(),
            event: Event::Delivered {
                consumer: "member-0".into(),
                place: place.clone(),
                id,
                body_hash: 0,
                stored_wall: 0,
            },
        };
        let (right, other_id) = (delivered(3, &place), delivered(4, &place));
        let elsewhere = delivered(3, &Place { offset: 8, ..place.clone() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let handed = |result| Handed {
            id: 3,
            place: place.clone(),
            sent,
            answered: Instant::now(),
            result: Some(result),
        };
        let check = |entries: &[Entry], result| {
            let seen = Seen { handed: vec![handed(result)], ..Seen::default() };
            handed_messages_consumed(entries, &seen).outcome.is_ok()
        };
        assert!(check(std::slice::from_ref(&right), ConsumeDirectlyStatus::CrSuccess));
        assert!(!check(&[], ConsumeDirectlyStatus::CrSuccess));
        assert!(!check(&[other_id, elsewhere], ConsumeDirectlyStatus::CrSuccess));
        assert!(!check(&[right], ConsumeDirectlyStatus::CrLater));
    }

    #[madsim::test]
    async fn a_commit_past_its_queue_is_caught() {
        let mut seen = Seen { stats: vec![(0, -1, 0), (1, 5, 5)], ..Seen::default() };
        assert!(committed_within_queues(&seen).outcome.is_ok());
        seen.stats.push((2, 6, 5));
        assert!(committed_within_queues(&seen).outcome.is_err());
    }

    #[madsim::test]
    async fn a_setting_lost_is_caught_unless_a_restart_or_a_late_update_explains_it() {
        let sent = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let stopped = Entry {
            at: Instant::now(),
            event: Event::Stopped { node: BROKER_NAME.into(), wall: 0 },
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let read_at = Instant::now();
        let check = |read: &str, entries: &[Entry], unanswered: &[&str]| {
            let seen = Seen {
                settings: vec![("46".into(), sent, Some(read.into()), read_at)],
                unanswered_settings: unanswered.iter().map(|v| (*v).to_owned()).collect(),
                ..Seen::default()
            };
            settings_read_back(entries, &seen).outcome.is_ok()
        };
        assert!(check("46", &[], &[]));
        assert!(!check("40", &[], &[]));
        assert!(check("40", &[stopped], &[]));
        assert!(check("40", &[], &["40"]));
        assert!(!check("40", &[], &["41"]));
    }
}
