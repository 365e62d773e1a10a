//! Messages found by key and by id under simulation: a SYNC_FLUSH broker with small index
//! files (64 slots, 256 entries: a new file every 85 messages here) whose disk and network are
//! under a swarm plan with two more power losses, a producer sending 200 messages that each
//! carry their own key, a key shared with nine others and an id (UNIQ_KEY) of their own, and
//! an operator asking all along what mqadmin's queryMsgByKey, queryMsgByUniqueKey and
//! queryMsgById ask (QUERY_MESSAGE by key, QUERY_MESSAGE with `_UNIQUE_KEY_QUERY`,
//! VIEW_MESSAGE_BY_ID at the offset an acknowledgement named) about messages acknowledged so
//! far. The index is written as records are dispatched and flushed lazily, so after a power
//! loss recovery must index again what the files lost.
//!
//! The promises checked:
//! - every answer, during the faults too, is whole records of messages sent under the key
//!   asked (their body as sent), and a view by id is the acknowledged message at its offset
//!   (`answers_are_what_was_sent`);
//! - once the faults are over, every acknowledged message is found by its key, by its id and
//!   at its offset, and a shared key finds all its acknowledged messages, within a minute
//!   (`acknowledged_found`);
//! - as everywhere, no acknowledged record is cut off by a recovery (`never_truncated`).
//!
//! Run one seed: `cargo sim --seed 7 --scenario queries`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use petrel::broker::BrokerConfig;
use petrel_core::record::scan_records;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{QueryMessageRequestHeader, ViewMessageRequestHeader};
use petrel_net::transport::{ClientConfig, RemotingClient};
use tokio::time::Instant;

use crate::checkers::{self, Verdict};
use crate::cluster::{Cluster, Strike};
use crate::faults::FaultPlan;
use crate::history::{body_hash, Event, History};
use crate::{clients, report, workload, REQUEST_TIMEOUT};

const TOPIC: &str = "SimQueries";
const MESSAGES: u64 = 200;
const BODY_BYTES: usize = 200;
/// Messages that share a key.
const SHARING: u64 = 10;
/// The most a shared-key query asks for: more than twice a key's messages (a retried send
/// may store one twice).
const QUERY_MAX: i32 = 64;
/// Once the faults are over, every acknowledged message is found within this.
const LIVENESS: Duration = Duration::from_secs(60);

fn own_key(id: u64) -> String {
    format!("k{id}")
}

fn shared_key(id: u64) -> String {
    format!("g{}", id / SHARING)
}

/// Message `id`'s UNIQ_KEY, as the producer sets it (32 hex digits, as RocketMQ's).
fn unique_key(id: u64) -> String {
    format!("0A000201000000000000{id:012X}")
}

fn tune(config: &mut BrokerConfig) {
    config.store.max_hash_slots = 64;
    config.store.max_index_entries = 256;
}

/// What a question asked.
#[derive(Debug, Clone)]
enum Question {
    /// QUERY_MESSAGE by a KEYS key, or by UNIQ_KEY when `unique`.
    Key { key: String, unique: bool },
    /// VIEW_MESSAGE_BY_ID at the offset message `id`'s acknowledgement named.
    View { id: u64, offset: u64 },
}

/// A record an answer held: the message id its body carries, its body's hash, its offset in
/// the commit log, and whether it carries the key asked; or what was wrong with it.
type Found = Result<(u64, u32, u64, bool), String>;

