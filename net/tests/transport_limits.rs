//! The server's defences on real loopback sockets: idle connections closed, a peer trickling a
//! frame closed, connections bounded per source address, and a reserve of the budget that one
//! source filling the server cannot take (issue 22). Sources are distinct loopback addresses.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{
    ClientConfig, Connection, Handled, RemotingClient, RequestHandler, Server, ServerConfig,
    ServerHandle, RESERVE_SOURCE_HOLDS_MAX,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Answers at once, or a PULL_MESSAGE after 2 s, as a held pull is.
struct Answer;

const HOLD: Duration = Duration::from_secs(2);

impl RequestHandler for Answer {
    fn handle(&self, _conn: &Connection, request: RemotingCommand) -> Handled {
        if request.code != request::PULL_MESSAGE {
            return Handled::Now(RemotingCommand::response(response::SUCCESS, None));
        }
        Handled::Later(Box::pin(async {
            tokio::time::sleep(HOLD).await;
            RemotingCommand::response(response::SUCCESS, None)
        }))
    }
}

async fn serve(config: ServerConfig) -> (String, ServerHandle) {
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let handle = server.handle();
    tokio::spawn(server.serve(Arc::new(Answer), std::future::pending()));
    (addr, handle)
}

fn source(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
}

/// A raw socket to `addr` from loopback address 127.0.0.`host`.
async fn raw_from(addr: &str, host: u8) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source(host), 0)).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// A client connecting from 127.0.0.`host`.
fn client_from(host: u8) -> RemotingClient {
    RemotingClient::new(
        ClientConfig { local_address: Some(source(host)), ..ClientConfig::default() },
        None,
    )
}

async fn answered(client: &RemotingClient, addr: &str) -> bool {
    let ping = RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO);
    matches!(client.invoke(addr, ping, Duration::from_secs(2)).await, Ok(r) if r.code == response::SUCCESS)
}

/// Whether the server closes `stream` within `within` (end of stream or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the server sent bytes nobody asked for"),
        Err(_) => false,
    }
}

fn limits(idle: Option<u64>, frame: Option<u64>, max: usize, per_source: usize) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.connection.idle_timeout = idle.map(Duration::from_secs);
    config.connection.frame_read_timeout = frame.map(Duration::from_secs);
    config.connections_max = max;
    config.connections_per_source_max = per_source;
    config
}

#[tokio::test]
async fn idle_connections_close_and_busy_ones_stay() {
    let (addr, handle) = serve(limits(Some(1), None, 100, 100)).await;
    let mut idle = raw_from(&addr, 2).await;
    let busy = client_from(3);
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        assert!(answered(&busy, &addr).await, "a connection in use is kept");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(closed_within(&mut idle, Duration::from_millis(100)).await, "idle for 2.5 s of 1 s");
    assert_eq!(handle.connection_count(), 1, "only the busy connection is left");
}

#[tokio::test]
async fn a_connection_waiting_for_an_answer_is_not_idle() {
    let (addr, _handle) = serve(limits(Some(1), None, 100, 100)).await;
    let client = client_from(2);
    let held = RemotingCommand::request(request::PULL_MESSAGE);
    let reply = client.invoke(&addr, held, HOLD * 2).await.unwrap();
    assert_eq!(reply.code, response::SUCCESS, "answered after {HOLD:?} of silence");
}

#[tokio::test]
async fn a_peer_trickling_a_frame_is_closed_and_others_are_served() {
    let (addr, _handle) = serve(limits(None, Some(1), 100, 100)).await;
    let mut slow = raw_from(&addr, 2).await;
    let other = client_from(3);
    let frame = RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO).encode_frame().unwrap();
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    // One byte every 100 ms: each read is progress, but the frame is never whole in time.
    while sent < frame.len() {
        if slow.write_all(&frame[sent..=sent]).await.is_err() {
            break;
        }
        sent += 1;
        assert!(answered(&other, &addr).await, "another connection is served meanwhile");
        if closed_within(&mut slow, Duration::from_millis(100)).await {
            break;
        }
    }
    let took = started.elapsed();
    assert!(sent < frame.len(), "closed before the frame was whole ({sent} bytes)");
    assert!(took >= Duration::from_millis(900), "not before its second was up: {took:?}");
}

#[tokio::test]
async fn one_source_cannot_take_more_than_its_share() {
    let (addr, handle) = serve(limits(None, None, 100, 3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let client = client_from(2);
        assert!(answered(&client, &addr).await);
        held.push(client);
    }
    let mut fourth = raw_from(&addr, 2).await;
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await, "over the per-source limit");
    let other = client_from(3);
    assert!(answered(&other, &addr).await, "another source is served");
    held.pop().unwrap().shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = client_from(2);
    assert!(answered(&again, &addr).await, "a freed slot is given again");
    assert_eq!(handle.connection_count(), 4, "two held, the other source's, the new one");
}

#[tokio::test]
async fn a_reserve_keeps_room_for_sources_with_few_connections() {
    // 40 in all, 4 of them kept for sources holding fewer than RESERVE_SOURCE_HOLDS_MAX.
    const { assert!(2 < RESERVE_SOURCE_HOLDS_MAX) };
    let (addr, handle) = serve(limits(None, None, 40, 40)).await;
    let mut flood = Vec::new();
    for _ in 0..40 {
        let mut stream = raw_from(&addr, 2).await;
        if closed_within(&mut stream, Duration::from_millis(50)).await {
            continue;
        }
        flood.push(stream);
    }
    assert_eq!(flood.len(), 36, "one source stops at the reserve");
    // Two sources with two connections each: fewer than RESERVE_SOURCE_HOLDS_MAX.
    let mut small = Vec::new();
    for host in [3, 3, 4, 4] {
        let client = client_from(host);
        assert!(answered(&client, &addr).await, "a client from 127.0.0.{host} gets in");
        small.push(client);
    }
    assert_eq!(handle.connection_count(), 40);
    let mut over = raw_from(&addr, 7).await;
    assert!(closed_within(&mut over, Duration::from_secs(2)).await, "the whole budget is used");
}
