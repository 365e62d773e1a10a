//! What an operator's dashboard reads, under simulation: a NameServer, a SYNC_FLUSH broker
//! under a swarm fault plan, a producer (which shuts down once it has sent), two push-consumer
//! members of one group (one loses power and returns; the faults begin once a send was
//! acknowledged), and an operator that, all the while, asks what mqadmin's and the
//! dashboard's read-only pages ask: the group's and the producer's
//! connections (GET_CONSUMER_CONNECTION_LIST, GET_PRODUCER_CONNECTION_LIST), who consumes the
//! topic (QUERY_TOPIC_CONSUME_BY_WHO), a queue's earliest store time
//! (GET_EARLIEST_MSG_STORETIME), the broker's runtime table (GET_BROKER_RUNTIME_INFO), its
//! system topics (GET_SYSTEM_TOPIC_LIST_FROM_BROKER), and whether it can filter by a TAG or an
//! SQL92 expression, well formed or not (CHECK_CLIENT_CONFIG).
//!
//! The promises checked, for every answer during the faults too:
//! - the connections listed are the group's members (their addresses), subscribed to the topic,
//!   clustering and pushed, and the producer's; a group without one is answered
//!   CONSUMER_NOT_ONLINE, a producer group without one SYSTEM_ERROR (any other answer is
//!   counted as none) (`connections_are_clients`);
//! - the topic is consumed by the group and by nothing else (`consumed_by_the_group`);
//! - a queue's earliest store time is no earlier than the run and no later than the store time
//!   of any acknowledged message in the queue (or -1: none readable), and the runtime table's
//!   `earliestMessageTimeStamp` no later than any acknowledged message's
//!   (`earliest_times_hold`);
//! - the runtime table's `commitLogMaxOffset` lies past every record acknowledged before it was
//!   asked, and its role and flush type are the broker's (`runtime_info_holds`);
//! - the system topics listed are the same every time, hold RocketMQ's fixed ones and the
//!   cluster's and broker's names, and never the workload's topic (`system_topics_listed`);
//! - TAG expressions and well-formed SQL92 are accepted, malformed SQL92 refused
//!   SUBSCRIPTION_PARSE_FAILED (`client_configs_judged`).
//!
//! And once the faults are over, within a minute (`listed_after_healing`): both members are
//! listed, the producer that shut down is not, the group consumes the topic, and each queue's
//! earliest store time is that of the record at its front, read from the store directly. As
//! everywhere, every acknowledged message is consumed (the delivery checkers).
//!
//! Run one seed: `cargo sim --seed 7 --scenario monitor`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use petrel::broker::BrokerConfig;
use petrel_core::admin::{ConsumerConnection, GroupList, ProducerConnection};
use petrel_core::broker::filter::{CheckClientBody, SubscriptionData, SQL92, TAG};
use petrel_core::model::{KvTable, TopicList};
use petrel_core::record::{scan_record, Checks, Scanned};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    ConsumerGroupRequestHeader, ProducerGroupRequestHeader, TimestampResponseHeader,
    TopicQueueRequestHeader, TopicRequestHeader,
};
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::{GetStatus, ReadLimits, Store};
use tokio::time::Instant;

use crate::checkers::{self, Verdict};
use crate::cluster::Watch;
use crate::history::{wall_ms, Entry, Event, History, Place};
use crate::{clients, report};

const TOPIC: &str = "SimMonitor";
const GROUP: &str = "SimMonitorGroup";
/// The group Petrel's producer joins unless told otherwise (RocketMQ's default too).
const PRODUCER_GROUP: &str = "DEFAULT_PRODUCER";
const MESSAGES: u64 = 150;
const QUEUES: i32 = 4;
/// Once the faults are over, every acknowledged message is consumed, and the lists are what
/// the clients are, within this (a member heartbeats every 30 s).
const LIVENESS: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(3);
/// The filter expressions the operator checks, and whether a broker that filters by SQL92
/// accepts each.
const EXPRESSIONS: &[(&str, &str, bool)] = &[
    (TAG, "*", true),
    (TAG, "TagA || TagB", true),
    (SQL92, "a > 1 AND b = 'x'", true),
    (SQL92, "a IS NOT NULL OR c BETWEEN 1 AND 3", true),
    (SQL92, "a >", false),
    (SQL92, "a BETWEEN 1", false),
];

