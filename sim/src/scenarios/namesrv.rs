//! The NameServer under simulation: three brokers registering every 30 s, a client reading the
//! route. A clogged broker leaves the route after its expiry and comes back when healed; a
//! killed and restarted NameServer rebuilds its routes from the next registrations.
//!
//! Which broker is clogged, when each broker starts, and every network delay come from the
//! seed. Run one seed: `cargo sim --seed 7 --scenario namesrv`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{broker_names, read_route, RouteView, SimBroker, REGISTER_PERIOD};
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use petrel::namesrv::{self, Namesrv, NamesrvConfig};
use petrel_net::transport::{ClientConfig, RemotingClient};

const TOPIC: &str = "SimTopic";
const NAMESRV_ADDR: &str = "10.0.0.1:9876";
const BROKER_TIMEOUT: Duration = Duration::from_secs(120);
const SCAN_INTERVAL: Duration = Duration::from_secs(5);

/// The NameServer of the current incarnation, so the test can check its invariants.
type Slot = Arc<Mutex<Option<Arc<Namesrv>>>>;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("constant address")
}

fn expect_brokers(view: &RouteView, expected: &BTreeSet<String>, when: &str) {
    assert_eq!(view, &RouteView::Brokers(expected.clone()), "route {when}");
}

fn check(slot: &Slot) {
    if let Some(namesrv) = slot.lock().unwrap().as_ref() {
        namesrv.check_invariants();
    }
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let handle = Handle::current();
    let slot: Slot = Arc::default();
    let namesrv_node = spawn_namesrv(&handle, slot.clone());
    let names = broker_names(3);
    let broker_nodes = spawn_brokers(&handle, &names);
    let client_node = handle.create_node().name("client").ip(ip("10.0.2.1")).build();
    let all: BTreeSet<String> = names.iter().cloned().collect();
    let victim = thread_rng().gen_range(0..3usize);
    let victim_id = broker_nodes[victim].id();
    let mut survivors = all.clone();
    survivors.remove(&names[victim]);
    let scenario =
        client_node.spawn(clog_and_heal(slot.clone(), victim_id, all.clone(), survivors));
    scenario.await.expect("scenario ran to the end");

    // Kill the NameServer: it forgets everything, and learns it all again from registrations.
    handle.kill(namesrv_node.id());
    *slot.lock().unwrap() = None;
    handle.restart(namesrv_node.id());
    let after_restart = client_node.spawn(relearn(slot.clone(), all));
    after_restart.await.expect("restart scenario ran to the end");
    // End every node, so that their waiting tasks do not outlive the run (see `Cluster::stop`).
    for node in broker_nodes.iter().chain([&namesrv_node, &client_node]) {
        handle.kill(node.id());
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    format!("broker-{victim} clogged and healed; the NameServer restarted")
}

/// The NameServer node; `slot` holds its state while it runs, for the invariant checks.
fn spawn_namesrv(handle: &Handle, slot: Slot) -> madsim::runtime::NodeHandle {
    handle
        .create_node()
        .name("namesrv")
        .ip(ip("10.0.0.1"))
        .init(move || {
            let slot = slot.clone();
            async move {
                let mut config = NamesrvConfig::default();
                config.route.broker_timeout_ms = BROKER_TIMEOUT.as_millis() as u64;
                let running =
                    namesrv::start(config, crate::memory_disk()).await.expect("namesrv starts");
                *slot.lock().unwrap() = Some(running.state.clone());
                std::future::pending::<()>().await;
            }
        })
        .build()
}

/// One node per broker, each registering from a random moment in its first 5 s.
fn spawn_brokers(handle: &Handle, names: &[String]) -> Vec<madsim::runtime::NodeHandle> {
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let start_delay = Duration::from_millis(thread_rng().gen_range(0..5_000));
        let broker = SimBroker {
            cluster: "SimCluster".into(),
            name: name.clone(),
            addr: format!("10.0.1.{}:10911", i + 1),
            topics: vec![TOPIC.into(), "TBW102".into()],
        };
        let node = handle
            .create_node()
            .name(name.clone())
            .ip(ip(&format!("10.0.1.{}", i + 1)))
            .init(move || {
                let broker = broker.clone();
                async move {
                    tokio::time::sleep(start_delay).await;
                    broker.register_forever(NAMESRV_ADDR.into()).await;
                }
            })
            .build();
        nodes.push(node);
    }
    nodes
}

/// Clogs the victim: it stays routed until its timeout, then leaves; healed, its next
/// registration brings it back.
async fn clog_and_heal(
    slot: Slot,
    victim_id: madsim::task::NodeId,
    all: BTreeSet<String>,
    survivors: BTreeSet<String>,
) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let route = || read_route(&client, NAMESRV_ADDR, TOPIC);
    let net = NetSim::current();

    tokio::time::sleep(Duration::from_secs(10)).await;
    expect_brokers(&route().await, &all, "once every broker registered");
    check(&slot);

    net.clog_node(victim_id);
    let clogged_at = tokio::time::Instant::now();
    tokio::time::sleep(BROKER_TIMEOUT - REGISTER_PERIOD - Duration::from_secs(5)).await;
    expect_brokers(&route().await, &all, "while the clogged broker is within its timeout");
    let deadline = clogged_at + BROKER_TIMEOUT + SCAN_INTERVAL + Duration::from_secs(1);
    tokio::time::sleep_until(deadline).await;
    expect_brokers(&route().await, &survivors, "after the clogged broker's expiry");
    check(&slot);

    net.unclog_node(victim_id);
    tokio::time::sleep(REGISTER_PERIOD + Duration::from_secs(5)).await;
    expect_brokers(&route().await, &all, "after the broker was healed");
    check(&slot);
}

/// After a NameServer restart: it cannot know every broker at once, and knows them all again
/// after a registration period.
async fn relearn(slot: Slot, all: BTreeSet<String>) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = read_route(&client, NAMESRV_ADDR, TOPIC).await;
    assert!(
        early == RouteView::NoRoute
            || early == RouteView::Unreachable
            || matches!(&early, RouteView::Brokers(b) if b.len() < 3),
        "a restarted NameServer cannot know every broker at once: {early:?}"
    );
    tokio::time::sleep(REGISTER_PERIOD + Duration::from_secs(5)).await;
    expect_brokers(
        &read_route(&client, NAMESRV_ADDR, TOPIC).await,
        &all,
        "after the NameServer restarted",
    );
    check(&slot);
}
