//! A broker group in controller mode, in this process on loopback: three controllers, a
//! NameServer and three brokers with `allAckInSyncStateSet`. The first broker becomes master,
//! the others follow it over the AutoSwitch handshake and join its sync-state set; every send
//! is acknowledged only once all three hold it. The master crashes: the controller elects
//! another from the set, which takes sends at once and holds every acknowledged message; the
//! old master comes back on its store as a slave and ends with the new master's log, byte for
//! byte. A topic created on the master just before it crashes, before any slave copied the
//! topic table, is served by the next master with its messages (RocketMQ #9804 lost it).
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;
#[path = "common/controllers.rs"]
mod controllers;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use petrel::broker::config::{BrokerRole, ControllerModeConfig};
use petrel::broker::{self, Broker, BrokerConfig, BrokerHandle};
use petrel::controller::ControllerHandle;
use petrel::namesrv::NamesrvHandle;
use petrel_client::raw::{self, SendOutcome};
use petrel_core::controller::body::EpochEntryCache;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::disk::FsDisk;

const GROUP: &str = "failover";
const TOPIC: &str = "Failover";

fn config(
    namesrv: &str,
    controllers: &[String],
    root: &std::path::Path,
    sync_metadata_ms: u64,
) -> BrokerConfig {
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
            sync_metadata_ms,
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
    send_to(client, broker, TOPIC, id).await;
}