/// One answer: when its request went out and when the answer came, and what it said.
#[derive(Debug, Clone)]
struct Answer<T> {
    sent: Instant,
    wall: i64,
    said: T,
}

impl<T> Answer<T> {
    /// The same answer, `what` of what it said.
    fn map<U>(self, what: impl FnOnce(T) -> U) -> Answer<U> {
        Answer { sent: self.sent, wall: self.wall, said: what(self.said) }
    }
}

/// What the operator was answered (SUCCESS, or the code when a refusal is part of the promise).
#[derive(Default)]
struct Seen {
    consumers: Vec<Answer<Result<ConsumerConnection, i32>>>,
    producers: Vec<Answer<Result<ProducerConnection, i32>>>,
    consumed_by: Vec<Answer<BTreeSet<String>>>,
    /// GET_EARLIEST_MSG_STORETIME: (queue, timestamp).
    earliest: Vec<Answer<(i32, i64)>>,
    runtime: Vec<Answer<BTreeMap<String, String>>>,
    system_topics: Vec<Vec<String>>,
    /// CHECK_CLIENT_CONFIG: the expression's index in [`EXPRESSIONS`] and the answer's code.
    client_checks: Vec<(usize, i32)>,
    /// Requests sent and not answered (or answered with a code no promise names).
    unanswered: u64,
}

type Shared = Arc<Mutex<Seen>>;

fn seen(shared: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn tune(config: &mut BrokerConfig) {
    config.property_filter = true;
}

async fn member(name: String, history: History) {
    clients::push_consume(name, history, clients::push_config(GROUP, TOPIC)).await;
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let started_wall = wall_ms();
    let (schedule, history, cluster) = super::one_tuned_broker_under_swarm(MESSAGES, tune);
    let broker = cluster.broker_addrs()[0].clone();
    let members = super::start_members(&cluster, &history, 2, member);
    let member_ips: Vec<Ipv4Addr> = members.iter().filter_map(|m| cluster.client_ip(m)).collect();
    let producer_node = cluster.client("producer");
    let producer_ip = cluster.client_ip(&producer_node).expect("a client node has an address");
    let producing = history.clone();
    let sending = producer_node.spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        clients::produce(producing, TOPIC, 0..MESSAGES, 100, 5..40).await;
    });
    let shared = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let operating = {
        let (shared, stop, broker) = (shared.clone(), stop.clone(), broker.clone());
        cluster.client("operator").spawn(async move { operate(&broker, &shared, &stop).await })
    };
    // Faults begin once a send was acknowledged: a broker cut off before its first
    // registration leaves the topic uncreated, and members of a topic no broker serves have no
    // broker to heartbeat to (as RocketMQ's), so no list could name them.
    while !history.any_acked() && !sending.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let watched = (&history, MESSAGES);
    let entries =
        super::play_members(&cluster, &schedule, &members, watched, sending, LIVENESS).await;
    stop.store(true, Ordering::Release);
    operating.await.unwrap();
    let watch = cluster.brokers[0].watch();
    let clients = (member_ips, producer_ip);
    let after = cluster.client("after").spawn({
        let (broker, clients) = (broker.clone(), clients.clone());
        async move { listed_after_healing(&broker, &watch, &clients).await }
    });
    let healed = after.await.unwrap();
    let mut verdicts = checkers::delivery(&entries, None, LIVENESS);
    {
        let seen = seen(&shared);
        verdicts.extend([
            connections_are_clients(&seen, &clients),
            consumed_by_the_group(&seen),
            earliest_times_hold(&entries, &seen, started_wall),
            runtime_info_holds(&entries, &seen),
            system_topics_listed(&seen),
            client_configs_judged(&seen),
            healed,
        ]);
        report::note(format!("requests not answered: {}", seen.unanswered));
    }
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// The operator's loop until `stop`: one of the read-only requests every 20-150 ms.
async fn operate(broker: &str, shared: &Shared, stop: &AtomicBool) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    while !stop.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(20..150))).await;
        let asked = match thread_rng().gen_range(0..7) {
            0 => consumers(&client, broker).await.map(|a| seen(shared).consumers.push(a)),
            1 => producers(&client, broker).await.map(|a| seen(shared).producers.push(a)),
            2 => consumed_by(&client, broker).await.map(|a| seen(shared).consumed_by.push(a)),
            3 => {
                let queue = thread_rng().gen_range(0..QUEUES);
                earliest(&client, broker, queue).await.map(|a| seen(shared).earliest.push(a))
            }
            4 => runtime_info(&client, broker).await.map(|a| seen(shared).runtime.push(a)),
            5 => system_topics(&client, broker).await.map(|a| seen(shared).system_topics.push(a)),
            _ => {
                let which = thread_rng().gen_range(0..EXPRESSIONS.len());
                let code = check_client(&client, broker, which).await;
                code.map(|code| seen(shared).client_checks.push((which, code)))
            }
        };
        if asked.is_none() {
            seen(shared).unanswered += 1;
        }
    }
    client.shutdown();
}

