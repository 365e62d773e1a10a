//! Automatic failover under simulation: three controllers (10.0.3.1-3, each on its own disk),
//! a NameServer, and one broker group of three brokers in controller mode (nodes `broker-a`,
//! `broker-b`, `broker-c` at 10.0.1.1-3, all of group `broker-a`, SYNC_FLUSH,
//! `allAckInSyncStateSet`), with a producer sending through the Rust SDK, which finds the
//! master through the NameServer, and a push consumer of the SDK reading the topic
//! throughout. The faults come from a swarm [`FaultPlan`] with more and
//! longer outages than the default, each striking a broker, a controller, the master of the
//! moment, the controller leader of the moment, or both of those together (a partition then
//! cuts the two off from every other node, as one side): power losses (the disk keeps, drops or tears
//! each unsynced write), partitions (half of a controller's cut it off from the other
//! controllers only), one-way cuts, latency, disk faults.
//!
//! The promises checked, once the faults are over and the group has converged:
//! - at most one broker wrote in each epoch: every acknowledged record, found in the final
//!   log, lies in an epoch whose acknowledgements all came from one broker (`one writer per
//!   epoch`);
//! - nothing acknowledged is lost, a deposed master's acknowledgements included: each
//!   acknowledged message is in the final master's log at the offset its acknowledgement named,
//!   and in its queue at the offset named (`acked in place`, `durable (replica-n)`, `one
//!   message per place`, `intact`);
//! - a confirmed offset is never truncated: every record a broker made visible to consumers
//!   (dispatched, so below its confirm offset), on any of its starts, is in the final log at
//!   the same offset (`confirmed in place`);
//! - the replicas converge byte for byte (`logs match`), with the same epochs;
//! - every epoch list a broker answered an operator with (GET_BROKER_EPOCH_CACHE, asked of a
//!   broker at random all along) is in order, and each epoch in it begins where it begins in
//!   every other answer and in the final log (`epoch caches agree`);
//! - the controllers' logs agree and every master after the first came from the sync-state
//!   set of its time (`elected from the set`, read from their disks);
//! - within [`SETTLE`] of the faults' end a master takes a send (`a master serves`);
//! - what the consumer read during the faults is what the final logs hold at those places
//!   (`one_message_per_place`, `intact`), and it reads every acknowledged message within
//!   [`LIVENESS`] of the faults' end (`live(consumer)`).
//!
//! Run one seed: `cargo sim --seed 7 --scenario failover`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use petrel::broker::config::{BrokerRole, ControllerModeConfig};
use petrel::broker::{Broker, BrokerConfig};
use petrel_core::controller::body::EpochEntryCache;
use petrel_core::ha::epoch::EpochCache;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::Store;

use crate::checkers::{self, Verdict};
use crate::cluster::Cluster;
use crate::controllers::{ControllerNode, CONTROLLERS};
use crate::faults::{Fault, FaultKind, FaultPlan, Schedule};
use crate::history::{Entry, Event, History};
use crate::{clients, report, stores, workload};

const GROUP: &str = "broker-a";
const TOPIC: &str = "SimFailover";
const QUEUES: i32 = 4;
const MESSAGES: u64 = 300;
const BODY_BYTES: usize = 200;
/// How long after the faults the group must have converged.
const CONVERGENCE: Duration = Duration::from_secs(120);
/// How long after the faults a master must take a send.
const SETTLE: Duration = Duration::from_secs(30);
/// How long after the faults the consumer must have read every acknowledged message.
const LIVENESS: Duration = Duration::from_secs(60);

/// A push consumer of the topic, from its first message, recording what it reads.
async fn consume(history: History) {
    let config = clients::push_config("SimFailoverGroup", TOPIC);
    clients::push_consume("consumer".into(), history, config).await;
}

fn tune(_i: usize, config: &mut BrokerConfig) {
    // One file holds the whole run's log (see the module documentation).
    crate::cluster::replicated_group(config, GROUP);
    config.register_period_ms = 2_000;
    config.default_topic_queue_nums = QUEUES;
    config.controller = Some(ControllerModeConfig {
        controller_addrs: CONTROLLERS.iter().map(|a| (*a).to_owned()).collect(),
        all_ack: true,
        not_catchup_ms: 6_000,
        heartbeat_timeout_ms: 3_000,
        heartbeat_interval_ms: 500,
        sync_metadata_ms: 1_000,
        ..ControllerModeConfig::default()
    });
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    run_with(false).await
}