async fn send_to(client: &RemotingClient, broker: &str, topic: &str, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match raw::send(client, broker, topic, (id % 4) as i32, id, 100).await {
            SendOutcome::Acked { .. } => return,
            other => assert!(Instant::now() < deadline, "message {id}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every message id in the topic's four queues at `broker`.
async fn stored(client: &RemotingClient, broker: &str) -> BTreeSet<u64> {
    stored_in(client, broker, TOPIC).await
}

async fn stored_in(client: &RemotingClient, broker: &str, topic: &str) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for queue in 0..4 {
        ids.extend(common::drain(client, broker, topic, queue).await.into_iter().map(|(_, id)| id));
    }
    ids
}

/// A NameServer, three controllers and three brokers of one group in controller mode, the
/// first master and all three in its sync-state set.
struct Group {
    _namesrv: NamesrvHandle,
    namesrv: String,
    _dir: tempfile::TempDir,
    _controllers: Vec<ControllerHandle>,
    controllers: Vec<String>,
    client: RemotingClient,
    roots: Vec<tempfile::TempDir>,
    sync_metadata_ms: u64,
    brokers: Vec<Option<BrokerHandle>>,
}

impl Group {
    /// Slaves copy the master's topics and groups every `sync_metadata_ms`.
    async fn start(sync_metadata_ms: u64) -> Group {
        let (namesrv_handle, namesrv) = common::namesrv().await;
        let dir = tempfile::tempdir().unwrap();
        let (handles, controllers) =
            controllers::start_all(dir.path(), &controllers::peers(3)).await;
        let mut group = Group {
            _namesrv: namesrv_handle,
            namesrv,
            _dir: dir,
            _controllers: handles,
            controllers,
            client: RemotingClient::new(ClientConfig::default(), None),
            roots: (0..3).map(|_| tempfile::tempdir().unwrap()).collect(),
            sync_metadata_ms,
            brokers: Vec::new(),
        };
        // The first broker up is elected; the others follow it and join its set.
        group.brokers.push(Some(group.start_broker(0).await));
        let first = group.broker(0);
        wait_until("the first broker is master", || first.role() == BrokerRole::SyncMaster).await;
        for n in 1..3 {
            let started = group.start_broker(n).await;
            group.brokers.push(Some(started));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (master, _, set) =
                controllers::replica_info(&group.client, &group.controllers, GROUP).await;
            if master == Some(1) && set.sync_state_set == BTreeSet::from([1, 2, 3]) {
                return group;
            }
            assert!(Instant::now() < deadline, "the set never grew: {master:?} {set:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start_broker(&self, n: usize) -> BrokerHandle {
        let config =
            config(&self.namesrv, &self.controllers, self.roots[n].path(), self.sync_metadata_ms);
        broker::start(config, Arc::new(FsDisk)).await.unwrap()
    }

    fn broker(&self, n: usize) -> Arc<Broker> {
        self.brokers[n].as_ref().unwrap().state.clone()
    }

    /// Crashes the master (broker 0) and waits for the controller to elect another, which
    /// knows it is master; returns it and when the crash was.
    async fn crash_the_master(&mut self) -> (Arc<Broker>, Instant) {
        let crashed = Instant::now();
        drop(self.brokers[0].take());
        let deadline = Instant::now() + Duration::from_secs(20);
        let new_master = loop {
            let (master, epoch, _) =
                controllers::replica_info(&self.client, &self.controllers, GROUP).await;
            if let Some(id) = master.filter(|id| *id != 1) {
                assert!(epoch >= 2, "a new master raises the epoch");
                break self.broker(id as usize - 1);
            }
            assert!(Instant::now() < deadline, "no new master");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        wait_until("the new master knows it", || new_master.role() == BrokerRole::SyncMaster).await;
        (new_master, crashed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_master_is_replaced_from_its_set_and_rejoins_as_a_slave() {
    let mut group = Group::start(200).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let first = group.broker(0);
    let old_master = first.addr().to_owned();
    for id in 0..200 {
        send_acked(&client, &old_master, id).await;
    }
    assert_eq!(stored(&client, &old_master).await.len(), 200);

    // The master crashes; another member of the set takes over with every message.
    drop(first);
    let (new_master, crashed) = group.crash_the_master().await;
    send_acked(&client, new_master.addr(), 200).await;
    eprintln!(
        "failover: first acknowledged send on the new master {:?} after the crash",
        crashed.elapsed()
    );
    for id in 201..300 {
        send_acked(&client, new_master.addr(), id).await;
    }
    assert_eq!(stored(&client, new_master.addr()).await, (0..300).collect());
    // An admin asks the new master for its epochs (GET_BROKER_EPOCH_CACHE): two, the second
    // not ended, and the log's end.
    let asked = RemotingCommand::request(request::GET_BROKER_EPOCH_CACHE);
    let reply = client.invoke(new_master.addr(), asked, Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let cache: EpochEntryCache = from_json(&reply.body).unwrap();
    let epochs: Vec<(i32, i64, i64)> =
        cache.epoch_list.iter().map(|e| (e.epoch, e.start_offset, e.end_offset)).collect();
    let store = new_master.store();
    let second = store.epochs()[1].start_offset as i64;
    assert_eq!(epochs, [(1, 0, second), (2, second, i64::MAX)]);
    assert_eq!(cache.max_offset, store.written_offset() as i64);
    assert_eq!(
        (cache.broker_name.as_str(), cache.cluster_name.as_str()),
        (GROUP, "DefaultCluster")
    );
    assert!(cache.broker_id == 2 || cache.broker_id == 3, "{cache:?}");

    // The old master returns on its store, follows the new one and ends with its log.
    tokio::time::sleep(Duration::from_millis(200)).await;
    group.brokers[0] = Some(group.start_broker(0).await);
    let back = group.broker(0);
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

/// A topic created on the master, its messages acknowledged by the whole set, and the master
/// crashed before any slave copied the topic table (a copy every 60 s): the next master serves
/// the topic, from the consume queues its store holds, routes it, and has every message.
/// RocketMQ #9804 lost such topics on a switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_just_before_the_master_crashed_is_served_by_the_next() {
    const FRESH: &str = "FreshTopic";
    let mut group = Group::start(60_000).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let old_master = group.broker(0).addr().to_owned();
    assert!(raw::create_topic(&client, &old_master, FRESH, 4).await);
    for id in 0..40 {
        send_to(&client, &old_master, FRESH, id).await;
    }
    assert!(group.broker(1).topic(FRESH).is_none(), "no slave copied the topic yet");

    let (new_master, _) = group.crash_the_master().await;
    let topic = new_master.topic(FRESH).expect("the new master has the topic");
    assert_eq!((topic.read_queue_nums, topic.write_queue_nums), (4, 4));
    assert_eq!(stored_in(&client, new_master.addr(), FRESH).await, (0..40).collect());
    // Routed by the NameServer to the new master: a producer that knows only the NameServer
    // sends to it.
    let producer = common::producer(&group.namesrv);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let message = petrel_client::Message::new(FRESH, raw::body(40, 100));
        match producer.send(&message).await {
            Ok(sent) => {
                assert!(sent.queue_offset >= 10, "after the ten in its queue: {sent:?}");
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "never routed: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `petrel admin`, as a process, with these words; its standard output, which must be a
/// success.
fn admin(words: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"))
        .arg("admin")
        .args(words)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "petrel admin {words:?} failed: {said}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ha_admin_commands_show_the_group_and_move_its_master() {
    let group = Group::start(200).await;
    let controllers = group.controllers.join(";");
    let meta = admin(&["getControllerMetaData", "-a", &controllers]);
    assert!(meta.starts_with("\n#ControllerGroup\t"), "{meta}");
    assert_eq!(meta.matches("\n#Peer:\t").count(), 3, "{meta}");
    let leader = meta.lines().find_map(|l| l.strip_prefix("#ControllerLeaderAddress\t")).unwrap();
    assert!(group.controllers.iter().any(|c| c == leader), "{meta}");

    let set = admin(&["getSyncStateSet", "-a", &controllers, "-b", GROUP]);
    let first = group.broker(0).addr().to_owned();
    assert!(
        set.contains(&format!(
            "\n#brokerName\t{GROUP}\n#MasterBrokerId\t1\n#MasterAddr\t{first}\n"
        )),
        "{set}"
    );
    assert!(set.contains("\n#SyncStateSetNums\t3\n"), "{set}");
    assert_eq!(set.matches("\nInSyncReplica:\tReplicaIdentity{brokerName=").count(), 3, "{set}");
    let by_cluster = admin(&[
        "getSyncStateSet",
        "-a",
        &controllers,
        "-c",
        "DefaultCluster",
        "-n",
        &group.namesrv,
    ]);
    assert_eq!(by_cluster, set, "the cluster has this one group");

    // Epochs begin with the first record written in them: the group stores some first.
    let client = RemotingClient::new(ClientConfig::default(), None);
    for id in 0..10 {
        send_acked(&client, &first, id).await;
    }
    let brokers: Vec<Arc<Broker>> = (0..3).map(|n| group.broker(n)).collect();
    wait_until("every broker has its first epoch", || {
        brokers.iter().all(|b| !b.store().epochs().is_empty())
    })
    .await;
    let epochs = admin(&["getBrokerEpoch", "-b", GROUP, "-n", &group.namesrv]);
    assert_eq!(epochs.matches("\n#brokerAddr\t").count(), 3, "{epochs}");
    assert_eq!(
        epochs.matches("\n#Epoch: EpochEntry{epoch=1, startOffset=0, endOffset=").count(),
        3,
        "{epochs}"
    );

    // The operator moves the master to broker 2; the controller elects it and it takes over.
    let second = group.broker(1);
    let elected = admin(&[
        "electMaster",
        "-a",
        &controllers,
        "--bn",
        GROUP,
        "-b",
        "2",
        "-c",
        "DefaultCluster",
    ]);
    assert!(elected.contains(&format!("\n#BrokerMasterAddr\t{}\n", second.addr())), "{elected}");
    assert!(elected.contains("\n#MasterEpoch\t2\n"), "{elected}");
    wait_until("broker 2 is master", || second.role() == BrokerRole::SyncMaster).await;
}