/// Sends `ask`: its answer, when one came in time with a code in `codes`.
async fn call(
    client: &RemotingClient,
    broker: &str,
    ask: RemotingCommand,
    codes: &[i32],
) -> Option<Answer<RemotingCommand>> {
    let sent = Instant::now();
    let answer = client.invoke(broker, ask, TIMEOUT).await.ok()?;
    codes.contains(&answer.code).then(|| Answer { sent, wall: wall_ms(), said: answer })
}

/// Sends `ask` and reads a SUCCESS answer's body as `T` (an answer that does not read fails
/// the run); a refusal with one of `refusals` is its code.
async fn read_body<T: serde::de::DeserializeOwned>(
    client: &RemotingClient,
    broker: &str,
    ask: RemotingCommand,
    refusals: &[i32],
) -> Option<Answer<Result<T, i32>>> {
    let codes: Vec<i32> = refusals.iter().copied().chain([response::SUCCESS]).collect();
    let answer = call(client, broker, ask, &codes).await?;
    Some(answer.map(|said| match said.code {
        response::SUCCESS => Ok(from_json::<T>(&said.body).expect("the body reads")),
        code => Err(code),
    }))
}

/// Sends `ask` and reads its body as `T` when it is answered SUCCESS.
async fn read_success<T: serde::de::DeserializeOwned>(
    client: &RemotingClient,
    broker: &str,
    ask: RemotingCommand,
) -> Option<Answer<T>> {
    let Answer { sent, wall, said } = read_body::<T>(client, broker, ask, &[]).await?;
    Some(Answer { sent, wall, said: said.ok()? })
}

async fn consumers(
    client: &RemotingClient,
    broker: &str,
) -> Option<Answer<Result<ConsumerConnection, i32>>> {
    let header = ConsumerGroupRequestHeader { consumer_group: GROUP.into() };
    let ask = RemotingCommand::request(request::GET_CONSUMER_CONNECTION_LIST).with_header(&header);
    read_body(client, broker, ask, &[response::CONSUMER_NOT_ONLINE]).await
}

async fn producers(
    client: &RemotingClient,
    broker: &str,
) -> Option<Answer<Result<ProducerConnection, i32>>> {
    let header = ProducerGroupRequestHeader { producer_group: PRODUCER_GROUP.into() };
    let ask = RemotingCommand::request(request::GET_PRODUCER_CONNECTION_LIST).with_header(&header);
    read_body(client, broker, ask, &[response::SYSTEM_ERROR]).await
}

