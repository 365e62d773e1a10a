//! Transaction messages under simulation: a NameServer, a SYNC_FLUSH broker under a swarm
//! fault plan (power losses, also while only checks run, partitions, disk faults), two
//! transaction producers of one group that lose power now and then, and a push consumer of
//! the real topic.
//!
//! The producers' application keeps its transactions in a database that outlives their
//! processes (the [`Ledger`]). Each transaction's plan is drawn from the seed before the run:
//! commit or roll back in the local transaction; decide in the local transaction but leave
//! the broker to ask (the process died before its END_TRANSACTION); or leave the outcome open
//! until the broker has checked it a drawn number of times. A process that starts again
//! answers checks its own way: some are hesitant and answer every open transaction
//! `Unknown`. A transaction whose sender died before its local transaction ran is rolled
//! back when it is checked. Sends are not retried, so each transaction has at most one half
//! message: a second place of its message in the real topic is the broker's doing.
//!
//! The promises checked at the end:
//! - a message is delivered only after its transaction was decided to commit: a rolled-back
//!   one never is, and no half message is delivered as itself;
//! - no committed message is stored in the real topic twice;
//! - a committed message that asked for a time (every fourth, `TIMER_DELIVER_MS`) is not
//!   stored in the real topic before it;
//! - every transaction ends once the faults are over: committed ones are delivered, ones the
//!   application never decided are discarded to `TRANS_CHECK_MAX_TIME_TOPIC`, and so are
//!   committed ones whose every check was lost (RocketMQ gives them up too);
//! - a discarded half message was checked `transactionCheckMax` times, and no check carries
//!   more;
//! - a check count survives the broker's crashes: ordered by when the broker made their
//!   copies, a transaction's checks never carry a count below one before (a pass read again
//!   after a crash passes over the copies a newer one supersedes), promised while the disk
//!   does not fail writes;
//! - a transaction lives in one copy at a time: no two copies of it in the final half queue
//!   carry the same count (a pass read again after a crash copies nothing twice), promised
//!   while the disk does not fail writes;
//! - and the shared ones: no acknowledged half message is cut off by a recovery, a place
//!   names one message, and a delivered message was sent and is whole.
//!
//! Run one seed: `cargo sim --seed 7 --scenario transactions`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use crate::checkers::{self, Verdict};
use crate::cluster::{Cluster, Strike, NAMESRV};
use crate::faults::FaultPlan;
use crate::history::{body_hash, wall_ms, Entry, Event, History, Place, SendMode};
use crate::report;
use crate::workload;
use madsim::rand::{thread_rng, Rng};
use petrel::broker::BrokerConfig;
use petrel_client::transaction_producer::{
    LocalTransactionState, TransactionListener, TransactionProducer,
};
use petrel_client::{Message, ProducerConfig, ReceivedMessage, SendResult, SendStatus};
use petrel_core::broker::transaction::{
    self, CHECK_MAX_TIME_TOPIC, CHECK_TIMES_PROPERTY, HALF_TOPIC,
};
use petrel_net::codec::codes::response;
use petrel_net::transport::{ClientConfig, RemotingClient};

const BROKER: &str = "10.0.1.1:10911";
const TOPIC: &str = "SimTransfers";
const PRODUCER_GROUP: &str = "SimTxProducers";
const CONSUMER_GROUP: &str = "SimTxConsumers";
const DISCARD_GROUP: &str = "SimTxDiscards";
const PRODUCERS: u64 = 2;
const TRANSACTIONS: u64 = 120;
/// The last this many transactions are sent once the faults are over.
const TAIL: u64 = 12;
const BODY_BYTES: usize = 200;
/// `transactionCheckMax` in this scenario.
const CHECK_MAX: i32 = 15;
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(1);
/// How often the broker writes consumer offsets (the check cursor among them).
const OFFSETS_INTERVAL: Duration = Duration::from_millis(100);
/// Once the faults are over, every transaction ends within this.
const LIVENESS: Duration = Duration::from_secs(60);
/// Once the faults have been over this long, every check reaches a producer: a producer's
/// request lost to a partition times out (3 s), the next heartbeat round (1 s) connects
/// again, and the broker's next pass (0.5 s) asks.
const QUIET: Duration = Duration::from_secs(6);
/// The consumer's and the discard reader's names in the history.
const CONSUMER: &str = "consumer";
const DISCARDS: &str = "discards";

