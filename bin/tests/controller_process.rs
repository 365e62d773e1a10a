//! Three `petrel controller` processes on loopback: they elect one raft leader and all name it;
//! the leader hands out broker ids, replicated; with the leader killed (SIGKILL) the other two
//! elect another, which knows the ids handed out; the killed one, restarted on its raft state
//! file, names the new leader too. The controllers snapshot their metadata every two entries,
//! so the restarted one starts from a snapshot on disk. A NameServer with `enableControllerInNamesrv=true` runs a
//! controller beside it.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    ApplyBrokerIdRequestHeader, GetMetaDataResponseHeader, GetNextBrokerIdRequestHeader,
    GetNextBrokerIdResponseHeader,
};
use petrel_net::transport::{ClientConfig, RemotingClient};

mod common;
#[path = "common/controllers.rs"]
mod controllers;

use common::Killed;
use controllers::free_port;

/// Starts controller `n` of `peers` with its store under `dir`; returns once it listens.
fn start(dir: &Path, peers: &str, n: usize) -> Killed {
    let conf = dir.join(format!("n{n}.conf"));
    let text = format!(
        "controllerDLegerGroup=TestGroup\ncontrollerDLegerPeers={peers}\n\
         controllerDLegerSelfId=n{n}\ncontrollerStorePath={}\ntickInterval=50\n\
         snapshotEntries=2\n",
        dir.join(format!("n{n}")).display()
    );
    std::fs::write(&conf, text).unwrap();
    let (child, line) = common::petrel(&["controller", "-c", conf.to_str().unwrap()], &[]);
    assert!(line.starts_with("controller listening on"), "{line}");
    child
}

/// What controller `addr` says of its group: the leader's name, and whether it leads.
async fn metadata(client: &RemotingClient, addr: &str) -> Option<(String, bool)> {
    let ask = RemotingCommand::request(request::CONTROLLER_GET_METADATA_INFO);
    let reply = client.invoke(addr, ask, Duration::from_secs(2)).await.ok()?;
    assert_eq!(reply.code, response::SUCCESS);
    let header: GetMetaDataResponseHeader = reply.header().unwrap();
    assert_eq!(header.group, "TestGroup");
    Some((header.controller_leader_id, header.is_leader))
}

