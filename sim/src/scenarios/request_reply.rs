//! Request-reply under simulation: a SYNC_FLUSH broker under a swarm plan, a requester
//! node sending 150 requests one after another with the Rust SDK's `Producer::request`
//! (3 s each), and a responder node whose push consumer answers each request it gets with
//! `reply::reply_to` (`re:` and the request's body), sent by a producer of its own as
//! SEND_REPLY_MESSAGE_V2; the broker passes each reply to the requester's connection
//! (PUSH_REPLY_MESSAGE_TO_CLIENT) and stores it. Partitions close the requester's connection
//! and power losses make the broker forget it, so a reply may find no way back until the
//! requester's next heartbeat.
//!
//! The promises checked:
//! - a request's call returns only the reply to that request (`replies_answer_their_requests`);
//! - once the faults are over, every one of 20 more requests gets its reply within 60 s, asked
//!   again after each timeout (`answered_after_healing`): a broker that lost the requester's
//!   connection learns its new one from a heartbeat (the SDK sends one before the next
//!   request after a timeout; its 30 s heartbeats alone would keep the bound too);
//! - the requests the responder consumed are whole and as sent (`intact`,
//!   `one_message_per_place`).
//!
//! Run one seed: `cargo sim --seed 7 --scenario request_reply`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use petrel_client::reply::reply_to;
use petrel_client::{
    ConsumeResult, Message, Producer, ProducerConfig, PushConsumer, ReceivedMessage,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::checkers::{self, Verdict};
use crate::cluster::{Cluster, Strike, NAMESRV};
use crate::faults::FaultPlan;
use crate::history::{body_hash, Event, History, SendMode};
use crate::{clients, report, workload};

const TOPIC: &str = "SimRequests";
const REQUESTS: u64 = 150;
/// Requests sent once the faults are over.
const AFTER: u64 = 20;
const BODY_BYTES: usize = 100;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Once the faults are over, each request is answered within this.
const LIVENESS: Duration = Duration::from_secs(60);

/// What a reply to `request` holds.
fn reply_body(request: &[u8]) -> Vec<u8> {
    [b"re:".as_slice(), request].concat()
}

/// A request's call and what it returned: the body of the reply, or nothing.
#[derive(Debug, Clone)]
struct Asked {
    id: u64,
    reply: Option<Vec<u8>>,
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm().schedule(REQUESTS);
    report::note(format!("fault schedule of broker-a (a step is a request):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster = Cluster::builder().disk_faults(schedule.disk).build(&history);
    let responding = history.clone();
    let _responder = cluster.process("responder", move || respond(responding.clone()));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let requester = cluster.client("requester");
    let requesting = requester.spawn({
        let (history, asked) = (history.clone(), asked.clone());
        async move {
            let producer = producer();
            // Once the broker has registered: a request before finds no route.
            tokio::time::sleep(Duration::from_secs(2)).await;
            for id in 0..REQUESTS {
                let reply = request(&producer, &history, id).await;
                asked.lock().unwrap().push(Asked { id, reply });
            }
            producer
        }
    });
    let strikes = schedule.faults.iter().map(|f| (f.after, Strike::Broker(0, f.clone()))).collect();
    let steps = || asked.lock().unwrap().len() as u64;
    cluster.play(strikes, steps, || requesting.is_finished()).await;
    cluster.heal();
    let producer = requesting.await.unwrap();
    let after = requester.spawn({
        let (history, asked) = (history.clone(), asked.clone());
        async move { answered_after_healing(&producer, &history, &asked).await }
    });
    let answered = after.await.unwrap();
    cluster.check_invariants();

    let entries = history.entries();
    let asked = asked.lock().unwrap().clone();
    let verdicts = [
        Verdict::new("replies_answer_their_requests", replies_answer_their_requests(&asked)),
        Verdict::new("answered_after_healing", answered),
        checkers::intact(&entries),
        checkers::one_message_per_place(&entries),
    ];
    checkers::conclude(&verdicts);
    cluster.stop().await;
    let replied = asked.iter().filter(|a| a.reply.is_some()).count();
    format!("{} requests, {replied} answered; {}", asked.len(), history.summary())
}

fn producer() -> Producer {
    let config =
        ProducerConfig { namesrv_addrs: vec![NAMESRV.into()], ..ProducerConfig::default() };
    Producer::start(config).expect("a producer with a NameServer starts")
}

/// Request `id`: recorded as sent (in doubt: a request's call does not tell whether its
/// message was stored), and its reply's body, if one came in time.
async fn request(producer: &Producer, history: &History, id: u64) -> Option<Vec<u8>> {
    let body = workload::body(id, BODY_BYTES);
    let hash = body_hash(&body);
    history.record(Event::Sent { id, mode: SendMode::Sync, body_hash: hash, due_wall: None });
    history.record(Event::InDoubt { id });
    let reply = producer.request(&Message::new(TOPIC, body), REQUEST_TIMEOUT).await;
    reply.ok().map(|reply| reply.body.to_vec())
}

/// The responder: a push consumer of the requests, each answered by a producer of its own;
/// until its node goes.
async fn respond(history: History) {
    let (send, mut received) = mpsc::unbounded_channel::<ReceivedMessage>();
    let replier = producer();
    tokio::spawn(async move {
        while let Some(request) = received.recv().await {
            let reply = reply_to(&request, reply_body(&request.body)).expect("a request");
            // A reply that cannot reach its requester is lost; the request times out.
            let _ = replier.send(&reply).await;
        }
    });
    let config = clients::push_config("SimResponders", TOPIC);
    let _consumer = PushConsumer::start(config, move |message: &ReceivedMessage| {
        history.record(clients::received("responder", message));
        let _ = send.send(message.clone());
        ConsumeResult::Success
    })
    .expect("a push consumer with a NameServer starts");
    std::future::pending::<()>().await;
}

fn replies_answer_their_requests(asked: &[Asked]) -> Result<String, String> {
    for Asked { id, reply } in asked {
        let Some(reply) = reply else { continue };
        let expected = reply_body(&workload::body(*id, BODY_BYTES));
        if *reply != expected {
            let other = reply.get(3..).and_then(workload::body_id);
            return Err(format!("request {id} returned a reply to {other:?}"));
        }
    }
    let answered = asked.iter().filter(|a| a.reply.is_some()).count();
    Ok(format!("{answered} of {} requests answered, each with its own reply", asked.len()))
}

/// On the healed cluster: [`AFTER`] more requests, each asked again after a timeout until it
/// is answered, all within [`LIVENESS`].
async fn answered_after_healing(
    producer: &Producer,
    history: &History,
    asked: &Mutex<Vec<Asked>>,
) -> Result<String, String> {
    let deadline = Instant::now() + LIVENESS;
    let mut tries = 0;
    for n in 0..AFTER {
        loop {
            let id = REQUESTS + tries;
            tries += 1;
            let reply = request(producer, history, id).await;
            let answered = reply.is_some();
            asked.lock().unwrap().push(Asked { id, reply });
            if answered {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("request {n} after the faults unanswered {LIVENESS:?} on"));
            }
        }
    }
    Ok(format!("{AFTER} requests answered after the faults in {tries} tries"))
}