async fn consumed_by(client: &RemotingClient, broker: &str) -> Option<Answer<BTreeSet<String>>> {
    let header = TopicRequestHeader { topic: TOPIC.into() };
    let ask = RemotingCommand::request(request::QUERY_TOPIC_CONSUME_BY_WHO).with_header(&header);
    Some(read_success::<GroupList>(client, broker, ask).await?.map(|list| list.group_list))
}

async fn earliest(client: &RemotingClient, broker: &str, queue: i32) -> Option<Answer<(i32, i64)>> {
    let header = TopicQueueRequestHeader { topic: TOPIC.into(), queue_id: queue };
    let ask = RemotingCommand::request(request::GET_EARLIEST_MSG_STORETIME).with_header(&header);
    let answer = call(client, broker, ask, &[response::SUCCESS]).await?;
    Some(answer.map(|said| {
        let header: TimestampResponseHeader = said.header().expect("a timestamp header");
        (queue, header.timestamp)
    }))
}

async fn runtime_info(
    client: &RemotingClient,
    broker: &str,
) -> Option<Answer<BTreeMap<String, String>>> {
    let ask = RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO);
    Some(read_success::<KvTable>(client, broker, ask).await?.map(|kv| kv.table))
}

async fn system_topics(client: &RemotingClient, broker: &str) -> Option<Vec<String>> {
    let ask = RemotingCommand::request(request::GET_SYSTEM_TOPIC_LIST_FROM_BROKER);
    Some(read_success::<TopicList>(client, broker, ask).await?.said.topic_list)
}

/// CHECK_CLIENT_CONFIG of expression `which`: the answer's code.
async fn check_client(client: &RemotingClient, broker: &str, which: usize) -> Option<i32> {
    let (kind, expression, _) = EXPRESSIONS[which];
    let body = CheckClientBody {
        client_id: "operator".into(),
        group: GROUP.into(),
        subscription_data: Some(SubscriptionData {
            topic: TOPIC.into(),
            sub_string: expression.into(),
            expression_type: Some(kind.into()),
            ..SubscriptionData::default()
        }),
    };
    let ask = RemotingCommand::request(request::CHECK_CLIENT_CONFIG)
        .with_body(to_json(&body, JsonStyle::Fastjson));
    let codes = [response::SUCCESS, response::SUBSCRIPTION_PARSE_FAILED, response::SYSTEM_ERROR];
    Some(call(client, broker, ask, &codes).await?.said.code)
}

/// The address part of a connection's `ip:port`.
fn ip_of(client_addr: &str) -> Option<Ipv4Addr> {
    client_addr.split(':').next()?.parse().ok()
}

/// Why `connection` is not one of the group's members as they subscribe, if it is not.
fn not_the_groups(connection: &ConsumerConnection, members: &[Ipv4Addr]) -> Option<String> {
    let stranger = (connection.connection_set.iter())
        .find(|c| !ip_of(&c.client_addr).is_some_and(|ip| members.contains(&ip)));
    if let Some(stranger) = stranger {
        return Some(format!("{stranger:?} is not a member's connection"));
    }
    let subscribed = connection.subscription_table.get(TOPIC).map(|s| s.sub_string.as_str());
    let retry = format!("%RETRY%{GROUP}");
    let others: Vec<_> =
        connection.subscription_table.keys().filter(|t| **t != TOPIC && **t != retry).collect();
    if subscribed != Some("*") || !others.is_empty() {
        return Some(format!("subscriptions {:?}", connection.subscription_table));
    }
    let how = (connection.message_model.as_str(), connection.consume_type.as_str());
    (how != ("CLUSTERING", "CONSUME_PASSIVELY")).then(|| format!("the group is {how:?}"))
}