fn tune(config: &mut BrokerConfig) {
    config.flush_offsets_interval_ms = OFFSETS_INTERVAL.as_millis() as u64;
    config.transactions.timeout_ms = TIMEOUT.as_millis() as u64;
    config.transactions.check_interval_ms = CHECK_INTERVAL.as_millis() as u64;
    config.transactions.check_max = CHECK_MAX;
}

/// What the application means to do with a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Decide in the local transaction and say so.
    Decide { commit: bool },
    /// Decide in the local transaction, then die before saying so: the broker must ask.
    Silent { commit: bool },
    /// Leave it open; decide at the first check whose count is `after` or more.
    Open { after: i32, commit: bool },
}

impl Plan {
    fn draw() -> Plan {
        let mut rng = thread_rng();
        let commit = rng.gen_ratio(2, 3);
        match rng.gen_range(0..100) {
            0..55 => Plan::Decide { commit },
            55..75 => Plan::Silent { commit },
            _ => Plan::Open { after: rng.gen_range(1..=CHECK_MAX + 2), commit },
        }
    }
}

/// One transaction in the application's database.
#[derive(Debug, Clone, Copy)]
struct Row {
    plan: Plan,
    /// The producer process that sent it (`Ledger::incarnations`' number), once sent.
    sender: Option<(u64, u64)>,
    decided: Option<bool>,
}

/// The producers' database: every transaction's plan and fate; it outlives their processes.
#[derive(Clone)]
struct Ledger {
    inner: Arc<Mutex<LedgerInner>>,
    history: History,
}

struct LedgerInner {
    rows: BTreeMap<u64, Row>,
    /// The faults are over: the tail may be sent.
    healed: bool,
    /// Each producer's latest process.
    incarnations: BTreeMap<u64, u64>,
    started: u64,
}

impl Ledger {
    fn new(history: &History) -> Ledger {
        let rows = (0..TRANSACTIONS)
            .map(|id| (id, Row { plan: Plan::draw(), sender: None, decided: None }))
            .collect();
        let inner = LedgerInner { rows, healed: false, incarnations: BTreeMap::new(), started: 0 };
        Ledger { inner: Arc::new(Mutex::new(inner)), history: history.clone() }
    }

    fn lock(&self) -> MutexGuard<'_, LedgerInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new process of producer `node` starts: its incarnation.
    fn start(&self, node: u64) -> u64 {
        let mut inner = self.lock();
        inner.started += 1;
        let incarnation = inner.started;
        inner.incarnations.insert(node, incarnation);
        incarnation
    }

    /// The next transaction producer `node` sends, now marked sent by `incarnation`: `None`
    /// when it sent all, `Some(None)` when the rest waits for the faults to end.
    fn next(&self, node: u64, incarnation: u64) -> Option<Option<u64>> {
        let mut inner = self.lock();
        let healed = inner.healed;
        let (id, row) = inner
            .rows
            .iter_mut()
            .find(|(id, row)| **id % PRODUCERS == node && row.sender.is_none())?;
        if *id >= TRANSACTIONS - TAIL && !healed {
            return Some(None);
        }
        row.sender = Some((node, incarnation));
        Some(Some(*id))
    }

    /// Whether every transaction was sent, but the tail unless the faults are over.
    fn all_sent(&self) -> bool {
        let inner = self.lock();
        let due = |id: u64| id < TRANSACTIONS - TAIL || inner.healed;
        inner.rows.iter().all(|(id, row)| !due(*id) || row.sender.is_some())
    }

    /// The faults are over: the tail goes out.
    fn heal(&self) {
        self.lock().healed = true;
    }

    /// Decides transaction `id` unless it was decided already; its fate either way.
    fn decide(&self, id: u64, commit: bool) -> bool {
        let mut inner = self.lock();
        let row = inner.rows.get_mut(&id).expect("a transaction of the ledger");
        match row.decided {
            Some(decided) => decided,
            None => {
                row.decided = Some(commit);
                self.history.record(Event::Decided { id, commit });
                commit
            }
        }
    }

    fn row(&self, id: u64) -> Row {
        self.lock().rows[&id]
    }

    /// Whether the process that sent `row` was replaced by a newer one.
    fn sender_died(&self, row: &Row) -> bool {
        let inner = self.lock();
        row.sender.is_some_and(|(node, sent_by)| inner.incarnations.get(&node) != Some(&sent_by))
    }
}

fn state(commit: bool) -> LocalTransactionState {
    match commit {
        true => LocalTransactionState::Commit,
        false => LocalTransactionState::Rollback,
    }
}

