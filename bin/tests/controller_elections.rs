//! Three controllers in one process, on loopback, and three stand-in brokers that speak the
//! controller protocol as RocketMQ's brokers do: ids, registration, heartbeats, elections,
//! sync-state set changes. A master that stops heartbeating is replaced from its sync-state set
//! and the group's live brokers are told (NOTIFY_BROKER_ROLE_CHANGED); the controller leader
//! is shut down and the next one carries on from the replicated metadata; refusals carry
//! RocketMQ's codes.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

#[path = "common/controllers.rs"]
mod controllers;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controllers::{leader_call, leader_call_with_body};
use petrel_core::controller::body::{BrokerReplicasInfo, ElectMasterResponseBody, SyncStateSet};
use petrel_core::controller::code;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    AlterSyncStateSetRequestHeader, AlterSyncStateSetResponseHeader, ApplyBrokerIdRequestHeader,
    CleanControllerBrokerDataRequestHeader, ElectMasterRequestHeader, ElectMasterResponseHeader,
    GetNextBrokerIdRequestHeader, GetNextBrokerIdResponseHeader, GetReplicaInfoRequestHeader,
    NotifyBrokerRoleChangedRequestHeader, RegisterBrokerToControllerRequestHeader,
    RegisterBrokerToControllerResponseHeader,
};
use petrel_net::headers::namesrv::BrokerHeartbeatRequestHeader;
use petrel_net::signal::{Flag, SetOnDrop};
use petrel_net::transport::{
    ClientConfig, Connection, Handled, RemotingClient, RequestHandler, Server, ServerConfig,
};

const GROUP: &str = "broker-a";

/// What a stand-in broker was told by NOTIFY_BROKER_ROLE_CHANGED: (master, master epoch).
#[derive(Default)]
struct Notified(Mutex<Vec<(i64, i32)>>);

impl RequestHandler for Notified {
    fn handle(&self, _conn: &Connection, request: RemotingCommand) -> Handled {
        if request.code == request::NOTIFY_BROKER_ROLE_CHANGED {
            let header: NotifyBrokerRoleChangedRequestHeader = request.header().unwrap();
            let set: SyncStateSet = from_json(request.body_bytes().as_ref()).unwrap();
            assert!(set.sync_state_set.contains(&header.master_broker_id.unwrap()));
            let told = (header.master_broker_id.unwrap(), header.master_epoch.unwrap());
            self.0.lock().unwrap().push(told);
        }
        Handled::Now(RemotingCommand::response(response::SUCCESS, None))
    }
}

/// A broker of the group as far as the controllers see it: an address that takes
/// notifications, an id, and heartbeats every 100 ms until stopped.
struct Broker {
    id: i64,
    addr: String,
    notified: Arc<Notified>,
    heartbeats: Option<SetOnDrop>,
    _server: SetOnDrop,
}

impl Broker {
    async fn start(client: &RemotingClient, controllers: &[String]) -> Broker {
        let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await.unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let notified = Arc::new(Notified::default());
        let stop = SetOnDrop::new();
        let stopped = stop.flag();
        let handler = notified.clone();
        tokio::spawn(
            async move { server.serve(handler, async move { stopped.wait().await }).await },
        );
        let ask =
            GetNextBrokerIdRequestHeader { cluster_name: "c".into(), broker_name: GROUP.into() };
        let reply =
            leader_call(client, controllers, request::CONTROLLER_GET_NEXT_BROKER_ID, &ask).await;
        let id = reply.header::<GetNextBrokerIdResponseHeader>().unwrap().next_broker_id;
        let apply = ApplyBrokerIdRequestHeader {
            cluster_name: "c".into(),
            broker_name: GROUP.into(),
            applied_broker_id: id,
            register_check_code: format!("{addr};1"),
        };
        let reply =
            leader_call(client, controllers, request::CONTROLLER_APPLY_BROKER_ID, &apply).await;
        assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
        let register = RegisterBrokerToControllerRequestHeader {
            cluster_name: "c".into(),
            broker_name: GROUP.into(),
            broker_id: id,
            broker_address: addr.clone(),
            invoke_time: None,
        };
        let reply =
            leader_call(client, controllers, request::CONTROLLER_REGISTER_BROKER, &register).await;
        assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
        let answer: RegisterBrokerToControllerResponseHeader = reply.header().unwrap();
        assert_eq!(answer.master_broker_id, None, "no master elected yet");
        Broker { id, addr, notified, heartbeats: None, _server: stop }
    }