/// The same run where every other message is a timer message due 0.5-15 s after its send
/// (`timer_failover`): the slaves' wheels follow the master's, and a promoted slave delivers
/// what its old master had not, once. Checked besides: `never_early` and `stored_once` (no
/// message in the real topic at two places, in any replica or as the consumer read it).
pub async fn run_timers() -> String {
    run_with(true).await
}

/// How long after its send message `id` asks to be delivered, in the timer variant.
fn timer_delay(id: u64) -> Option<i64> {
    id.is_multiple_of(2).then(|| 500 + (id * 7_919 % 14_500) as i64)
}

async fn run_with(timers: bool) -> String {
    let handle = Handle::current();
    let schedule = FaultPlan::failover().schedule(MESSAGES);
    let targets: Vec<usize> =
        schedule.faults.iter().map(|_| thread_rng().gen_range(0..9)).collect();
    report::note(format!("fault schedule (a step is a send):\n{schedule}"));
    report::note(format!(
        "targets, in order (0-2 brokers, 3-5 controllers, 6 the master of the moment, 7 the \
         controller leader of the moment, 8 both): {targets:?}"
    ));
    schedule.apply_latency();
    let controllers: Vec<ControllerNode> =
        (0..3).map(|i| ControllerNode::spawn(&handle, i, schedule.disk)).collect();
    let history = History::default();
    let cluster =
        Cluster::builder().brokers(3).tune_each(tune).disk_faults(schedule.disk).build(&history);
    let consuming = history.clone();
    let _consumer = cluster.process("consumer", move || consume(consuming.clone()));
    let done = Arc::new(AtomicBool::new(false));
    let (producing, finished) = (history.clone(), done.clone());
    let produced = cluster.client("producer").spawn(async move {
        let delay = move |id| if timers { timer_delay(id) } else { None };
        let ids = 0..MESSAGES;
        let acked_by =
            clients::produce_timed(producing, TOPIC, ids, BODY_BYTES, 0..20, delay).await;
        finished.store(true, Ordering::Release);
        acked_by
    });
    let stop_asking = Arc::new(AtomicBool::new(false));
    let asking = ask_epochs(cluster.broker_addrs(), stop_asking.clone());
    let asked = cluster.client("operator").spawn(asking);
    // Faults begin once a master took a send: before, there is nothing to fail over.
    while !history.any_acked() && !done.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    play(&handle, &cluster, &controllers, &schedule, &targets, &history, &done).await;
    for controller in &controllers {
        controller.disk.set_faults(Default::default());
    }
    cluster.heal();
    let serves = a_master_serves(&cluster).await;
    let acked_by = produced.await.unwrap();
    history.settle(Some("consumer"), LIVENESS).await;
    // A send held back by a cut can still reach the master and grow its log.
    schedule.held_back_delivered().await;
    let stores = converged(&cluster).await;
    cluster.check_invariants();
    stop_asking.store(true, Ordering::Release);
    let epoch_answers = asked.await.unwrap();
    let mut read = history.entries();
    for (i, store) in stores.iter().enumerate() {
        read.extend(stores::read_all(store, &format!("replica-{i}"), GROUP, TOPIC, QUEUES));
    }
    let mut verdicts = vec![
        serves,
        one_writer_per_epoch(&stores[0], &history.entries(), &acked_by),
        acked_in_place(&stores[0], &history.entries()),
        confirmed_in_place(&stores[0], &history.entries()),
        stores::logs_match(&stores),
        epoch_caches_agree(&epoch_answers, &stores[0].epoch_cache()),
        super::controller::elected_from_the_set(&controllers),
        checkers::one_message_per_place(&read),
        checkers::intact(&read),
    ];
    verdicts.extend((0..3).map(|i| checkers::durable(&read, Some(&format!("replica-{i}")))));
    if timers {
        verdicts.extend([checkers::never_early(&read), checkers::stored_once(&read)]);
    }
    verdicts.push(checkers::live(&history.entries(), Some("consumer"), LIVENESS));
    checkers::conclude(&verdicts);
    let epochs = stores[0].epochs().len();
    let crashes: u64 = cluster.brokers.iter().map(|b| b.disk.stats().crashes).sum::<u64>()
        + controllers.iter().map(|c| c.disk.stats().crashes).sum::<u64>();
    drop(stores);
    for controller in &controllers {
        handle.kill(controller.node.id());
    }
    cluster.stop().await;
    format!("{}; {epochs} epochs in the final log; {crashes} power losses", history.summary())
}