/// The application of one producer process.
struct App {
    ledger: Ledger,
    /// Answers `Unknown` for every open transaction.
    hesitant: bool,
}

impl TransactionListener for App {
    fn execute(&self, message: &Message, _sent: &SendResult) -> LocalTransactionState {
        let id = workload::body_id(&message.body).expect("a simulated body carries its id");
        match self.ledger.row(id).plan {
            Plan::Decide { commit } => state(self.ledger.decide(id, commit)),
            Plan::Silent { commit } => {
                self.ledger.decide(id, commit);
                LocalTransactionState::Unknown
            }
            Plan::Open { .. } => LocalTransactionState::Unknown,
        }
    }

    fn check(&self, message: &ReceivedMessage) -> LocalTransactionState {
        let id = workload::body_id(&message.body).expect("a simulated body carries its id");
        let times = message.properties.get(CHECK_TIMES_PROPERTY).and_then(|t| t.parse().ok());
        let times = times.unwrap_or(0);
        let stored_wall = message.store_timestamp;
        self.ledger.history.record(Event::Checked { id, times, stored_wall });
        let row = self.ledger.row(id);
        if let Some(commit) = row.decided {
            return state(commit);
        }
        match row.plan {
            Plan::Open { after, commit } if !self.hesitant && times >= after => {
                state(self.ledger.decide(id, commit))
            }
            Plan::Open { .. } => LocalTransactionState::Unknown,
            // Its local transaction never ran: the process died first.
            _ if self.ledger.sender_died(&row) => state(self.ledger.decide(id, false)),
            // Its local transaction is still to run.
            _ => LocalTransactionState::Unknown,
        }
    }
}