fn connections_are_clients(
    seen: &Seen,
    (members, producer): &(Vec<Ipv4Addr>, Ipv4Addr),
) -> Verdict {
    let mut broken = Vec::new();
    for answer in &seen.consumers {
        match &answer.said {
            Ok(connection) => broken.extend(not_the_groups(connection, members)),
            Err(code) if *code == response::CONSUMER_NOT_ONLINE => {}
            Err(code) => broken.push(format!("the group's connections refused {code}")),
        }
    }
    for answer in &seen.producers {
        match &answer.said {
            Ok(connection) => broken.extend(
                (connection.connection_set.iter())
                    .filter(|c| ip_of(&c.client_addr) != Some(*producer))
                    .map(|c| format!("{c:?} is not the producer's connection")),
            ),
            Err(code) if *code == response::SYSTEM_ERROR => {}
            Err(code) => broken.push(format!("the producers' connections refused {code}")),
        }
    }
    let outcome = match broken.first() {
        None => Ok(format!(
            "{} answers for the group, {} for the producers",
            seen.consumers.len(),
            seen.producers.len()
        )),
        Some(first) => Err(format!("{} times: {first}", broken.len())),
    };
    Verdict::new("connections_are_clients", outcome)
}

fn consumed_by_the_group(seen: &Seen) -> Verdict {
    let stranger = (seen.consumed_by.iter()).find(|a| a.said.iter().any(|g| g != GROUP));
    let outcome = match stranger {
        None => Ok(format!("{} answers name the group or no one", seen.consumed_by.len())),
        Some(answer) => Err(format!("the topic consumed by {:?}", answer.said)),
    };
    Verdict::new("consumed_by_the_group", outcome)
}

/// The store time (wall ms) of every acknowledged message, by queue, as it was delivered.
fn acked_store_times(entries: &[Entry]) -> BTreeMap<i32, i64> {
    let acked: BTreeSet<&Place> = (entries.iter())
        .filter_map(|e| match &e.event {
            Event::Acked { place: Some(place), .. } => Some(place),
            _ => None,
        })
        .collect();
    let mut earliest = BTreeMap::new();
    for entry in entries {
        if let Event::Delivered { place, stored_wall, .. } = &entry.event {
            if acked.contains(place) {
                let at = earliest.entry(place.queue).or_insert(*stored_wall);
                *at = (*at).min(*stored_wall);
            }
        }
    }
    earliest
}

fn earliest_times_hold(entries: &[Entry], seen: &Seen, started_wall: i64) -> Verdict {
    let acked = acked_store_times(entries);
    let first_acked = acked.values().min().copied().unwrap_or(i64::MAX);
    let in_bounds = |t: i64, bound: i64| t >= started_wall && t <= bound;
    let queues = (seen.earliest.iter()).find(|a| {
        let (queue, t) = a.said;
        t != -1 && !in_bounds(t, acked.get(&queue).copied().unwrap_or(i64::MAX))
    });
    let table = (seen.runtime.iter()).find(|a| {
        let t = a.said.get("earliestMessageTimeStamp").map(|t| t.parse::<i64>().unwrap());
        t.is_some_and(|t| !in_bounds(t, first_acked))
    });
    let outcome = match (queues, table) {
        (None, None) => Ok(format!(
            "{} queue answers and {} runtime tables within the run and the acknowledged \
             messages' store times {acked:?}",
            seen.earliest.len(),
            seen.runtime.len()
        )),
        (Some(a), _) => Err(format!(
            "queue {}'s earliest store time answered {} (the run began at {started_wall}; its \
             acknowledged messages' earliest is {:?})",
            a.said.0,
            a.said.1,
            acked.get(&a.said.0)
        )),
        (_, Some(a)) => Err(format!(
            "earliestMessageTimeStamp {:?} (the run began at {started_wall}; the first \
             acknowledged message was stored at {first_acked})",
            a.said.get("earliestMessageTimeStamp")
        )),
    };
    Verdict::new("earliest_times_hold", outcome)
}