    /// Heartbeats to every controller, reporting `max_offset`, with a 600 ms timeout.
    fn heartbeat(&mut self, controllers: &[String], max_offset: i64) {
        let stop = SetOnDrop::new();
        let stopped: Flag = stop.flag();
        let header = BrokerHeartbeatRequestHeader {
            cluster_name: "c".into(),
            broker_addr: self.addr.clone(),
            broker_name: GROUP.into(),
            broker_id: Some(self.id),
            epoch: Some(0),
            max_offset: Some(max_offset),
            confirm_offset: None,
            heartbeat_timeout_mills: Some(600),
            election_priority: None,
        };
        let client = RemotingClient::new(ClientConfig::default(), None);
        let controllers = controllers.to_vec();
        tokio::spawn(async move {
            while !stopped.is_set() {
                for addr in &controllers {
                    let beat =
                        RemotingCommand::request(request::BROKER_HEARTBEAT).with_header(&header);
                    let _ = client.invoke_oneway(addr, beat).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        self.heartbeats = Some(stop);
    }

    fn told(&self) -> Vec<(i64, i32)> {
        self.notified.0.lock().unwrap().clone()
    }
}

async fn replica_info(
    client: &RemotingClient,
    controllers: &[String],
) -> (Option<i64>, i32, SyncStateSet) {
    controllers::replica_info(client, controllers, GROUP).await
}

/// Waits (up to 10 s) until the group's master epoch reaches `epoch`; the replica info then.
async fn wait_epoch(
    client: &RemotingClient,
    controllers: &[String],
    epoch: i32,
) -> (Option<i64>, i32, SyncStateSet) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = replica_info(client, controllers).await;
        if info.1 >= epoch {
            return info;
        }
        assert!(Instant::now() < deadline, "master epoch stuck at {}", info.1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn alter(
    client: &RemotingClient,
    controllers: &[String],
    master: i64,
    master_epoch: i32,
    set: &[i64],
    set_epoch: i32,
) -> RemotingCommand {
    let header = AlterSyncStateSetRequestHeader {
        broker_name: GROUP.into(),
        master_broker_id: master,
        master_epoch,
        invoke_time: None,
    };
    let body = SyncStateSet {
        sync_state_set: set.iter().copied().collect(),
        sync_state_set_epoch: set_epoch,
    };
    let request = RemotingCommand::request(request::CONTROLLER_ALTER_SYNC_STATE_SET)
        .with_header(&header)
        .with_body(to_json(&body, JsonStyle::Fastjson));
    leader_call_with_body(client, controllers, request).await
}

async fn elect(
    client: &RemotingClient,
    controllers: &[String],
    id: i64,
    designate: bool,
) -> RemotingCommand {
    let header = ElectMasterRequestHeader {
        cluster_name: "c".into(),
        broker_name: GROUP.into(),
        broker_id: id,
        designate_elect: designate,
        invoke_time: None,
    };
    leader_call(client, controllers, request::CONTROLLER_ELECT_MASTER, &header).await
}

/// Waits (up to 5 s) until `broker` was told of master `master` at `epoch`.
async fn wait_told(broker: &Broker, master: i64, epoch: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !broker.told().contains(&(master, epoch)) {
        assert!(
            Instant::now() < deadline,
            "broker {} was told only {:?}",
            broker.id,
            broker.told()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_are_elected_from_the_sync_state_set_across_a_controller_failover() {
    let dir = tempfile::tempdir().unwrap();
    let peers = controllers::peers(3);
    let (handles, mut controllers) = controllers::start_all(dir.path(), &peers).await;
    let mut handles: Vec<_> = handles.into_iter().map(Some).collect();
    let client = RemotingClient::new(ClientConfig::default(), None);

    let mut brokers = Vec::new();
    for _ in 0..3 {
        brokers.push(Broker::start(&client, &controllers).await);
    }
    assert_eq!(brokers.iter().map(|b| b.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    // Broker 3 is furthest ahead, then 2; 3 heartbeats first, so that whenever the leader's
    // scan elects, 3 is alive.
    brokers[2].heartbeat(&controllers, 100);
    tokio::time::sleep(Duration::from_millis(150)).await;
    brokers[1].heartbeat(&controllers, 50);
    brokers[0].heartbeat(&controllers, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The first election takes the live broker furthest ahead, whoever asked, or the leader's
    // scan, finding a group with live brokers and no master, got there first.
    let reply = elect(&client, &controllers, 1, false).await;
    assert!([response::SUCCESS, code::MASTER_STILL_EXIST].contains(&reply.code), "{reply:?}");
    let header: ElectMasterResponseHeader = reply.header().unwrap();
    assert_eq!((header.master_broker_id, header.master_epoch), (Some(3), Some(1)));
    assert_eq!(header.master_address.as_deref(), Some(brokers[2].addr.as_str()));
    let body: ElectMasterResponseBody = from_json(reply.body_bytes().as_ref()).unwrap();
    assert_eq!(body.sync_state_set, BTreeSet::from([3]));
    // The new master is told; 1 and 2 may have started heartbeating only after the election
    // and learn of it as they ask, as the next assertions do.
    wait_told(&brokers[2], 3, 1).await;
    // Asked again while 3 lives: it stays (RocketMQ's MASTER_STILL_EXIST, with the master).
    let reply = elect(&client, &controllers, 2, false).await;
    assert_eq!(reply.code, code::MASTER_STILL_EXIST);
    assert_eq!(reply.header::<ElectMasterResponseHeader>().unwrap().master_broker_id, Some(3));

    // The master takes both slaves into its set; stale and foreign changes are fenced.
    let reply = alter(&client, &controllers, 3, 1, &[1, 2, 3], 1).await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    assert_eq!(
        reply.header::<AlterSyncStateSetResponseHeader>().unwrap().new_sync_state_set_epoch,
        2
    );
    assert_eq!(
        alter(&client, &controllers, 3, 1, &[2, 3], 1).await.code,
        code::FENCED_SYNC_STATE_SET_EPOCH
    );
    assert_eq!(
        alter(&client, &controllers, 3, 0, &[2, 3], 2).await.code,
        code::FENCED_MASTER_EPOCH
    );
    assert_eq!(alter(&client, &controllers, 2, 1, &[2, 3], 2).await.code, code::INVALID_MASTER);
    let names = RemotingCommand::request(request::CONTROLLER_GET_SYNC_STATE_DATA)
        .with_body(br#"["broker-a","nope"]"#.to_vec());
    let reply = leader_call_with_body(&client, &controllers, names).await;
    let data: BrokerReplicasInfo = from_json(reply.body_bytes().as_ref()).unwrap();
    assert_eq!(data.replicas_info_table.keys().collect::<Vec<_>>(), vec![GROUP]);
    let info = &data.replicas_info_table[GROUP];
    assert_eq!((info.master_broker_id, info.in_sync_replicas.len()), (Some(3), 3));
    assert!(info.in_sync_replicas.iter().all(|r| r.alive));

    // The master stops heartbeating: the leader's scan elects 2, furthest ahead of the rest
    // of the set, and tells the live brokers.
    brokers[2].heartbeats = None;
    let (master, epoch, set) = wait_epoch(&client, &controllers, 2).await;
    assert_eq!((master, epoch, set.sync_state_set), (Some(2), 2, BTreeSet::from([2])));
    wait_told(&brokers[0], 2, 2).await;
    wait_told(&brokers[1], 2, 2).await;
    assert!(!brokers[2].told().contains(&(2, 2)), "a silent broker is not notified");
    let reply = alter(&client, &controllers, 2, 2, &[1, 2], 3).await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);

    // The controller leader goes; another takes over with the replicated metadata.
    let leader = leader_index(&client, &controllers).await;
    handles[leader].take().unwrap().shutdown().await;
    controllers.remove(leader);
    let (master, epoch, set) = replica_info(&client, &controllers).await;
    assert_eq!((master, epoch, set.sync_state_set_epoch), (Some(2), 2, 4));
    // Then master 2 goes: 1, the last of the set, takes over.
    brokers[1].heartbeats = None;
    let (master, epoch, _) = wait_epoch(&client, &controllers, 3).await;
    assert_eq!((master, epoch), (Some(1), 3));
    wait_told(&brokers[0], 1, 3).await;

    refusals(&client, &controllers).await;
    for handle in handles.into_iter().flatten() {
        handle.shutdown().await;
    }
}

/// Which of `controllers` leads.
async fn leader_index(client: &RemotingClient, controllers: &[String]) -> usize {
    let ask = GetReplicaInfoRequestHeader { broker_name: GROUP.into() };
    for (i, addr) in controllers.iter().enumerate() {
        let request =
            RemotingCommand::request(request::CONTROLLER_GET_REPLICA_INFO).with_header(&ask);
        let reply = client.invoke(addr, request, Duration::from_secs(3)).await.unwrap();
        if reply.code == response::SUCCESS {
            return i;
        }
        assert_eq!(reply.code, code::NOT_LEADER);
        assert!(reply.remark.unwrap().contains("the leader is 127.0.0.1:"));
    }
    panic!("no controller leads");
}

/// Bad and refused requests get RocketMQ's codes and a remark; the controllers go on.
async fn refusals(client: &RemotingClient, controllers: &[String]) {
    let anonymous = BrokerHeartbeatRequestHeader {
        cluster_name: "c".into(),
        broker_addr: "x:1".into(),
        broker_name: GROUP.into(),
        broker_id: None,
        epoch: None,
        max_offset: None,
        confirm_offset: None,
        heartbeat_timeout_mills: None,
        election_priority: None,
    };
    let beat = RemotingCommand::request(request::BROKER_HEARTBEAT).with_header(&anonymous);
    let reply = client.invoke(&controllers[0], beat, Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.code, code::INVALID_REQUEST);
    let stranger = RegisterBrokerToControllerRequestHeader {
        cluster_name: "c".into(),
        broker_name: GROUP.into(),
        broker_id: 9,
        broker_address: "x:1".into(),
        invoke_time: None,
    };
    let reply =
        leader_call(client, controllers, request::CONTROLLER_REGISTER_BROKER, &stranger).await;
    assert_eq!(reply.code, code::BROKER_NEED_TO_BE_REGISTERED);
    assert!(reply.remark.unwrap().contains("apply for an id"));
    let reply = elect(client, controllers, 9, false).await;
    assert_eq!(reply.code, code::BROKER_NEED_TO_BE_REGISTERED);
    let garbage =
        RemotingCommand::request(request::CONTROLLER_GET_SYNC_STATE_DATA).with_body(b"{".to_vec());
    assert_eq!(
        leader_call_with_body(client, controllers, garbage).await.code,
        code::INVALID_REQUEST
    );
    // The living master cannot be cleaned away; the dead broker 3 can.
    let clean = |ids: &str| CleanControllerBrokerDataRequestHeader {
        cluster_name: Some("c".into()),
        broker_name: GROUP.into(),
        broker_controller_ids_to_clean: Some(ids.into()),
        is_clean_living_broker: None,
        invoke_time: None,
    };
    let reply = leader_call(client, controllers, request::CLEAN_BROKER_DATA, &clean("1")).await;
    assert_eq!(reply.code, code::INVALID_CLEAN_BROKER_METADATA);
    let reply = leader_call(client, controllers, request::CLEAN_BROKER_DATA, &clean("x")).await;
    assert_eq!(reply.code, code::INVALID_CLEAN_BROKER_METADATA);
    let reply = leader_call(client, controllers, request::CLEAN_BROKER_DATA, &clean("3")).await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let ask = GetNextBrokerIdRequestHeader { cluster_name: "c".into(), broker_name: GROUP.into() };
    let reply =
        leader_call(client, controllers, request::CONTROLLER_GET_NEXT_BROKER_ID, &ask).await;
    assert_eq!(reply.header::<GetNextBrokerIdResponseHeader>().unwrap().next_broker_id, 3);
}

/// UPDATE_CONTROLLER_CONFIG to `addr` with properties `text`.
async fn update_config(client: &RemotingClient, addr: &str, text: &str) -> RemotingCommand {
    let request = RemotingCommand::request(request::UPDATE_CONTROLLER_CONFIG)
        .with_body(text.as_bytes().to_vec());
    client.invoke(addr, request, Duration::from_secs(3)).await.unwrap()
}

/// GET_CONTROLLER_CONFIG's text from `addr`.
async fn config_text(client: &RemotingClient, addr: &str) -> String {
    let request = RemotingCommand::request(request::GET_CONTROLLER_CONFIG);
    let reply = client.invoke(addr, request, Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.code, response::SUCCESS);
    String::from_utf8(reply.body_bytes().to_vec()).unwrap()
}

/// An admin reads each controller's properties and turns on unclean elections at run time
/// (UPDATE_CONTROLLER_CONFIG to each); a request naming a black-listed key, a key read at
/// start only or a bad value changes nothing. With the master gone and the only live broker
/// outside the set, no master is elected until the change, and that broker is after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_turns_on_unclean_elections_while_the_controllers_run() {
    let dir = tempfile::tempdir().unwrap();
    let peers = controllers::peers(3);
    let (_handles, controllers) = controllers::start_all(dir.path(), &peers).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let mut first = Broker::start(&client, &controllers).await;
    let mut second = Broker::start(&client, &controllers).await;
    first.heartbeat(&controllers, 100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = elect(&client, &controllers, first.id, false).await;
    assert!([response::SUCCESS, code::MASTER_STILL_EXIST].contains(&reply.code), "{reply:?}");
    assert_eq!(wait_epoch(&client, &controllers, 1).await.0, Some(first.id));
    second.heartbeat(&controllers, 50);
    first.heartbeats = None;
    let (master, _, set) = wait_epoch(&client, &controllers, 2).await;
    assert_eq!((master, set.sync_state_set), (None, BTreeSet::from([first.id])));
    let reply = elect(&client, &controllers, second.id, false).await;
    assert_eq!(reply.code, code::ELECT_MASTER_FAILED, "{reply:?}");

    for addr in &controllers {
        let text = config_text(&client, addr).await;
        assert!(text.contains("enableElectUncleanMaster=false\n"), "{text}");
        assert!(text.contains(&format!("controllerDLegerPeers={}-{}", peers[0].0, peers[0].1)));
        let reply = update_config(&client, addr, "configStorePath=/elsewhere").await;
        assert_eq!(reply.code, response::NO_PERMISSION);
        let both = "enableElectUncleanMaster=true\ntickInterval=10\n";
        let reply = update_config(&client, addr, both).await;
        assert_eq!(reply.code, response::INVALID_PARAMETER);
        assert!(reply.remark.unwrap().contains("tickInterval is read at start only"));
        let reply = update_config(&client, addr, "scanNotActiveBrokerInterval=soon").await;
        assert_eq!(reply.code, response::INVALID_PARAMETER);
        let text = config_text(&client, addr).await;
        assert!(text.contains("enableElectUncleanMaster=false\n"), "nothing taken: {text}");
        let reply = update_config(&client, addr, "enableElectUncleanMaster=true").await;
        assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
        assert!(config_text(&client, addr).await.contains("enableElectUncleanMaster=true\n"));
    }
    // The leader's next scan, or this request, elects the broker outside the set.
    let reply = elect(&client, &controllers, second.id, false).await;
    assert!([response::SUCCESS, code::MASTER_STILL_EXIST].contains(&reply.code), "{reply:?}");
    let (master, _, set) = wait_epoch(&client, &controllers, 3).await;
    assert_eq!((master, set.sync_state_set), (Some(second.id), BTreeSet::from([second.id])));
}
