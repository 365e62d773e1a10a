//! In-process NameServer and brokers on loopback, each broker on its own temporary store.
#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use petrel::broker::{self, BrokerConfig, BrokerHandle};
use petrel::namesrv::{self, NamesrvConfig, NamesrvHandle};
use petrel_storage::disk::FsDisk;

pub struct Running {
    handle: Option<BrokerHandle>,
    pub addr: String,
    /// Where metrics are served, when the test enabled them.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub ha_addr: String,
    _dir: tempfile::TempDir,
}

impl Running {
    /// A broker on a kernel-picked port, registered with `namesrv` when given.
    pub async fn start(
        namesrv: Option<&str>,
        configure: impl FnOnce(&mut BrokerConfig),
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut config = loopback_config(namesrv, dir.path());
        config.store.commit_log_file_bytes = 16 << 20;
        configure(&mut config);
        let name = config.broker_name.clone();
        let handle = broker::start(config, Arc::new(FsDisk)).await.unwrap();
        let addr = handle.state.addr().to_owned();
        let ha_addr = handle.state.ha_addr().to_owned();
        let metrics_addr = handle.metrics_addr;
        if let Some(namesrv) = namesrv {
            wait_routed(namesrv, &name).await;
        }
        Running { handle: Some(handle), addr, metrics_addr, ha_addr, _dir: dir }
    }

    /// The offset after the last message of `(topic, queue_id)`, 0 for a queue not made.
    pub fn queue_end(&self, topic: &str, queue_id: i32) -> u64 {
        let state = &self.handle.as_ref().unwrap().state;
        state.store().queue_offsets(topic, queue_id).map_or(0, |(_, end)| end)
    }

    pub async fn stop(mut self) {
        self.handle.take().unwrap().shutdown().await.unwrap();
    }

    /// Waits, for up to 10 s, until `count` messages of `topic` are in its consume queues: a
    /// send is answered before its message is dispatched to them.
    pub async fn wait_dispatched(&self, topic: &str, count: u64) {
        wait_dispatched(self.handle.as_ref().unwrap(), topic, count).await;
    }
}

/// Waits, for up to 10 s, until `count` messages of `topic` are in `broker`'s consume queues.
pub async fn wait_dispatched(broker: &BrokerHandle, topic: &str, count: u64) {
    let state = &broker.state;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let queues = state.topic(topic).map_or(0, |config| config.read_queue_nums);
        let ends = (0..queues).filter_map(|id| state.store().queue_offsets(topic, id));
        let dispatched: u64 = ends.map(|(_, end)| end).sum();
        if dispatched >= count {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{dispatched} of {count} dispatched");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A broker on a kernel-picked loopback port with its store at `root`, registered with
/// `namesrv` when given; RocketMQ's defaults otherwise.
pub fn loopback_config(namesrv: Option<&str>, root: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig {
        listen_port: 0,
        bind_address: "127.0.0.1".into(),
        broker_ip: Some("127.0.0.1".into()),
        namesrv_addrs: namesrv.map(|a| vec![a.to_owned()]).unwrap_or_default(),
        ..BrokerConfig::default()
    };
    config.store.root = root.to_path_buf();
    // These brokers test other things than cleanup: a host disk filled past RocketMQ's
    // ratios (75 % expired files, 85 % any files, 90 % no writes) must not change them.
    config.store.disk_max_used_ratio = 100;
    config.store.disk_clean_forcibly_ratio = 100;
    config.store.disk_warning_ratio = 100;
    config
}

/// A producer with default settings that finds its routes at `namesrv`.
pub fn producer(namesrv: &str) -> petrel_client::Producer {
    let config = petrel_client::ProducerConfig {
        namesrv_addrs: vec![namesrv.to_owned()],
        ..petrel_client::ProducerConfig::default()
    };
    petrel_client::Producer::start(config).unwrap()
}

/// A NameServer on a kernel-picked port.
pub async fn namesrv() -> (NamesrvHandle, String) {
    let config = NamesrvConfig {
        listen_port: 0,
        bind_address: "127.0.0.1".into(),
        ..NamesrvConfig::default()
    };
    let handle = namesrv::start(config, Arc::new(FsDisk)).await.unwrap();
    let addr = format!("127.0.0.1:{}", handle.local_addr.port());
    (handle, addr)
}

/// Waits until the NameServer routes the topic every broker has under its own name to broker
/// `name`: registration runs in the background, and a client that asks before it lands finds
/// no route.
pub async fn wait_routed(namesrv: &str, name: &str) {
    use petrel_net::codec::codes::{request, response};
    use petrel_net::codec::RemotingCommand;
    use petrel_net::headers::namesrv::GetRouteInfoRequestHeader;
    let client = petrel_net::transport::RemotingClient::new(Default::default(), None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let header =
            GetRouteInfoRequestHeader { topic: name.into(), accept_standard_json_only: Some(true) };
        let ask = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
        let reply = client.invoke(namesrv, ask, std::time::Duration::from_secs(3)).await.unwrap();
        if reply.code == response::SUCCESS && String::from_utf8_lossy(&reply.body).contains(name) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "broker {name} never registered");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Every message of a queue, from offset 0: (queue offset, message id).
pub async fn drain(
    client: &petrel_net::transport::RemotingClient,
    broker: &str,
    topic: &str,
    queue: i32,
) -> Vec<(i64, u64)> {
    use petrel_net::codec::codes::response;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let pulled = petrel_client::raw::pull(
            client,
            broker,
            "DrainGroup",
            topic,
            queue,
            offset,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
        match pulled.code {
            response::SUCCESS => {
                out.extend(pulled.messages.iter().map(|m| (m.queue_offset, m.id)));
                offset = pulled.next_begin_offset;
            }
            response::PULL_NOT_FOUND => return out,
            other => panic!("pull of {topic}/{queue} at {offset} answered {other}"),
        }
    }
}

/// Starts `petrel` with `args` and the environment `env` (logs at `warn`), and returns it with
/// the first line it prints (where it listens).
pub fn petrel(args: &[&str], env: &[(&str, &str)]) -> (Killed, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Killed(child), line)
}

/// A `petrel` child process, killed when the test ends.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `petrel standalone` as a child process, killed when dropped.
pub struct Standalone {
    pub child: Child,
    pub namesrv: String,
    pub broker: String,
}

impl Standalone {
    /// Starts `petrel standalone` on kernel-picked ports and learns them from what it prints.
    pub fn start(data: &Path, conf: Option<&Path>) -> Standalone {
        let mut command = Command::new(env!("CARGO_BIN_EXE_petrel"));
        command.args(["standalone", "--namesrv-port", "0", "--broker-port", "0", "--data-dir"]);
        command.arg(data);
        if let Some(conf) = conf {
            command.arg("-c").arg(conf);
        }
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("petrel binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut namesrv, mut broker) = (String::new(), String::new());
        loop {
            let line = lines.next().expect("standalone prints its addresses").unwrap();
            if line.starts_with("Clients:") {
                break;
            }
            if let Some(addr) = line.strip_prefix("NameServer:") {
                namesrv = addr.trim().to_owned();
            }
            if let Some(rest) = line.strip_prefix("Broker:") {
                broker = rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        Standalone { child, namesrv, broker }
    }

    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