/// A question and its answer: the records, or the refusal's code (`None`: no answer).
#[derive(Debug, Clone)]
struct Asked {
    question: Question,
    answer: Result<Vec<Found>, Option<i32>>,
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm_restarting().schedule(MESSAGES);
    report::note(format!("fault schedule of broker-a (a step is a new send):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster = Cluster::builder().disk_faults(schedule.disk).tune(tune).build(&history);
    let broker = cluster.broker_addrs()[0].clone();
    let producer = cluster.client("producer");
    let producing = history.clone();
    let produced = producer.spawn(async move {
        // Once the broker has registered: a send before finds no route.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let dress = |id, message: petrel_client::Message| {
            let mut message = message.with_keys([own_key(id), shared_key(id)]);
            message.id = Some(unique_key(id));
            message
        };
        clients::produce_dressed(producing, TOPIC, 0..MESSAGES, BODY_BYTES, 0..40, dress).await;
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let admin = cluster.client("admin");
    let asking = admin.spawn({
        let (broker, history, asked) = (broker.clone(), history.clone(), asked.clone());
        async move {
            let client = RemotingClient::new(ClientConfig::default(), None);
            loop {
                tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(20..200))).await;
                let stored = stored_at(&history);
                let Some(id) = pick(&stored) else { continue };
                let question = match thread_rng().gen_range(0..4) {
                    0 => Question::Key { key: own_key(id), unique: false },
                    1 => Question::Key { key: shared_key(id), unique: false },
                    2 => Question::Key { key: unique_key(id), unique: true },
                    _ => Question::View { id, offset: stored[&id] },
                };
                let answer = ask(&client, &broker, &question).await;
                asked.lock().unwrap().push(Asked { question, answer });
            }
        }
    });
    let strikes = schedule.faults.iter().map(|f| (f.after, Strike::Broker(0, f.clone()))).collect();
    cluster.play(strikes, || history.sends_settled(), || produced.is_finished()).await;
    cluster.heal();
    produced.await.unwrap();
    asking.abort();
    let found = admin.spawn({
        let (broker, history, asked) = (broker.clone(), history.clone(), asked.clone());
        async move { acknowledged_found(&broker, &history, &asked).await }
    });
    let found = found.await.unwrap();
    cluster.check_invariants();

    let entries = history.entries();
    let asked = asked.lock().unwrap().clone();
    let verdicts = [
        checkers::never_truncated(&entries),
        Verdict::new("answers_are_what_was_sent", answers_are_what_was_sent(&entries, &asked)),
        Verdict::new("acknowledged_found", found),
    ];
    checkers::conclude(&verdicts);
    cluster.stop().await;
    format!("{}; {} questions answered or not", history.summary(), asked.len())
}

/// The commit-log offset of each acknowledged message, as its acknowledgement named it.
fn stored_at(history: &History) -> BTreeMap<u64, u64> {
    let entries = history.entries();
    let at = entries.iter().filter_map(|e| match e.event {
        Event::Acked { id, stored_at: Some(at), .. } => Some((id, at)),
        _ => None,
    });
    at.collect()
}

fn pick(stored: &BTreeMap<u64, u64>) -> Option<u64> {
    let ids: Vec<u64> = stored.keys().copied().collect();
    (!ids.is_empty()).then(|| ids[thread_rng().gen_range(0..ids.len())])
}

/// Asks `question`; the records of a SUCCESS, else the code (`None`: no answer).
async fn ask(
    client: &RemotingClient,
    broker: &str,
    question: &Question,
) -> Result<Vec<Found>, Option<i32>> {
    let command = match question {
        Question::Key { key, unique } => {
            let header = QueryMessageRequestHeader {
                topic: TOPIC.to_owned(),
                key: key.clone(),
                max_num: QUERY_MAX,
                begin_timestamp: 0,
                end_timestamp: i64::MAX,
            };
            let mut command = RemotingCommand::request(request::QUERY_MESSAGE).with_header(&header);
            if *unique {
                command.ext_fields.insert("_UNIQUE_KEY_QUERY", "true");
            }
            command
        }
        Question::View { offset, .. } => {
            let header =
                ViewMessageRequestHeader { topic: Some(TOPIC.to_owned()), offset: *offset as i64 };
            RemotingCommand::request(request::VIEW_MESSAGE_BY_ID).with_header(&header)
        }
    };
    let reply = client.invoke(broker, command, REQUEST_TIMEOUT).await.map_err(|_| None)?;
    if reply.code != response::SUCCESS {
        return Err(Some(reply.code));
    }
    let key = match question {
        Question::Key { key, .. } => Some(key.as_str()),
        Question::View { .. } => None,
    };
    Ok(records(&reply.body_bytes(), key))
}

/// The records of an answer's body, each checked whole (its CRCs) and read for its message.
fn records(body: &[u8], key: Option<&str>) -> Vec<Found> {
    let mut out = Vec::new();
    for record in scan_records(body) {
        let record = match record {
            Ok(record) => record,
            Err(at) => {
                out.push(Err(format!("byte {at} of the answer is no whole record")));
                break;
            }
        };
        if record.topic != TOPIC.as_bytes() {
            let topic = String::from_utf8_lossy(record.topic);
            out.push(Err(format!("a record of topic {topic}")));
            continue;
        }
        let Some(id) = workload::body_id(record.body) else {
            out.push(Err("a record whose body carries no message id".to_owned()));
            continue;
        };
        let keyed = key.is_none_or(|key| record.has_key(key));
        out.push(Ok((id, body_hash(record.body), record.physical_offset as u64, keyed)));
    }
    out
}

/// Whether `key` is one message `id` was sent under.
fn sent_under(id: u64, key: &str, unique: bool) -> bool {
    if unique {
        key == unique_key(id)
    } else {
        key == own_key(id) || key == shared_key(id)
    }
}

fn answers_are_what_was_sent(
    entries: &[crate::history::Entry],
    asked: &[Asked],
) -> Result<String, String> {
    let sent: BTreeMap<u64, u32> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Sent { id, body_hash, .. } => Some((id, body_hash)),
            _ => None,
        })
        .collect();
    let mut records = 0;
    for Asked { question, answer } in asked {
        let Ok(found) = answer else { continue };
        if found.is_empty() {
            return Err(format!("{question:?} was answered SUCCESS with no record"));
        }
        for record in found {
            records += 1;
            let (id, hash, offset, keyed) =
                record.clone().map_err(|why| format!("{question:?} answered {why}"))?;
            if sent.get(&id) != Some(&hash) {
                return Err(format!("{question:?} answered message {id} with another body"));
            }
            match question {
                Question::Key { key, unique } if !keyed || !sent_under(id, key, *unique) => {
                    return Err(format!("{question:?} answered message {id}, not sent under it"));
                }
                Question::View { id: asked, offset: at } if (id, offset) != (*asked, *at) => {
                    return Err(format!("{question:?} answered message {id} at {offset}"));
                }
                _ => {}
            }
        }
    }
    let answered = asked.iter().filter(|a| a.answer.is_ok()).count();
    Ok(format!("{answered} of {} questions answered, {records} records as sent", asked.len()))
}

