//! `petrel bench replication`: what a slave costs a master's producers, and how fast an empty
//! slave catches up, each as a ratio to a baseline measured in the same run.
//!
//! Sends: SEND_MESSAGE_V2 over raw connections, one request in flight on each (the `send`
//! bench's client), against three broker groups this bench starts as `petrel` processes with
//! one NameServer: a master alone, an ASYNC_MASTER with its slave, a SYNC_MASTER with its
//! slave, and a group of three in controller mode with `allAckInSyncStateSet` (three
//! `petrel controller` processes elect its master; the sends wait until both slaves are in
//! its sync-state set), all ASYNC_FLUSH on this disk. Each line gives sends/s and latency,
//! and its sends/s over the lone master's with as many connections.
//!
//! Catch-up: a master alone is filled with `catch_up_bytes` of commit log (one file holds it,
//! so an empty slave copies it all: RocketMQ starts an empty slave at the newest file), then a
//! slave starts empty; the time from its start until its commit log ends where the master's
//! does gives its rate, against this disk's sequential-write ceiling measured in the same run
//! (the same bytes written to a fresh file in `haTransferBatchSize` pwrites and synced: the
//! slave's flusher syncs its log every 500 ms as it goes). Each starts with no dirty page
//! (`sync` first).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use petrel_net::transport::{ClientConfig, RemotingClient};

use super::send::{load, send_frame, spawn, Spawned};
use super::{runtime_counter, Summary};

/// What to run.
#[derive(Debug, Clone)]
pub struct ReplicationBench {
    pub connections: Vec<usize>,
    pub message_bytes: usize,
    pub seconds: f64,
    /// Commit-log bytes an empty slave copies in the catch-up measurement; 0 skips it.
    pub catch_up_bytes: u64,
    /// Scratch directory for the brokers' data; deleted before and after.
    pub dir: PathBuf,
}

/// One measured line of sends.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicationLine {
    pub group: String,
    pub connections: usize,
    pub summary: Summary,
    /// Sends per second over the lone master's with as many connections.
    pub ratio_of_alone: f64,
}

/// The catch-up measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CatchUp {
    pub bytes: u64,
    pub seconds: f64,
    pub megabytes_per_second: f64,
    /// Measured before and after the copy.
    pub ceiling_megabytes_per_second: [f64; 2],
    /// Over the mean of the two.
    pub ratio_of_ceiling: f64,
}

/// The whole report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicationReport {
    pub message_bytes: usize,
    pub lines: Vec<ReplicationLine>,
    pub catch_up: Option<CatchUp>,
}

impl ReplicationReport {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string_pretty(self).expect("a report always serializes");
        }
        let mut out = format!(
            "SEND_MESSAGE_V2, {} B bodies, one request in flight per connection, ASYNC_FLUSH\n\
             {:<24} {:>5} {:>10} {:>9} {:>9} {:>8} {:>8}\n",
            self.message_bytes,
            "group",
            "conns",
            "sends/s",
            "p50 us",
            "p99 us",
            "failed",
            "x alone"
        );
        for line in &self.lines {
            out.push_str(&format!(
                "{:<24} {:>5} {:>10.0} {:>9} {:>9} {:>8} {:>8.2}\n",
                line.group,
                line.connections,
                line.summary.requests_per_second,
                line.summary.latency_p50_us,
                line.summary.latency_p99_us,
                line.summary.failures,
                line.ratio_of_alone,
            ));
        }
        if let Some(c) = &self.catch_up {
            out.push_str(&format!(
                "catch-up of an empty slave: {:.2} GiB in {:.2} s, {:.0} MB/s = {:.2} x this \
                 disk's sequential-write ceiling ({:.0} MB/s before, {:.0} MB/s after)\n",
                c.bytes as f64 / f64::from(1u32 << 30),
                c.seconds,
                c.megabytes_per_second,
                c.ratio_of_ceiling,
                c.ceiling_megabytes_per_second[0],
                c.ceiling_megabytes_per_second[1],
            ));
        }
        out
    }
}

/// A broker process this bench started, and where clients reach it.
struct Started {
    _process: Spawned,
    addr: String,
}

/// Starts `petrel broker` as `role` of group `group`, registered with `namesrv`.
fn start_broker(
    dir: &Path,
    namesrv: &str,
    group: &str,
    role: &str,
    extra: &str,
) -> Result<Started, String> {
    let id = u8::from(role == "SLAVE");
    let name = format!("{group}-{}", role.to_lowercase());
    start_named(dir, namesrv, group, &name, &format!("brokerRole={role}\nbrokerId={id}\n{extra}"))
}