/// Plays each fault once the producer has taken its step, on its target: a broker, a
/// controller, the master of the moment or the controller leader of the moment.
async fn play(
    handle: &Handle,
    cluster: &Cluster,
    controllers: &[ControllerNode],
    schedule: &Schedule,
    targets: &[usize],
    history: &History,
    done: &AtomicBool,
) {
    for (fault, &target) in schedule.faults.iter().zip(targets) {
        while history.sends_settled() < fault.after && !done.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_micros(thread_rng().gen_range(0..3_000))).await;
        if target == 8 && fault.kind == FaultKind::Partition {
            isolate_together(cluster, controllers, fault).await;
            continue;
        }
        let target = match target {
            8 => master(cluster).unwrap_or(0),
            6 => master(cluster).unwrap_or(0),
            7 => controllers.iter().position(|c| c.leads.load(Ordering::Acquire)).unwrap_or(0) + 3,
            other => other,
        };
        if target < 3 {
            cluster.strike(target, fault).await;
            continue;
        }
        let peers: Vec<_> = (controllers.iter().enumerate())
            .filter(|(i, _)| *i != target - 3)
            .map(|(_, c)| c.node.id())
            .collect();
        controllers[target - 3].strike(handle, fault, &peers).await;
    }
}

/// The master of the moment and the controller leader of the moment, cut off together from
/// every other node for the fault's length: the leader keeps the master's heartbeats but
/// loses its quorum, and the others elect a new leader, which no longer hears the master.
async fn isolate_together(cluster: &Cluster, controllers: &[ControllerNode], fault: &Fault) {
    let mut side = vec![cluster.brokers[master(cluster).unwrap_or(0)].node.id()];
    side.extend(controllers.iter().find(|c| c.leads.load(Ordering::Acquire)).map(|c| c.node.id()));
    report::note(format!("{side:?} cut off together"));
    let others: Vec<_> = (cluster.nodes().into_iter())
        .chain(controllers.iter().map(|c| c.node.id()))
        .filter(|n| !side.contains(n))
        .collect();
    let net = NetSim::current();
    for (a, b) in side.iter().flat_map(|a| others.iter().map(move |b| (*a, *b))) {
        net.clog_link(a, b);
        net.clog_link(b, a);
    }
    tokio::time::sleep(fault.down_for).await;
    for (a, b) in side.iter().flat_map(|a| others.iter().map(move |b| (*a, *b))) {
        net.unclog_link(a, b);
        net.unclog_link(b, a);
    }
}

/// The broker that is master now, by its own account (0-2).
fn master(cluster: &Cluster) -> Option<usize> {
    let is_master = |b: &Arc<Broker>| b.role() == BrokerRole::SyncMaster;
    cluster.brokers.iter().position(|b| b.running().is_some_and(|r| is_master(&r)))
}