/// On the healed cluster: each acknowledged message asked for by its own key, its id and
/// at its offset, and each shared key, until the answer holds what it must, within
/// [`LIVENESS`]. Every answer joins `asked`, for [`answers_are_what_was_sent`].
async fn acknowledged_found(
    broker: &str,
    history: &History,
    asked: &Mutex<Vec<Asked>>,
) -> Result<String, String> {
    let deadline = Instant::now() + LIVENESS;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let stored = stored_at(history);
    let mut questions: Vec<(Question, BTreeSet<u64>)> = Vec::new();
    for (&id, &offset) in &stored {
        let only = BTreeSet::from([id]);
        questions.push((Question::Key { key: own_key(id), unique: false }, only.clone()));
        questions.push((Question::Key { key: unique_key(id), unique: true }, only.clone()));
        questions.push((Question::View { id, offset }, only));
    }
    for group in 0..MESSAGES.div_ceil(SHARING) {
        let members: BTreeSet<u64> =
            stored.keys().copied().filter(|id| id / SHARING == group).collect();
        if !members.is_empty() {
            let key = shared_key(group * SHARING);
            questions.push((Question::Key { key, unique: false }, members));
        }
    }
    for (question, wanted) in &questions {
        loop {
            let answer = ask(&client, broker, question).await;
            let held: BTreeSet<u64> = match &answer {
                Ok(found) => found.iter().filter_map(|f| f.as_ref().ok().map(|r| r.0)).collect(),
                Err(_) => BTreeSet::new(),
            };
            let missing: Vec<&u64> = wanted.difference(&held).collect();
            asked
                .lock()
                .unwrap()
                .push(Asked { question: question.clone(), answer: answer.clone() });
            if missing.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{question:?} still lacks acknowledged {missing:?} {LIVENESS:?} after the faults; last answer {answer:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(format!("{} acknowledged messages found by key, id and offset", stored.len()))
}