/// Waits until every controller of `addrs` names the same leader, one of them, which says it
/// leads (a follower names a dead leader until its election timeout passes).
async fn agreed_leader(client: &RemotingClient, addrs: &[(String, String)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut named = Vec::new();
        for (name, addr) in addrs {
            if let Some((leader, leads)) = metadata(client, addr).await {
                named.push((name.clone(), leader, leads));
            }
        }
        let first = named.first().map(|(_, leader, _)| leader.clone()).unwrap_or_default();
        let agree = named.len() == addrs.len()
            && addrs.iter().any(|(name, _)| *name == first)
            && named
                .iter()
                .all(|(name, leader, leads)| *leader == first && (*name == first) == *leads);
        if agree {
            return first;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {named:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CONTROLLER_GET_NEXT_BROKER_ID of group `g` at `addr`: the answer's code and the id.
async fn next_id(client: &RemotingClient, addr: &str) -> (i32, i64) {
    let header = GetNextBrokerIdRequestHeader { cluster_name: "c".into(), broker_name: "g".into() };
    let ask = RemotingCommand::request(request::CONTROLLER_GET_NEXT_BROKER_ID).with_header(&header);
    let reply = client.invoke(addr, ask, Duration::from_secs(5)).await.unwrap();
    let id = reply.header::<GetNextBrokerIdResponseHeader>().map_or(-1, |h| h.next_broker_id);
    (reply.code, id)
}

/// CONTROLLER_APPLY_BROKER_ID of `id` in group `g` for `broker` at `addr`: the answer's code.
async fn apply_id(client: &RemotingClient, addr: &str, id: i64, broker: &str) -> i32 {
    let header = ApplyBrokerIdRequestHeader {
        cluster_name: "c".into(),
        broker_name: "g".into(),
        applied_broker_id: id,
        register_check_code: format!("{broker};1700000000000"),
    };
    let ask = RemotingCommand::request(request::CONTROLLER_APPLY_BROKER_ID).with_header(&header);
    client.invoke(addr, ask, Duration::from_secs(5)).await.unwrap().code
}

/// The leader hands out broker ids; a follower refuses with CONTROLLER_NOT_LEADER.
async fn take_ids(client: &RemotingClient, addrs: &[(String, String)], leader: &str) {
    let at = |name: &str| addrs.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let follower = addrs.iter().find(|(n, _)| n != leader).unwrap().0.clone();
    assert_eq!(next_id(client, &at(&follower)).await.0, 2007);
    assert_eq!(next_id(client, &at(leader)).await, (response::SUCCESS, 1));
    assert_eq!(apply_id(client, &at(leader), 1, "10.0.0.9:10911").await, response::SUCCESS);
    assert_eq!(apply_id(client, &at(leader), 1, "10.0.0.9:10911").await, response::SUCCESS);
    assert_eq!(apply_id(client, &at(leader), 1, "10.0.0.7:10911").await, 2014, "taken");
    assert_eq!(apply_id(client, &at(leader), 3, "10.0.0.7:10911").await, 2014, "out of turn");
    assert_eq!(next_id(client, &at(leader)).await, (response::SUCCESS, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_a_leader_and_another_when_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<(String, String)> =
        (0..3).map(|n| (format!("n{n}"), format!("127.0.0.1:{}", free_port()))).collect();
    let peers: String = addrs.iter().map(|(n, a)| format!("{n}-{a};")).collect();
    let mut processes: Vec<Option<Killed>> =
        (0..3).map(|n| Some(start(dir.path(), &peers, n))).collect();
    let client = RemotingClient::new(ClientConfig::default(), None);
    let first = agreed_leader(&client, &addrs).await;
    take_ids(&client, &addrs, &first).await;

    let killed: usize = first[1..].parse().unwrap();
    let mut process = processes[killed].take().unwrap();
    process.0.kill().unwrap();
    let _ = process.0.wait();
    let survivors: Vec<_> = addrs.iter().filter(|(n, _)| *n != first).cloned().collect();
    let second = agreed_leader(&client, &survivors).await;
    assert_ne!(second, first, "a killed controller cannot lead");
    // The id the old leader handed out was replicated: the new one hands out the next.
    let second_addr = &addrs.iter().find(|(n, _)| *n == second).unwrap().1;
    assert_eq!(next_id(&client, second_addr).await, (response::SUCCESS, 2));

    // Back from its raft state file, which holds a snapshot, it follows the new leader.
    let state = std::fs::read(dir.path().join(format!("n{killed}")).join("raft-state")).unwrap();
    let persisted = petrel_core::controller::node::Persisted::decode(&state).unwrap();
    assert!(persisted.snapshot.get_metadata().index > 0, "{persisted:?}");
    let (_, replicas) = persisted.replayed().unwrap();
    assert_eq!(replicas.next_broker_id("g"), 2, "the id handed out is on its disk");
    processes[killed] = Some(start(dir.path(), &peers, killed));
    client.close(&addrs[killed].1);
    assert_eq!(agreed_leader(&client, &addrs).await, second);
}

/// `petrel namesrv` with `enableControllerInNamesrv=true`: a NameServer and a one-member
/// controller group in one process, each on its own port; the controller leads and hands out
/// ids, the NameServer answers as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namesrv_runs_an_embedded_controller() {
    let dir = tempfile::tempdir().unwrap();
    let controller = format!("127.0.0.1:{}", free_port());
    let conf = dir.path().join("namesrv.conf");
    let text = format!(
        "enableControllerInNamesrv=true\ncontrollerDLegerGroup=TestGroup\n\
         controllerDLegerPeers=n0-{controller}\ncontrollerDLegerSelfId=n0\n\
         controllerStorePath={}\ntickInterval=50\n",
        dir.path().join("controller").display()
    );
    std::fs::write(&conf, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["namesrv", "--listen-port", "0", "-c"])
        .arg(&conf)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let namesrv = lines.next().unwrap().unwrap();
    let namesrv = namesrv.strip_prefix("namesrv listening on ").unwrap().to_owned();
    let announced = lines.next().unwrap().unwrap();
    assert_eq!(announced, format!("controller listening on {controller}"));
    let _process = Killed(child);
    let client = RemotingClient::new(ClientConfig::default(), None);
    let addrs = [("n0".to_owned(), controller.clone())];
    assert_eq!(agreed_leader(&client, &addrs).await, "n0");
    assert_eq!(next_id(&client, &controller).await, (response::SUCCESS, 1));
    let ask = RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER);
    let reply = client.invoke(&namesrv, ask, Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
}