/// Within [`SETTLE`] of the faults' end some master acknowledges a send.
async fn a_master_serves(cluster: &Cluster) -> Verdict {
    let healed = tokio::time::Instant::now();
    let client = cluster.client("prober");
    let addrs = cluster.broker_addrs();
    let probe = async move {
        let raw = petrel_net::transport::RemotingClient::new(Default::default(), None);
        loop {
            for addr in &addrs {
                let sent = workload::send(&raw, addr, "SimProbe", 0, u64::MAX, 10).await;
                if matches!(sent, workload::SendOutcome::Acked { .. }) {
                    return addr.clone();
                }
            }
            if healed.elapsed() > SETTLE {
                return String::new();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let addr = client.spawn(probe).await.unwrap();
    let outcome = match addr.is_empty() {
        false => Ok(format!("{addr} took a send {:?} after the faults", healed.elapsed())),
        true => Err(format!("no master took a send within {SETTLE:?} of the faults' end")),
    };
    Verdict::new("a master serves", outcome)
}

/// Waits until one broker is master, all three are up, and each holds and has dispatched the
/// master's whole durable log with its epochs; returns the stores, the master's first.
async fn converged(cluster: &Cluster) -> Vec<Arc<Store>> {
    let deadline = tokio::time::Instant::now() + CONVERGENCE;
    loop {
        let running: Vec<Option<Arc<Broker>>> =
            cluster.brokers.iter().map(|b| b.running()).collect();
        let masters: Vec<usize> = (0..3)
            .filter(|&i| running[i].as_ref().is_some_and(|b| b.role() == BrokerRole::SyncMaster))
            .collect();
        if let ([m], true) = (&masters[..], running.iter().all(Option::is_some)) {
            let stores: Vec<Arc<Store>> =
                running.iter().map(|b| b.as_ref().unwrap().store().clone()).collect();
            let master = &stores[*m];
            let end = master.flushed_offset();
            let epochs = master.epochs();
            let caught_up = |s: &Store| {
                s.written_offset() == end && s.dispatched_offset() == end && s.epochs() == epochs
            };
            if end == master.written_offset() && stores.iter().all(|s| caught_up(s)) {
                let mut ordered = vec![master.clone()];
                ordered.extend((0..3).filter(|i| i != m).map(|i| stores[i].clone()));
                return ordered;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group did not converge within {CONVERGENCE:?} of the faults' end: masters \
             {masters:?}, ends {:?}",
            running
                .iter()
                .map(|b| b.as_ref().map(|b| (b.store().written_offset(), b.store().epochs().len())))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every acknowledged message is in the final log where its acknowledgement said.
fn acked_in_place(master: &Store, history: &[Entry]) -> Verdict {
    let mut checked = 0;
    for entry in history {
        let Event::Acked { id, stored_at: Some(at), .. } = &entry.event else { continue };
        let found = stores::id_at(master, *at);
        if found != Some(*id) {
            let why =
                format!("message {id} acknowledged at {at}; the final log holds {found:?} there");
            return Verdict::new("acked in place", Err(why));
        }
        checked += 1;
    }
    Verdict::new("acked in place", Ok(format!("{checked} acknowledged records in place")))
}

/// A confirmed offset is never truncated: every record any broker made visible to consumers
/// is in the final log where that broker had it.
fn confirmed_in_place(master: &Store, history: &[Entry]) -> Verdict {
    let mut checked = BTreeSet::new();
    for entry in history {
        let Event::Confirmed { node, records } = &entry.event else { continue };
        for &(at, id) in records {
            let found = stores::id_at(master, at);
            if found != Some(id) {
                let why = format!(
                    "{node} confirmed message {id} at {at} (at {:?}); the final log holds \
                     {found:?} there",
                    entry.at
                );
                return Verdict::new("confirmed in place", Err(why));
            }
            checked.insert(at);
        }
    }
    let held = format!("{} confirmed records in place", checked.len());
    Verdict::new("confirmed in place", Ok(held))
}

/// Every epoch's acknowledged records were acknowledged by one broker.
fn one_writer_per_epoch(
    master: &Store,
    history: &[Entry],
    acked_by: &BTreeMap<u64, String>,
) -> Verdict {
    let epochs = master.epoch_cache();
    let end = master.written_offset() as i64;
    let mut writers: BTreeMap<i32, BTreeSet<&str>> = BTreeMap::new();
    for entry in history {
        let Event::Acked { id, stored_at: Some(at), .. } = &entry.event else { continue };
        let (Some(epoch), Some(by)) = (epochs.epoch_of(*at as i64, end), acked_by.get(id)) else {
            continue;
        };
        writers.entry(epoch.epoch).or_default().insert(by.as_str());
    }
    let outcome = match writers.iter().find(|(_, by)| by.len() > 1) {
        Some((epoch, by)) => Err(format!("epoch {epoch} was acknowledged by {by:?}")),
        None => Ok(format!("{} epochs acknowledged in, each by one broker", writers.len())),
    };
    Verdict::new("one writer per epoch", outcome)
}

/// Asks a broker drawn at random for its epochs (GET_BROKER_EPOCH_CACHE) every 100-500 ms,
/// until `stop`: every answer. A broker with no id yet refuses (SYSTEM_ERROR); any other
/// refusal fails the run.
async fn ask_epochs(brokers: Vec<String>, stop: Arc<AtomicBool>) -> Vec<EpochEntryCache> {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let mut answers = Vec::new();
    while !stop.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(100..500))).await;
        let broker = &brokers[thread_rng().gen_range(0..brokers.len())];
        let ask = RemotingCommand::request(request::GET_BROKER_EPOCH_CACHE);
        let Ok(answer) = client.invoke(broker, ask, Duration::from_secs(3)).await else {
            continue;
        };
        match answer.code {
            response::SUCCESS => answers.push(from_json(&answer.body).expect("an epoch cache")),
            response::SYSTEM_ERROR => {}
            code => {
                panic!("GET_BROKER_EPOCH_CACHE of {broker} answered {code}: {:?}", answer.remark)
            }
        }
    }
    client.shutdown();
    answers
}

/// Each answered epoch list is in order (epochs rising, starts not falling, none past the
/// log's end), and an epoch begins at one offset in every answer and in the final log.
fn epoch_caches_agree(answers: &[EpochEntryCache], last: &EpochCache) -> Verdict {
    let mut starts: BTreeMap<i32, (i64, String)> =
        (last.entries().iter()).map(|e| (e.epoch, (e.start, "the final log".to_owned()))).collect();
    for answer in answers {
        let list = &answer.epoch_list;
        let who = format!(
            "broker {} (answer {list:?}, max offset {})",
            answer.broker_id, answer.max_offset
        );
        let in_order = list
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset);
        if !in_order || list.last().is_some_and(|last| last.start_offset > answer.max_offset) {
            return Verdict::new("epoch caches agree", Err(format!("{who} is out of order")));
        }
        for entry in list {
            let (start, by) =
                starts.entry(entry.epoch).or_insert_with(|| (entry.start_offset, who.clone()));
            if *start != entry.start_offset {
                let why = format!("epoch {} begins at {start} for {by}, but {who}", entry.epoch);
                return Verdict::new("epoch caches agree", Err(why));
            }
        }
    }
    let held =
        format!("{} answers, {} epochs, each beginning at one offset", answers.len(), starts.len());
    Verdict::new("epoch caches agree", Ok(held))
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_core::controller::body::EpochEntryBody;
    use petrel_core::ha::epoch::EpochEntry;

    fn answer(max_offset: i64, epochs: &[(i32, i64)]) -> EpochEntryCache {
        let epoch_list = (epochs.iter())
            .map(|&(epoch, start_offset)| EpochEntryBody { end_offset: 0, epoch, start_offset })
            .collect();
        EpochEntryCache { epoch_list, max_offset, ..EpochEntryCache::default() }
    }

    #[test]
    fn an_epoch_answered_with_another_start_is_caught() {
        let entries = vec![EpochEntry { epoch: 1, start: 0 }, EpochEntry { epoch: 3, start: 900 }];
        let last = EpochCache::from_entries(entries).unwrap();
        let fine = [answer(500, &[(1, 0), (2, 400)]), answer(950, &[(1, 0), (3, 900)])];
        assert!(epoch_caches_agree(&fine, &last).outcome.is_ok());
        let moved = [answer(500, &[(1, 0), (2, 400)]), answer(950, &[(1, 0), (2, 300)])];
        assert!(epoch_caches_agree(&moved, &last).outcome.is_err());
        let against_the_log = [answer(950, &[(1, 0), (3, 800)])];
        assert!(epoch_caches_agree(&against_the_log, &last).outcome.is_err());
        let out_of_order = [answer(950, &[(3, 900), (1, 0)])];
        assert!(epoch_caches_agree(&out_of_order, &last).outcome.is_err());
        let past_the_end = [answer(850, &[(1, 0), (3, 900)])];
        assert!(epoch_caches_agree(&past_the_end, &last).outcome.is_err());
    }
}