/// One process of producer `node`: sends the transactions it has not sent yet, then stays to
/// answer checks.
async fn producer(node: u64, ledger: Ledger) {
    let incarnation = ledger.start(node);
    let hesitant = thread_rng().gen_ratio(1, 3);
    report::note(format!("producer-{node} starts (process {incarnation}, hesitant: {hesitant})"));
    let config = ProducerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        group: PRODUCER_GROUP.into(),
        retries: 0,
        refresh_interval: Duration::from_secs(1),
        topics: vec![TOPIC.into()],
        ..ProducerConfig::default()
    };
    let app = App { ledger: ledger.clone(), hesitant };
    let producer = TransactionProducer::start(config, app).expect("a producer starts");
    while let Some(next) = ledger.next(node, incarnation) {
        let pause = match next {
            Some(id) if send(&producer, &ledger, id).await => thread_rng().gen_range(5..40),
            _ => 200,
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    std::future::pending::<()>().await;
}

/// Sends transaction `id` and records what became of its half message. One that may not be
/// stored safely is rolled back (RocketMQ's client rolls back a half message it did not see
/// stored; the application drops a transaction whose send failed). Whether it was
/// acknowledged.
async fn send(producer: &TransactionProducer, ledger: &Ledger, id: u64) -> bool {
    let history = &ledger.history;
    let body = workload::body(id, BODY_BYTES);
    let hash = body_hash(&body);
    let due_wall = timer_delay(id).map(|delay| wall_ms() + delay);
    history.record(Event::Sent { id, mode: SendMode::Sync, body_hash: hash, due_wall });
    let mut message = Message::new(TOPIC, body);
    if let Some(due) = due_wall {
        message = message.with_delivery_time(UNIX_EPOCH + Duration::from_millis(due as u64));
    }
    match producer.send(&message).await {
        Ok(sent) if sent.sent.status == SendStatus::Ok => {
            let place = Place {
                broker: sent.sent.queue.broker_name.clone(),
                topic: HALF_TOPIC.into(),
                queue: 0,
                offset: sent.sent.queue_offset,
            };
            let stored_at = workload::stored_at(&sent.sent.offset_msg_id);
            history.record(Event::Acked { id, place: Some(place), stored_at });
            true
        }
        _ => {
            history.record(Event::InDoubt { id });
            ledger.decide(id, false);
            false
        }
    }
}

/// How long after its send transaction `id` asks to be delivered (`TIMER_DELIVER_MS`), if
/// it asks: every fourth, 0.5 to 6 s, so that some are committed after their time and most
/// before. Drawn from the id, so that the seed's other draws stay as they were.
fn timer_delay(id: u64) -> Option<i64> {
    (id % 4 == 1).then(|| 500 + (id * 7_919 % 5_500) as i64)
}

/// Reads `TRANS_CHECK_MAX_TIME_TOPIC` from its start, recording each discarded half message
/// as delivered to [`DISCARDS`], with its check count in `counts`.
async fn read_discards(history: History, counts: Arc<Mutex<Vec<(u64, i32)>>>) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let mut offset = 0;
    loop {
        let hold = Duration::from_millis(300);
        let pulled =
            workload::pull(&client, BROKER, DISCARD_GROUP, CHECK_MAX_TIME_TOPIC, 0, offset, hold);
        match pulled.await {
            Ok(pulled) if pulled.code == response::SUCCESS => {
                for message in &pulled.messages {
                    let times = transaction::check_times(&message.properties);
                    counts.lock().unwrap().push((message.id, times));
                    history.record(Event::Delivered {
                        consumer: DISCARDS.into(),
                        place: discard_place(message.queue_offset),
                        id: message.id,
                        body_hash: message.body_crc,
                        stored_wall: message.store_timestamp,
                    });
                }
                offset = pulled.next_begin_offset;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn discard_place(offset: i64) -> Place {
    Place { broker: "broker-a".into(), topic: CHECK_MAX_TIME_TOPIC.into(), queue: 0, offset }
}

/// Each producer loses power once or twice while the transactions are sent, for 0.3-3 s.
fn producer_strikes<'a>(producers: &'a [madsim::runtime::NodeHandle]) -> Vec<(u64, Strike<'a>)> {
    let mut rng = thread_rng();
    let mut strikes = Vec::new();
    for (n, node) in producers.iter().enumerate() {
        for _ in 0..rng.gen_range(1..=2) {
            let after = rng.gen_range(5..TRANSACTIONS);
            let down_for = Duration::from_millis(rng.gen_range(300..3_000));
            let name = format!("producer-{n}");
            report::note(format!("{name} loses power after step {after} for {down_for:?}"));
            strikes.push((after, Strike::Client { node, name, down_for }));
        }
    }
    strikes
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    // A quarter of the broker's faults fall after the last send, among the checks alone.
    let schedule = FaultPlan::swarm().schedule(TRANSACTIONS * 5 / 4);
    report::note(format!("fault schedule of broker-a (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let ledger = Ledger::new(&history);
    let cluster = Cluster::builder().tune(tune).disk_faults(schedule.disk).build(&history);
    let consumer = crate::clients::push_config(CONSUMER_GROUP, TOPIC);
    let consuming = crate::clients::push_consume(CONSUMER.into(), history.clone(), consumer);
    cluster.client(CONSUMER).spawn(consuming);
    let counts: Arc<Mutex<Vec<(u64, i32)>>> = Arc::default();
    let discards = (history.clone(), counts.clone());
    cluster.client(DISCARDS).spawn(read_discards(discards.0, discards.1));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|node| {
            let ledger = ledger.clone();
            cluster.process(&format!("producer-{node}"), move || producer(node, ledger.clone()))
        })
        .collect();
    let mut strikes = producer_strikes(&producers);
    strikes.extend(schedule.faults.iter().map(|f| (f.after, Strike::Broker(0, f.clone()))));
    cluster.play(strikes, || history.sends_settled(), || ledger.all_sent()).await;
    cluster.heal();
    let healed_wall = wall_ms();
    ledger.heal();
    while !ledger.all_sent() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(&history, &counts).await;
    cluster.check_invariants();
    let copies = copies(&cluster).await;
    let entries = history.entries();
    let counts = counts.lock().unwrap().clone();
    let verdicts = [
        checkers::never_truncated(&entries),
        checkers::one_message_per_place(&entries),
        checkers::intact(&entries),
        delivered_only_if_committed(&entries),
        checkers::never_early(&real_topic(&entries)),
        committed_once(&entries),
        every_transaction_ends(&entries, &counts),
        discarded_after_max(&counts),
        counts_survive(&entries, &schedule.disk),
        checks_answered(&entries, &copies, healed_wall),
        one_copy_per_count(&copies, &schedule.disk),
    ];
    checkers::conclude(&verdicts);
    cluster.stop().await;
    let summary = history.summary();
    format!("{summary}; {} transactions discarded", counts.len())
}

/// Waits until every transaction ended, or for [`LIVENESS`] at most.
async fn settle(history: &History, counts: &Mutex<Vec<(u64, i32)>>) {
    let deadline = tokio::time::Instant::now() + LIVENESS;
    while tokio::time::Instant::now() < deadline {
        let discarded = counts.lock().unwrap().clone();
        if unended(&history.entries(), &discarded).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The history without the discards read from `TRANS_CHECK_MAX_TIME_TOPIC`: a discarded
/// half message may carry a time it never reached.
fn real_topic(entries: &[Entry]) -> Vec<Entry> {
    let discard =
        |e: &Entry| matches!(&e.event, Event::Delivered { consumer, .. } if consumer == DISCARDS);
    entries.iter().filter(|e| !discard(e)).cloned().collect()
}

/// Deliveries of the real topic: (id, place, entry).
fn deliveries(entries: &[Entry]) -> impl Iterator<Item = (u64, &Place, &Entry)> {
    entries.iter().filter_map(|e| match &e.event {
        Event::Delivered { consumer, id, place, .. } if consumer == CONSUMER => {
            Some((*id, place, e))
        }
        _ => None,
    })
}

/// A message is delivered only after its transaction was decided to commit.
fn delivered_only_if_committed(entries: &[Entry]) -> Verdict {
    let mut committed = BTreeSet::new();
    let mut rolled_back = BTreeSet::new();
    let mut delivered = 0;
    for entry in entries {
        match &entry.event {
            Event::Decided { id, commit: true } => {
                committed.insert(*id);
            }
            Event::Decided { id, commit: false } => {
                rolled_back.insert(*id);
            }
            Event::Delivered { consumer, id, place, .. } if consumer == CONSUMER => {
                if !committed.contains(id) {
                    let fate = match rolled_back.contains(id) {
                        true => "rolled back",
                        false => "not decided yet",
                    };
                    let why =
                        format!("message {id} delivered from {place:?}, its transaction {fate}");
                    return Verdict::new("delivered_only_if_committed", Err(why));
                }
                delivered += 1;
            }
            _ => {}
        }
    }
    let found = format!(
        "{delivered} deliveries of {} committed; {} rolled back",
        committed.len(),
        rolled_back.len()
    );
    Verdict::new("delivered_only_if_committed", Ok(found))
}

/// No committed message is stored in the real topic twice.
fn committed_once(entries: &[Entry]) -> Verdict {
    let mut places: BTreeMap<u64, BTreeSet<&Place>> = BTreeMap::new();
    for (id, place, _) in deliveries(entries) {
        places.entry(id).or_default().insert(place);
    }
    match places.iter().find(|(_, at)| at.len() > 1) {
        Some((id, at)) => {
            let why = format!("message {id} committed to {} places: {at:?}", at.len());
            Verdict::new("committed_once", Err(why))
        }
        None => {
            Verdict::new("committed_once", Ok(format!("{} messages, one place each", places.len())))
        }
    }
}

/// The transactions that have not ended: a committed one not delivered nor discarded, and
/// one whose half message was acknowledged that was never decided nor discarded.
fn unended(entries: &[Entry], discarded: &[(u64, i32)]) -> Vec<u64> {
    let discarded: BTreeSet<u64> = discarded.iter().map(|(id, _)| *id).collect();
    let delivered: BTreeSet<u64> = deliveries(entries).map(|(id, _, _)| id).collect();
    let mut fate: BTreeMap<u64, Option<bool>> = BTreeMap::new();
    for entry in entries {
        match entry.event {
            Event::Acked { id, .. } => {
                fate.entry(id).or_insert(None);
            }
            Event::Decided { id, commit } => {
                fate.insert(id, Some(commit));
            }
            _ => {}
        }
    }
    fate.into_iter()
        .filter(|(id, commit)| match commit {
            Some(false) => false,
            Some(true) => !delivered.contains(id) && !discarded.contains(id),
            None => !discarded.contains(id),
        })
        .map(|(id, _)| id)
        .collect()
}

/// Once the faults are over every transaction ends: delivered, rolled back or discarded.
fn every_transaction_ends(entries: &[Entry], discarded: &[(u64, i32)]) -> Verdict {
    let open = unended(entries, discarded);
    let committed: BTreeSet<u64> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Decided { id, commit: true } => Some(id),
            _ => None,
        })
        .collect();
    let delivered: BTreeSet<u64> = deliveries(entries).map(|(id, _, _)| id).collect();
    let given_up = discarded
        .iter()
        .filter(|(id, _)| committed.contains(id) && !delivered.contains(id))
        .count();
    let outcome = match open.is_empty() {
        true => Ok(format!(
            "{} discarded, {given_up} of them committed but never delivered",
            discarded.len()
        )),
        false => Err(format!(
            "transactions {open:?} neither delivered, rolled back nor discarded {LIVENESS:?} \
             after the faults"
        )),
    };
    Verdict::new("every_transaction_ends", outcome)
}

/// A discarded half message was checked `transactionCheckMax` times.
fn discarded_after_max(discarded: &[(u64, i32)]) -> Verdict {
    match discarded.iter().find(|(_, times)| *times != CHECK_MAX) {
        Some((id, times)) => {
            let why = format!("transaction {id} discarded after {times} checks, not {CHECK_MAX}");
            Verdict::new("discarded_after_max", Err(why))
        }
        None => Verdict::new("discarded_after_max", Ok(format!("{} discards", discarded.len()))),
    }
}

/// No check carries a count above `transactionCheckMax` or of 0; ordered by when the broker
/// made them, a transaction's checks never carry a count below an earlier one, while the
/// disk does not fail writes.
fn counts_survive(entries: &[Entry], disk: &petrel_storage::disk::SimDiskFaults) -> Verdict {
    let mut checks: BTreeMap<u64, Vec<(i64, i32)>> = BTreeMap::new();
    for entry in entries {
        if let Event::Checked { id, times, stored_wall } = entry.event {
            if !(1..=CHECK_MAX).contains(&times) {
                let why = format!("transaction {id} checked with count {times}");
                return Verdict::new("counts_survive", Err(why));
            }
            checks.entry(id).or_default().push((stored_wall, times));
        }
    }
    let total: usize = checks.values().map(Vec::len).sum();
    if disk.fails_writes() {
        let why =
            format!("{total} checks; counts across crashes not promised: the disk fails writes");
        return Verdict::new("counts_survive", Ok(why));
    }
    for (id, checks) in &mut checks {
        checks.sort_unstable();
        let mut highest = 0;
        for &(stored_wall, times) in checks.iter() {
            if times < highest {
                let why = format!(
                    "transaction {id} checked with count {times} (copy stored at {stored_wall} \
                     ms) after a check with count {highest}"
                );
                return Verdict::new("counts_survive", Err(why));
            }
            highest = highest.max(times);
        }
    }
    Verdict::new("counts_survive", Ok(format!("{total} checks of {} transactions", checks.len())))
}

/// The check copies in the broker's half queue, read once it is up.
async fn copies(cluster: &Cluster) -> Vec<(u64, i32, i64)> {
    loop {
        if let Some(broker) = cluster.brokers[0].running() {
            return crate::stores::check_copies(broker.store());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Once the faults have been over for [`QUIET`], every check the broker makes reaches a
/// producer: each copy in the half queue stored since then was answered.
fn checks_answered(entries: &[Entry], copies: &[(u64, i32, i64)], healed_wall: i64) -> Verdict {
    let answered: BTreeSet<(u64, i32, i64)> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Checked { id, times, stored_wall } => Some((id, times, stored_wall)),
            _ => None,
        })
        .collect();
    let since = healed_wall + QUIET.as_millis() as i64;
    let due: Vec<_> = copies.iter().filter(|(_, _, stored)| *stored >= since).collect();
    match due.iter().find(|copy| !answered.contains(copy)) {
        Some((id, times, stored)) => {
            let why = format!(
                "check {times} of transaction {id}, copied at {stored} ms ({} ms after the \
                 faults' end), reached no producer",
                stored - healed_wall
            );
            Verdict::new("checks_answered", Err(why))
        }
        None => Verdict::new(
            "checks_answered",
            Ok(format!(
                "{} copies, {} made {QUIET:?} after the faults: all answered",
                copies.len(),
                due.len()
            )),
        ),
    }
}

/// A transaction lives in one copy at a time: no two copies of it in the broker's final half
/// queue carry the same check count, while the disk does not fail writes (a copy whose write
/// failed is made again).
fn one_copy_per_count(
    copies: &[(u64, i32, i64)],
    disk: &petrel_storage::disk::SimDiskFaults,
) -> Verdict {
    if disk.fails_writes() {
        let why = format!("{} copies; not promised: the disk fails writes", copies.len());
        return Verdict::new("one_copy_per_count", Ok(why));
    }
    let mut seen: BTreeMap<(u64, i32), i64> = BTreeMap::new();
    for &(id, times, stored) in copies {
        if let Some(before) = seen.insert((id, times), stored) {
            let why = format!(
                "transaction {id} copied twice with check count {times}, at {before} and \
                 {stored} ms"
            );
            return Verdict::new("one_copy_per_count", Err(why));
        }
    }
    Verdict::new("one_copy_per_count", Ok(format!("{} copies, one per count", copies.len())))
}