/// Starts `petrel broker` named `name` (its config file and store) of group `group`, with the
/// properties `extra` besides the addresses.
fn start_named(
    dir: &Path,
    namesrv: &str,
    group: &str,
    name: &str,
    extra: &str,
) -> Result<Started, String> {
    let conf = dir.join(format!("{name}.conf"));
    let text = format!(
        "brokerName={group}\nbrokerIP1=127.0.0.1\nbindAddress=127.0.0.1\n\
         namesrvAddr={namesrv}\nstorePathRootDir={}\n{extra}",
        dir.join(name).display()
    );
    std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
    let (process, addr) =
        spawn(&["broker", "--listen-port", "0"], "broker listening on", Some(&conf))?;
    Ok(Started { _process: process, addr })
}

/// Three controllers and a group of three brokers in controller mode, all acks required.
struct AutoSwitch {
    _controllers: Vec<Spawned>,
    _brokers: Vec<Started>,
    master: String,
}

/// Starts the controllers and the group, and waits until its master has both slaves in its
/// sync-state set.
async fn start_auto_switch(dir: &Path, namesrv: &str) -> Result<AutoSwitch, String> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers: Vec<String> = (addrs.iter().enumerate()).map(|(n, a)| format!("n{n}-{a}")).collect();
    let mut controllers = Vec::new();
    for n in 0..3 {
        let conf = dir.join(format!("controller-{n}.conf"));
        let text = format!(
            "controllerDLegerPeers={}\ncontrollerDLegerSelfId=n{n}\ncontrollerStorePath={}\n",
            peers.join(";"),
            dir.join(format!("controller-{n}")).display()
        );
        std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
        controllers.push(spawn(&["controller"], "controller listening on", Some(&conf))?.0);
    }
    let extra = format!(
        "enableControllerMode=true\ncontrollerAddr={}\nallAckInSyncStateSet=true\n",
        addrs.join(";")
    );
    let brokers: Vec<Started> = (0..3)
        .map(|n| start_named(dir, namesrv, "auto", &format!("auto-{n}"), &extra))
        .collect::<Result<_, _>>()?;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(master) = master_with_full_set(&client, &addrs).await {
            return Ok(AutoSwitch { _controllers: controllers, _brokers: brokers, master });
        }
        if Instant::now() > deadline {
            return Err("the controller-mode group had no master with all three in its set \
                        within 60 s"
                .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The group's master, once its sync-state set holds all three brokers.
async fn master_with_full_set(client: &RemotingClient, controllers: &[String]) -> Option<String> {
    use petrel_core::controller::body::SyncStateSet;
    use petrel_net::headers::controller::{
        GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader,
    };
    let header = GetReplicaInfoRequestHeader { broker_name: "auto".into() };
    for addr in controllers {
        let code = petrel_net::codec::codes::request::CONTROLLER_GET_REPLICA_INFO;
        let ask = petrel_net::codec::RemotingCommand::request(code).with_header(&header);
        let Ok(reply) = client.invoke(addr, ask, Duration::from_secs(2)).await else { continue };
        let Ok(answer) = reply.header::<GetReplicaInfoResponseHeader>() else { continue };
        let set: SyncStateSet = petrel_net::codec::json::from_json(&reply.body).ok()?;
        if set.sync_state_set.len() == 3 {
            return answer.master_address;
        }
    }
    None
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Sends until one is answered SUCCESS: the topic exists and, for a SYNC_MASTER, a slave is
/// connected.
fn ready(addr: &str, frame: &Bytes) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = load(addr, 1, frame, 0.2)?;
        if probe.requests > 0 && probe.failures == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{addr} answered no send SUCCESS within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub async fn run(bench: ReplicationBench) -> Result<ReplicationReport, String> {
    let _ = std::fs::remove_dir_all(&bench.dir);
    std::fs::create_dir_all(&bench.dir).map_err(|e| e.to_string())?;
    let (_namesrv, namesrv) =
        spawn(&["namesrv", "--listen-port", "0"], "namesrv listening on", None)?;
    let frame = send_frame(bench.message_bytes);
    let dir = &bench.dir;
    let alone = start_broker(dir, &namesrv, "alone", "ASYNC_MASTER", "")?;
    let async_master = start_broker(dir, &namesrv, "async", "ASYNC_MASTER", "")?;
    let async_slave = start_broker(dir, &namesrv, "async", "SLAVE", "")?;
    let sync_master = start_broker(dir, &namesrv, "sync", "SYNC_MASTER", "")?;
    let sync_slave = start_broker(dir, &namesrv, "sync", "SLAVE", "")?;
    let auto_switch = start_auto_switch(dir, &namesrv).await?;
    let groups = [
        ("master alone", &alone.addr),
        ("ASYNC_MASTER + slave", &async_master.addr),
        ("SYNC_MASTER + slave", &sync_master.addr),
        ("allAck set of 3", &auto_switch.master),
    ];
    for (_, addr) in &groups {
        ready(addr, &frame)?;
    }
    let mut lines = Vec::new();
    for &connections in &bench.connections {
        let mut base = None;
        for (group, addr) in &groups {
            let summary = load(addr, connections, &frame, bench.seconds)?;
            let base_rate = *base.get_or_insert(summary.requests_per_second);
            lines.push(ReplicationLine {
                group: (*group).to_owned(),
                connections,
                ratio_of_alone: summary.requests_per_second / base_rate.max(1.0),
                summary,
            });
        }
    }
    // Slaves first, so that none outlives its master.
    drop((async_slave, sync_slave));
    drop((alone, async_master, sync_master, auto_switch));
    let catch_up = match bench.catch_up_bytes {
        0 => None,
        bytes => Some(catch_up(dir, &namesrv, bytes).await?),
    };
    let _ = std::fs::remove_dir_all(&bench.dir);
    Ok(ReplicationReport { message_bytes: bench.message_bytes, lines, catch_up })
}

/// Fills a lone master with `bytes` of log in one file, then times an empty slave's copy.
async fn catch_up(dir: &Path, namesrv: &str, bytes: u64) -> Result<CatchUp, String> {
    let client = RemotingClient::new(ClientConfig::default(), None);
    // One file holds the whole log, with room for the last sends' overshoot.
    let file_bytes = (bytes * 2).max(256 << 20).next_multiple_of(1 << 20);
    let extra = format!("mappedFileSizeCommitLog={file_bytes}\n");
    let master = start_broker(dir, namesrv, "catchup", "ASYNC_MASTER", &extra)?;
    let fill = send_frame(64 << 10);
    ready(&master.addr, &fill)?;
    let end = loop {
        let end = runtime_counter(&client, &master.addr, "commitLogMaxOffset").await?;
        if end >= bytes {
            break end;
        }
        load(&master.addr, 4, &fill, 0.5)?;
    };
    if end >= file_bytes {
        return Err(format!(
            "the fill overran the master's one file ({end} of {file_bytes} bytes)"
        ));
    }
    // Both measurements start from a page cache with nothing dirty: the fill's bytes on disk.
    while runtime_counter(&client, &master.addr, "remainHowManyDataToFlush").await? > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    write_back()?;
    // The ceiling before and after the slave's copy: this disk's rate wanders.
    let chunk = petrel_core::ha::TRANSFER_BATCH_DEFAULT_BYTES;
    let ceiling = || {
        let rate = sequential_write_rate(dir, end, chunk).map_err(|e| format!("disk ceiling: {e}"));
        write_back()?;
        rate
    };
    let before = ceiling()?;
    let started = Instant::now();
    let slave = start_broker(dir, namesrv, "catchup", "SLAVE", &extra)?;
    loop {
        let copied = runtime_counter(&client, &slave.addr, "commitLogMaxOffset").await;
        if copied.is_ok_and(|copied| copied >= end) {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("the slave did not copy {end} bytes within 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let first = runtime_counter(&client, &slave.addr, "commitLogMinOffset").await?;
    client.shutdown();
    drop(slave);
    drop(master);
    write_back()?;
    let after = ceiling()?;
    let copied = end - first;
    let rate = copied as f64 / seconds;
    let mean = (before + after) / 2.0;
    Ok(CatchUp {
        bytes: copied,
        seconds,
        megabytes_per_second: rate / 1e6,
        ceiling_megabytes_per_second: [before / 1e6, after / 1e6],
        ratio_of_ceiling: rate / mean,
    })
}

/// Has the kernel write every dirty page back (`sync`), so that what one measurement wrote
/// does not slow the next.
fn write_back() -> Result<(), String> {
    let status = std::process::Command::new("sync").status().map_err(|e| format!("sync: {e}"))?;
    status.success().then_some(()).ok_or_else(|| format!("sync exited with {status}"))
}

/// Bytes per second writing `bytes` to a fresh file in `chunk`-byte pwrites and syncing it
/// once at the end: the disk's sustained sequential-write rate. (Unsynced, the writes would
/// run at memory speed only while nothing else syncs: on ext4 any fsync on the file system,
/// a broker's flusher's included, writes every dirty page back first.)
fn sequential_write_rate(dir: &Path, bytes: u64, chunk: u32) -> std::io::Result<f64> {
    let path = dir.join("sequential-ceiling");
    let file = std::fs::File::create(&path)?;
    let data = vec![b'c'; chunk as usize];
    let started = Instant::now();
    let mut offset = 0u64;
    while offset < bytes {
        file.write_all_at(&data, offset)?;
        offset += u64::from(chunk);
    }
    file.sync_data()?;
    let rate = offset as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}
