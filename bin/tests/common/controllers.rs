//! Three controllers in this process on loopback, and asking whichever leads.
#![allow(dead_code)] // Each test file uses a different part.

use std::sync::Arc;
use std::time::{Duration, Instant};

use petrel::controller::{self, ControllerConfig, ControllerHandle};
use petrel_core::controller::body::SyncStateSet;
use petrel_core::controller::code;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader};
use petrel_net::transport::RemotingClient;
use petrel_storage::disk::FsDisk;

/// A loopback port free now, for an address a test must name before anything binds it (a
/// controller's peers). Taken below the kernel's ephemeral range (32768 and up), from a block
/// of this process's own, so that no port the kernel hands out meanwhile (another test's
/// `bind(0)`, an outgoing connection) can take it before the controller binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = 20_000 + (std::process::id() % 120) as u16 * 100;
    for _ in 0..100 {
        let port = block + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {block}..{}", block + 100);
}

/// `n` controller peers on free loopback ports: (raft name, address).
pub fn peers(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("n{i}"), format!("127.0.0.1:{}", free_port()))).collect()
}

/// Controller `n` of `peers`, its raft state under `dir`, ticking every 20 ms and scanning for
/// silent brokers every 100 ms.
pub async fn start(
    dir: &std::path::Path,
    peers: &[(String, String)],
    n: usize,
) -> ControllerHandle {
    let config = ControllerConfig {
        group: "TestGroup".into(),
        peers: peers.to_vec(),
        self_id: format!("n{n}"),
        store_path: dir.join(format!("n{n}")),
        tick_ms: 20,
        scan_not_active_broker_ms: 100,
        ..ControllerConfig::default()
    };
    controller::start(config, Arc::new(FsDisk)).await.unwrap()
}

/// Every controller of `peers`, their raft state under `dir`, and their addresses.
pub async fn start_all(
    dir: &std::path::Path,
    peers: &[(String, String)],
) -> (Vec<ControllerHandle>, Vec<String>) {
    let mut handles = Vec::new();
    for n in 0..peers.len() {
        handles.push(start(dir, peers, n).await);
    }
    (handles, peers.iter().map(|(_, addr)| addr.clone()).collect())
}

/// Sends to each controller in turn until one that leads answers (up to 10 s).
pub async fn leader_call<H: petrel_net::codec::header::CommandHeader>(
    client: &RemotingClient,
    controllers: &[String],
    code: i32,
    header: &H,
) -> RemotingCommand {
    leader_call_with_body(client, controllers, RemotingCommand::request(code).with_header(header))
        .await
}

pub async fn leader_call_with_body(
    client: &RemotingClient,
    controllers: &[String],
    request: RemotingCommand,
) -> RemotingCommand {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for addr in controllers {
            let ask = request.clone();
            if let Ok(reply) = client.invoke(addr, ask, Duration::from_secs(3)).await {
                if reply.code != code::NOT_LEADER {
                    return reply;
                }
            }
        }
        assert!(Instant::now() < deadline, "no controller leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Group `group`'s master, master epoch and sync-state set, from the leader.
pub async fn replica_info(
    client: &RemotingClient,
    controllers: &[String],
    group: &str,
) -> (Option<i64>, i32, SyncStateSet) {
    let ask = GetReplicaInfoRequestHeader { broker_name: group.into() };
    let reply = leader_call(client, controllers, request::CONTROLLER_GET_REPLICA_INFO, &ask).await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let header: GetReplicaInfoResponseHeader = reply.header().unwrap();
    let set: SyncStateSet = from_json(reply.body_bytes().as_ref()).unwrap();
    (header.master_broker_id, header.master_epoch.unwrap(), set)
}
