//! A broker group in controller mode, in this process on loopback: three controllers, a
//! NameServer and three brokers with `allAckInSyncStateSet`. The first broker becomes master,
//! the others follow it over the AutoSwitch handshake and join its sync-state set; every send
//! is acknowledged only once all three hold it. The master crashes: the controller elects
//! another from the set, which takes sends at once and holds every acknowledged message; the
//! old master comes back on its store as a slave and ends with the new master's log, byte for
//! byte.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;
#[path = "common/controllers.rs"]
mod controllers;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use petrel::broker::config::{BrokerRole, ControllerModeConfig};
use petrel::broker::{self, BrokerConfig, BrokerHandle};
use petrel_client::raw::{self, SendOutcome};
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::disk::FsDisk;

const GROUP: &str = "failover";
const TOPIC: &str = "Failover";

fn config(namesrv: &str, controllers: &[String], root: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig {
        broker_name: GROUP.into(),
        listen_port: 0,
        bind_address: "127.0.0.1".into(),
        broker_ip: Some("127.0.0.1".into()),
        namesrv_addrs: vec![namesrv.to_owned()],
        register_period_ms: 1_000,
        controller: Some(ControllerModeConfig {
            controller_addrs: controllers.to_vec(),
            all_ack: true,
            heartbeat_timeout_ms: 600,
            heartbeat_interval_ms: 100,
            sync_metadata_ms: 200,
            ..ControllerModeConfig::default()
        }),
        ..BrokerConfig::default()
    };
    config.ha_listen_port = Some(0);
    config.store.root = root.to_path_buf();
    config.store.commit_log_file_bytes = 1 << 20;
    config.store.message_bytes_max = 64 << 10;
    config
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends message `id` to `broker` until it is acknowledged (a broker just made master may
/// still refuse for a moment).
async fn send_acked(client: &RemotingClient, broker: &str, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match raw::send(client, broker, TOPIC, (id % 4) as i32, id, 100).await {
            SendOutcome::Acked { .. } => return,
            other => assert!(Instant::now() < deadline, "message {id}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every message id in the topic's four queues at `broker`.
async fn stored(client: &RemotingClient, broker: &str) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for queue in 0..4 {
        ids.extend(common::drain(client, broker, TOPIC, queue).await.into_iter().map(|(_, id)| id));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_master_is_replaced_from_its_set_and_rejoins_as_a_slave() {
    let (_namesrv, namesrv) = common::namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let peers = controllers::peers(3);
    let mut controller_handles = Vec::new();
    for n in 0..3 {
        controller_handles.push(controllers::start(dir.path(), &peers, n).await);
    }
    let controllers: Vec<String> = peers.iter().map(|(_, addr)| addr.clone()).collect();
    let client = RemotingClient::new(ClientConfig::default(), None);
    let roots: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let start =
        |n: usize| broker::start(config(&namesrv, &controllers, roots[n].path()), Arc::new(FsDisk));

    // The first broker up is elected; the others follow it and join its set.
    let mut brokers: Vec<Option<BrokerHandle>> = Vec::new();
    brokers.push(Some(start(0).await.unwrap()));
    let first = brokers[0].as_ref().unwrap().state.clone();
    wait_until("the first broker is master", || first.role() == BrokerRole::SyncMaster).await;
    for n in 1..3 {
        brokers.push(Some(start(n).await.unwrap()));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (master, _, set) = controllers::replica_info(&client, &controllers, GROUP).await;
        if master == Some(1) && set.sync_state_set == BTreeSet::from([1, 2, 3]) {
            break;
        }
        assert!(Instant::now() < deadline, "the set never grew: {master:?} {set:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old_master = first.addr().to_owned();
    for id in 0..200 {
        send_acked(&client, &old_master, id).await;
    }
    assert_eq!(stored(&client, &old_master).await.len(), 200);

    // The master crashes; another member of the set takes over with every message.
    drop(first);
    let crashed = Instant::now();
    drop(brokers[0].take());
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_master = loop {
        let (master, epoch, _) = controllers::replica_info(&client, &controllers, GROUP).await;
        if let Some(id) = master.filter(|id| *id != 1) {
            assert!(epoch >= 2, "a new master raises the epoch");
            break brokers[id as usize - 1].as_ref().unwrap().state.clone();
        }
        assert!(Instant::now() < deadline, "no new master");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    wait_until("the new master knows it", || new_master.role() == BrokerRole::SyncMaster).await;
    send_acked(&client, new_master.addr(), 200).await;
    eprintln!(
        "failover: first acknowledged send on the new master {:?} after the crash",
        crashed.elapsed()
    );
    for id in 201..300 {
        send_acked(&client, new_master.addr(), id).await;
    }
    assert_eq!(stored(&client, new_master.addr()).await, (0..300).collect());

    // The old master returns on its store, follows the new one and ends with its log.
    tokio::time::sleep(Duration::from_millis(200)).await;
    brokers[0] = Some(start(0).await.unwrap());
    let back = brokers[0].as_ref().unwrap().state.clone();
    let (master_store, back_store) = (new_master.store().clone(), back.store().clone());
    wait_until("the old master copied the new one's log", || {
        back.role() == BrokerRole::Slave
            && back_store.written_offset() == master_store.written_offset()
    })
    .await;
    let end = master_store.written_offset();
    assert_eq!(back_store.read_at(0, end as u32), master_store.read_at(0, end as u32));
    let epochs: Vec<_> = master_store.epochs().iter().map(|e| (e.epoch, e.start_offset)).collect();
    assert_eq!(
        back_store.epochs().iter().map(|e| (e.epoch, e.start_offset)).collect::<Vec<_>>(),
        epochs
    );
    assert!(epochs.len() >= 2, "two epochs: {epochs:?}");
}