fn runtime_info_holds(entries: &[Entry], seen: &Seen) -> Verdict {
    let mut broken = Vec::new();
    for answer in &seen.runtime {
        let value = |key: &str| answer.said.get(key).map(String::as_str);
        let number = |key: &str| value(key).and_then(|v| v.parse::<i64>().ok());
        let max = number("commitLogMaxOffset").unwrap_or(-1);
        let behind = entries.iter().find_map(|e| match e.event {
            Event::Acked { id, stored_at: Some(at), .. }
                if e.at < answer.sent && max <= at as i64 =>
            {
                Some(format!("commitLogMaxOffset {max}, though message {id} was acked at {at}"))
            }
            _ => None,
        });
        broken.extend(behind);
        let how = (value("brokerRole"), value("flushDiskType"));
        if how != (Some("ASYNC_MASTER"), Some("SYNC_FLUSH")) {
            broken.push(format!("the broker is {how:?}"));
        }
        if number("bootTimestamp").is_none_or(|boot| boot > answer.wall) {
            broken.push(format!(
                "booted at {:?}, answered at {}",
                value("bootTimestamp"),
                answer.wall
            ));
        }
    }
    let outcome = match broken.first() {
        None => Ok(format!("{} runtime tables", seen.runtime.len())),
        Some(first) => Err(format!("{} times: {first}", broken.len())),
    };
    Verdict::new("runtime_info_holds", outcome)
}

fn system_topics_listed(seen: &Seen) -> Verdict {
    let needed =
        ["SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "TBW102", "DefaultCluster", "broker-a"];
    let retry = format!("%RETRY%{GROUP}");
    let wrong = seen.system_topics.iter().find(|list| {
        list != &&seen.system_topics[0]
            || needed.iter().any(|n| !list.iter().any(|t| t == n))
            || list.iter().any(|t| t == TOPIC || *t == retry)
    });
    let outcome = match wrong {
        None => Ok(format!("{} answers, each the same", seen.system_topics.len())),
        Some(list) => {
            Err(format!("system topics {list:?} (first answered {:?})", seen.system_topics[0]))
        }
    };
    Verdict::new("system_topics_listed", outcome)
}

fn client_configs_judged(seen: &Seen) -> Verdict {
    let wrong = seen.client_checks.iter().find(|(which, code)| {
        let accepted = EXPRESSIONS[*which].2;
        let expected =
            if accepted { response::SUCCESS } else { response::SUBSCRIPTION_PARSE_FAILED };
        *code != expected
    });
    let outcome = match wrong {
        None => Ok(format!("{} checks answered as RocketMQ would", seen.client_checks.len())),
        Some((which, code)) => Err(format!("{:?} answered {code}", EXPRESSIONS[*which])),
    };
    Verdict::new("client_configs_judged", outcome)
}

/// The store time of the record at the front of `queue`, read from `store` directly.
fn front_time(store: &Store, queue: i32) -> i64 {
    let Some((min, _)) = store.queue_offsets(TOPIC, queue) else { return -1 };
    let got = store.get_messages(TOPIC, queue, min, ReadLimits::default(), &|_| true);
    let front = (got.status == GetStatus::Found).then(|| got.messages.first()).flatten();
    match front.map(|m| scan_record(m, Checks { physical_offset: None, crc: true })) {
        Some(Scanned::Record(record)) => record.store_timestamp,
        _ => -1,
    }
}

/// Asks, until they all hold or [`LIVENESS`] passes, whether the lists name what the clients
/// are once the faults are over, and each queue's earliest time is its front record's.
async fn listed_after_healing(
    broker: &str,
    watch: &Watch,
    (members, producer): &(Vec<Ipv4Addr>, Ipv4Addr),
) -> Verdict {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let deadline = Instant::now() + LIVENESS;
    let mut last = String::new();
    while Instant::now() < deadline {
        last = match healed_view(&client, broker, watch, members, *producer).await {
            Ok(()) => {
                client.shutdown();
                return Verdict::new(
                    "listed_after_healing",
                    Ok("the lists name the clients".into()),
                );
            }
            Err(why) => why,
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client.shutdown();
    Verdict::new("listed_after_healing", Err(format!("after {LIVENESS:?}: {last}")))
}

/// `Ok` when every list names what the clients are now, else what does not.
async fn healed_view(
    client: &RemotingClient,
    broker: &str,
    watch: &Watch,
    members: &[Ipv4Addr],
    producer: Ipv4Addr,
) -> Result<(), String> {
    let listed = consumers(client, broker).await.map(|a| a.said);
    let ips: BTreeSet<Option<Ipv4Addr>> = match &listed {
        Some(Ok(connection)) => {
            connection.connection_set.iter().map(|c| ip_of(&c.client_addr)).collect()
        }
        _ => BTreeSet::new(),
    };
    if ips != members.iter().map(|ip| Some(*ip)).collect() {
        return Err(format!("the group's connections: {listed:?}"));
    }
    match producers(client, broker).await.map(|a| a.said) {
        Some(Err(_)) => {}
        Some(Ok(c)) if c.connection_set.iter().all(|c| ip_of(&c.client_addr) != Some(producer)) => {
        }
        other => return Err(format!("the producer, shut down, is listed: {other:?}")),
    }
    let by = consumed_by(client, broker).await.map(|a| a.said);
    if by.as_ref().is_none_or(|groups| !groups.contains(GROUP)) {
        return Err(format!("the topic is consumed by {by:?}"));
    }
    for queue in 0..QUEUES {
        let answered = earliest(client, broker, queue).await.map(|a| a.said.1);
        let Some(running) = watch.get() else { return Err("the broker is down".into()) };
        let front = front_time(running.store(), queue);
        if answered != Some(front) {
            return Err(format!("queue {queue}'s earliest time {answered:?}, its front's {front}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_core::admin::Connection;

    const MEMBER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
    const PRODUCER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

    fn answer<T>(said: T) -> Answer<T> {
        Answer { sent: Instant::now(), wall: wall_ms(), said }
    }

    fn place(queue: i32) -> Place {
        Place { broker: "broker-a".into(), topic: TOPIC.into(), queue, offset: 0 }
    }

    /// Message 1 acknowledged at commit-log offset 500 in queue 0, then delivered, stored at
    /// wall time `stored`.
    fn acked_and_delivered(stored: i64) -> Vec<Entry> {
        let acked = Event::Acked { id: 1, place: Some(place(0)), stored_at: Some(500) };
        let delivered = Event::Delivered {
            consumer: "member-0".into(),
            place: place(0),
            id: 1,
            body_hash: 0,
            stored_wall: stored,
        };
        [acked, delivered].into_iter().map(|event| Entry { at: Instant::now(), event }).collect()
    }

    fn group_of(addr: &str) -> ConsumerConnection {
        let subscription = SubscriptionData { sub_string: "*".into(), ..Default::default() };
        let connection = Connection { client_addr: addr.into(), ..Default::default() };
        ConsumerConnection {
            connection_set: [connection].into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: "CLUSTERING".into(),
            subscription_table: [(TOPIC.to_owned(), subscription)].into(),
            ..Default::default()
        }
    }

    #[madsim::test]
    async fn a_stranger_listed_in_the_group_is_caught() {
        let clients = (vec![MEMBER], PRODUCER);
        let mut seen = Seen::default();
        seen.consumers.push(answer(Ok(group_of("10.0.2.1:7"))));
        seen.consumers.push(answer(Err(response::CONSUMER_NOT_ONLINE)));
        assert!(connections_are_clients(&seen, &clients).outcome.is_ok());
        seen.consumers.push(answer(Ok(group_of("10.0.2.3:7"))));
        assert!(connections_are_clients(&seen, &clients).outcome.is_err());
        let mut seen = Seen::default();
        let mut broadcasting = group_of("10.0.2.1:7");
        broadcasting.message_model = "BROADCASTING".into();
        seen.consumers.push(answer(Ok(broadcasting)));
        assert!(connections_are_clients(&seen, &clients).outcome.is_err());
        let mut seen = Seen::default();
        let member = Connection { client_addr: "10.0.2.1:9".into(), ..Default::default() };
        let producers = ProducerConnection { connection_set: [member].into() };
        seen.producers.push(answer(Ok(producers)));
        assert!(connections_are_clients(&seen, &clients).outcome.is_err());
    }

    #[madsim::test]
    async fn an_earliest_time_past_an_acknowledged_message_is_caught() {
        let entries = acked_and_delivered(2_000);
        let mut seen = Seen::default();
        seen.earliest.extend([answer((0, 1_500)), answer((0, -1)), answer((1, 9_000))]);
        assert!(earliest_times_hold(&entries, &seen, 1_000).outcome.is_ok());
        seen.earliest.push(answer((0, 2_001)));
        assert!(earliest_times_hold(&entries, &seen, 1_000).outcome.is_err());
        let mut seen = Seen::default();
        seen.earliest.push(answer((0, 999)));
        assert!(earliest_times_hold(&entries, &seen, 1_000).outcome.is_err());
        let mut seen = Seen::default();
        let table = [("earliestMessageTimeStamp".to_owned(), "2001".to_owned())];
        seen.runtime.push(answer(table.into()));
        assert!(earliest_times_hold(&entries, &seen, 1_000).outcome.is_err());
    }

    #[madsim::test]
    async fn a_runtime_table_short_of_an_acknowledged_record_is_caught() {
        let entries = acked_and_delivered(2_000);
        // The tables are asked after the acknowledgement.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let table = |max: &str| -> BTreeMap<String, String> {
            [
                ("commitLogMaxOffset", max),
                ("brokerRole", "ASYNC_MASTER"),
                ("flushDiskType", "SYNC_FLUSH"),
                ("bootTimestamp", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        };
        let mut seen = Seen::default();
        seen.runtime.push(answer(table("501")));
        assert!(runtime_info_holds(&entries, &seen).outcome.is_ok());
        seen.runtime.push(answer(table("500")));
        assert!(runtime_info_holds(&entries, &seen).outcome.is_err());
    }

    #[madsim::test]
    async fn system_topics_that_change_or_hold_the_workloads_are_caught() {
        let needed =
            ["SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "TBW102", "DefaultCluster"];
        let list: Vec<String> = needed.iter().chain(&["broker-a"]).map(|t| (*t).into()).collect();
        let mut seen = Seen { system_topics: vec![list.clone(), list.clone()], ..Seen::default() };
        assert!(system_topics_listed(&seen).outcome.is_ok());
        let mut with_topic = list.clone();
        with_topic.push(TOPIC.into());
        seen.system_topics.push(with_topic);
        assert!(system_topics_listed(&seen).outcome.is_err());
        let seen = Seen { system_topics: vec![list[1..].to_vec()], ..Seen::default() };
        assert!(system_topics_listed(&seen).outcome.is_err());
    }

    #[madsim::test]
    async fn a_malformed_expression_accepted_is_caught() {
        let malformed = EXPRESSIONS.iter().position(|e| !e.2).unwrap();
        let mut seen = Seen { client_checks: vec![(0, response::SUCCESS)], ..Seen::default() };
        seen.client_checks.push((malformed, response::SUBSCRIPTION_PARSE_FAILED));
        assert!(client_configs_judged(&seen).outcome.is_ok());
        seen.client_checks.push((malformed, response::SUCCESS));
        assert!(client_configs_judged(&seen).outcome.is_err());
        let seen = Seen { client_checks: vec![(0, response::SYSTEM_ERROR)], ..Seen::default() };
        assert!(client_configs_judged(&seen).outcome.is_err());
    }
}
