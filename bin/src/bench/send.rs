//! `petrel bench send`: SEND_MESSAGE_V2 over raw connections, one request in flight on each,
//! against this machine's transport floor and against Petrel brokers, in one run with one
//! client, so every send figure is a ratio to the floor.
//!
//! The floor is `petrel bench floor-server`: it reads each frame and answers it with a fixed
//! SUCCESS response shaped like a broker's send answer, doing nothing else. What it measures is
//! loopback, the kernel and this client; a broker can only come near it. It is measured built
//! three ways (`FloorKind`): from blocking threads, the floor every ratio is taken to; from
//! an event loop with no decoding, the least any tokio server pays here; and as Petrel's own
//! transport answering at once, which each broker line is also a ratio to. The brokers are
//! `petrel standalone` processes the bench starts (one per flush type, on scratch data),
//! counting their allocations (`PETREL_COUNT_ALLOCATIONS=1`), so the report also gives the
//! broker's allocations per send. For SYNC_FLUSH it also measures this disk's group-commit
//! ceiling (pwrites of one record with an fdatasync per `connections` records, the store
//! bench's pattern) and gives the ratio to it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::{decode_frame, RemotingCommand};
use petrel_net::headers::broker::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::FlushDiskType;

use super::{latency_histogram, runtime_counter, Summary};
use crate::broker::config::flush_name;

/// What to run.
#[derive(Debug, Clone)]
pub struct SendBench {
    /// Connection counts to measure, each with one request in flight.
    pub connections: Vec<usize>,
    pub message_bytes: usize,
    pub seconds: f64,
    /// The brokers to start, one per flush type.
    pub flush: Vec<FlushDiskType>,
    /// Measure this running broker instead of starting any (a profiler attached to it, say).
    pub broker: Option<String>,
    /// Scratch directory for the brokers' data and the disk ceiling; deleted after.
    pub dir: PathBuf,
}

/// One measured line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendLine {
    pub target: String,
    pub connections: usize,
    pub summary: Summary,
    /// Sends per second over the floor's with as many connections.
    pub ratio_of_floor: f64,
    /// p50 over the floor's p50 with as many connections.
    pub p50_over_floor: f64,
    /// For a broker: sends per second over Petrel's transport floor's with as many
    /// connections (how much of what its own transport allows the broker reaches).
    pub ratio_of_transport: Option<f64>,
    /// The broker's allocations per send (the whole process, NameServer included).
    pub allocations_per_send: Option<f64>,
    /// For SYNC_FLUSH: sends per second over the group-commit ceiling of as many writers.
    pub ratio_of_ceiling: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendReport {
    pub message_bytes: usize,
    pub lines: Vec<SendLine>,
}

impl SendReport {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string_pretty(self).expect("a report always serializes");
        }
        let mut out = format!(
            "SEND_MESSAGE_V2, {} B bodies, JSON header, one request in flight per connection\n\
             {:<22} {:>5} {:>10} {:>9} {:>9} {:>8} {:>9} {:>11} {:>10} {:>9}\n",
            self.message_bytes,
            "target",
            "conns",
            "sends/s",
            "p50 us",
            "p99 us",
            "x floor",
            "p50/floor",
            "x transport",
            "allocs/send",
            "x ceiling"
        );
        for line in &self.lines {
            let or_dash = |v: Option<f64>, digits: usize| {
                v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
            };
            out.push_str(&format!(
                "{:<22} {:>5} {:>10.0} {:>9} {:>9} {:>8.2} {:>9.2} {:>11} {:>10} {:>9}\n",
                line.target,
                line.connections,
                line.summary.requests_per_second,
                line.summary.latency_p50_us,
                line.summary.latency_p99_us,
                line.ratio_of_floor,
                line.p50_over_floor,
                or_dash(line.ratio_of_transport, 2),
                or_dash(line.allocations_per_send, 1),
                or_dash(line.ratio_of_ceiling, 2),
            ));
        }
        out
    }
}

/// How a floor server is built: what a broker's answer can cost at the least, three ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorKind {
    /// Blocking sockets and a thread per connection, as a trivial native server: each answer
    /// costs a read and a write, and nothing else. The floor every ratio is taken to.
    Threads,
    /// One tokio task per connection that reads frames and writes the fixed answer, with no
    /// decoding: the least an event-loop server pays on this machine, where a reply's wake-up
    /// of the client costs more from a thread that keeps running than from one that blocks.
    EventLoop,
    /// Petrel's own transport (`petrel_net::transport::Server`) with a handler that answers at
    /// once: frame and header decoding, the response's encoding and the hop to the
    /// connection's writer, as the broker has them, without the broker's work.
    Transport,
}

impl FloorKind {
    pub const ALL: [FloorKind; 3] =
        [FloorKind::Threads, FloorKind::EventLoop, FloorKind::Transport];

    /// The `--kind` value, and the target's name in a report.
    pub fn name(self) -> &'static str {
        match self {
            FloorKind::Threads => "threads",
            FloorKind::EventLoop => "event-loop",
            FloorKind::Transport => "transport",
        }
    }
}

/// Runs the floor server of `kind` on 127.0.0.1:`port` (0: the kernel picks), calling
/// `listening` with its address once it accepts: answers every frame with a fixed response,
/// on every connection, until killed.
pub async fn floor_server(
    port: u16,
    kind: FloorKind,
    work: Duration,
    listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let addr = format!("127.0.0.1:{port}");
    let cannot = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    match kind {
        FloorKind::Threads => {
            let listener = std::net::TcpListener::bind(&addr).map_err(cannot)?;
            listening(listener.local_addr().map_err(|e| e.to_string())?);
            threads_floor(listener, work)
        }
        FloorKind::EventLoop => {
            let listener = petrel_net::transport::listen(&addr).await.map_err(cannot)?;
            listening(listener.local_addr().map_err(|e| e.to_string())?);
            event_loop_floor(listener, work).await
        }
        FloorKind::Transport => {
            use petrel_net::transport::{Server, ServerConfig};
            let server = Server::bind(&addr, ServerConfig::default()).await.map_err(cannot)?;
            listening(server.local_addr().map_err(|e| e.to_string())?);
            server.serve(std::sync::Arc::new(FixedAnswer(work)), std::future::pending()).await;
            Ok(())
        }
    }
}

/// The transport floor's handler: the fixed answer, at once, after the work asked for.
struct FixedAnswer(Duration);

impl petrel_net::transport::RequestHandler for FixedAnswer {
    fn handle(
        &self,
        _conn: &petrel_net::transport::Connection,
        _request: RemotingCommand,
    ) -> petrel_net::transport::Handled {
        busy_for(self.0);
        petrel_net::transport::Handled::Now(floor_response())
    }
}

/// Keeps this thread busy for `work`: a stand-in for what a server does with a request, to
/// see what each microsecond of it costs in answers per second.
fn busy_for(work: Duration) {
    if work.is_zero() {
        return;
    }
    let until = Instant::now() + work;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn threads_floor(listener: std::net::TcpListener, work: Duration) -> Result<(), String> {
    let answer = floor_response().encode_frame().map_err(|e| e.to_string())?;
    for stream in listener.incoming() {
        let mut stream = stream.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        std::thread::spawn(move || {
            let mut frame = Vec::new();
            while read_frame(&mut stream, &mut frame).is_ok() {
                busy_for(work);
                if stream.write_all(&answer).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

async fn event_loop_floor(listener: tokio::net::TcpListener, work: Duration) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = floor_response().encode_frame().map_err(|e| e.to_string())?;
    loop {
        let (mut stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Some(length) = whole_frame_length(&buf) {
                    if length > petrel_net::codec::FRAME_BYTES_MAX_DEFAULT {
                        return;
                    }
                    if buf.len() < 4 + length {
                        break;
                    }
                    let _ = buf.split_to(4 + length);
                    busy_for(work);
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                }
                buf.reserve(16 * 1024);
            }
        });
    }
}

/// The length word of the frame at the start of `buf`, once it has arrived.
fn whole_frame_length(buf: &[u8]) -> Option<usize> {
    let word: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word) as usize)
}

/// A send's SUCCESS answer as a broker gives it: the fields a client reads back.
fn floor_response() -> RemotingCommand {
    let header = SendMessageResponseHeader {
        msg_id: "7F00000100002A9F0000000000000000".into(),
        queue_id: 0,
        queue_offset: 0,
        transaction_id: None,
        batch_uniq_id: None,
    };
    RemotingCommand::response(response::SUCCESS, None).with_header(&header)
}

/// Reads one length-prefixed frame into `frame` (length word included).
fn read_frame(stream: &mut std::net::TcpStream, frame: &mut Vec<u8>) -> std::io::Result<()> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let total = u32::from_be_bytes(length) as usize;
    if total > petrel_net::codec::FRAME_BYTES_MAX_DEFAULT {
        return Err(std::io::Error::other("frame too long"));
    }
    frame.clear();
    frame.extend_from_slice(&length);
    frame.resize(4 + total, 0);
    stream.read_exact(&mut frame[4..])
}

/// The request every connection sends: a SEND_MESSAGE_V2 with a JSON header, as RocketMQ's
/// Java client encodes one, to queue 0 of `BenchSend`.
pub(super) fn send_frame(message_bytes: usize) -> Bytes {
    let header = SendMessageRequestHeader {
        producer_group: "BenchSendGroup".into(),
        topic: "BenchSend".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 8,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some("KEYS\u{1}bench\u{2}UNIQ_KEY\u{1}7F00000100002A9F0000000000000000\u{2}WAIT\u{1}true\u{2}".into()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: None,
    };
    RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_header(&SendMessageRequestHeaderV2::from(header))
        .with_body(vec![b'p'; message_bytes])
        .encode_frame()
        .expect("a send request encodes")
}

/// `connections` connections to `addr`, each sending `frame` and waiting for its answer, for
/// `seconds`: a blocking socket and a thread each, as a native client with one request in
/// flight per connection. A non-SUCCESS answer counts as a failure.
pub(super) fn load(
    addr: &str,
    connections: usize,
    frame: &Bytes,
    seconds: f64,
) -> Result<Summary, String> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut streams = Vec::new();
    for _ in 0..connections {
        let stream = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        streams.push(stream);
    }
    let started = Instant::now();
    let threads: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let frame = frame.clone();
            std::thread::spawn(move || {
                let mut histogram = latency_histogram();
                let mut failures = 0u64;
                let mut answer = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    if stream.write_all(&frame).is_err()
                        || read_frame(&mut stream, &mut answer).is_err()
                    {
                        failures += 1;
                        break;
                    }
                    let mut buf = BytesMut::from(&answer[..]);
                    match decode_frame(&mut buf, petrel_net::codec::FRAME_BYTES_MAX_DEFAULT) {
                        Ok(Some(reply)) if reply.code == response::SUCCESS => {
                            let micros = sent.elapsed().as_micros() as u64;
                            let _ = histogram.record(micros.max(1));
                        }
                        _ => failures += 1,
                    }
                }
                (histogram, failures)
            })
        })
        .collect();
    let mut histogram = latency_histogram();
    let mut failures = 0;
    for thread in threads {
        let (part, failed) = thread.join().map_err(|_| "a load thread panicked")?;
        histogram.add(&part).map_err(|e| e.to_string())?;
        failures += failed;
    }
    Ok(Summary::new(&histogram, failures, started.elapsed()))
}

/// A child process of this binary, killed when dropped.
pub(super) struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this binary with `args` and returns it with the address from the first stdout line
/// that starts with `prefix`.
pub(super) fn spawn(
    args: &[&str],
    prefix: &str,
    conf: Option<&Path>,
) -> Result<(Spawned, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.args(args).env("RUST_LOG", "warn").env("PETREL_COUNT_ALLOCATIONS", "1");
    if let Some(conf) = conf {
        command.arg("-c").arg(conf);
    }
    let mut child = command.stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let child = Spawned(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(rest) = line.strip_prefix(prefix) {
            let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
            return Ok((child, addr));
        }
    }
    Err(format!("`petrel {}` exited before printing {prefix:?}", args.join(" ")))
}

/// A broker measured: its process when the bench started it, address and flush type.
struct Broker {
    _process: Option<Spawned>,
    addr: String,
    flush: FlushDiskType,
}

fn start_broker(dir: &Path, flush: FlushDiskType) -> Result<Broker, String> {
    let data = dir.join(flush_name(flush));
    let conf = dir.join(format!("{}.conf", flush_name(flush)));
    std::fs::write(&conf, format!("flushDiskType={}\n", flush_name(flush)))
        .map_err(|e| e.to_string())?;
    let data_arg = data.to_string_lossy().into_owned();
    let args = ["standalone", "--namesrv-port", "0", "--broker-port", "0", "--data-dir", &data_arg];
    let (process, addr) = spawn(&args, "Broker:", Some(&conf))?;
    Ok(Broker { _process: Some(process), addr, flush })
}

pub async fn run(bench: SendBench) -> Result<SendReport, String> {
    let _ = std::fs::remove_dir_all(&bench.dir);
    std::fs::create_dir_all(&bench.dir).map_err(|e| e.to_string())?;
    let frame = send_frame(bench.message_bytes);
    let mut floors = Vec::new();
    for kind in FloorKind::ALL {
        let args = ["bench", "floor-server", "--port", "0", "--kind", kind.name()];
        let (process, addr) = spawn(&args, "floor server listening on", None)?;
        floors.push((kind, process, addr));
    }
    let brokers: Vec<Broker> = match &bench.broker {
        // A running broker: its flush type is the first one named.
        Some(addr) => {
            let flush = bench.flush.first().copied().unwrap_or(FlushDiskType::AsyncFlush);
            vec![Broker { _process: None, addr: addr.clone(), flush }]
        }
        None => {
            bench.flush.iter().map(|f| start_broker(&bench.dir, *f)).collect::<Result<_, _>>()?
        }
    };
    let client = RemotingClient::new(ClientConfig::default(), None);
    for broker in &brokers {
        // The first send creates the topic; the measured ones find it.
        load(&broker.addr, 1, &frame, 0.2)?;
    }
    let mut ceilings = BTreeMap::new();
    let mut lines = Vec::new();
    for &connections in &bench.connections {
        let mut base = None;
        let mut transport = None;
        for (kind, _, addr) in &floors {
            let summary = load(addr, connections, &frame, bench.seconds)?;
            let base = base.get_or_insert_with(|| summary.clone());
            if *kind == FloorKind::Transport {
                transport = Some(summary.requests_per_second);
            }
            let target = format!("floor {}", kind.name());
            lines.push(line(target, connections, summary, base, None, None, None));
        }
        let (Some(base), Some(transport)) = (base, transport) else {
            return Err("no floor was measured".into());
        };
        for broker in &brokers {
            let before = runtime_counter(&client, &broker.addr, "allocations").await.ok();
            let summary = load(&broker.addr, connections, &frame, bench.seconds)?;
            let after = runtime_counter(&client, &broker.addr, "allocations").await.ok();
            let per_send = before
                .zip(after)
                .map(|(b, a)| a.saturating_sub(b) as f64 / summary.requests.max(1) as f64);
            let ceiling = match broker.flush {
                FlushDiskType::SyncFlush => Some(match ceilings.get(&connections) {
                    Some(c) => *c,
                    None => {
                        let record = frame.len() + 64;
                        let c =
                            super::store::ceiling(&bench.dir, record, connections, bench.seconds)
                                .map_err(|e| e.to_string())?;
                        ceilings.insert(connections, c);
                        c
                    }
                }),
                FlushDiskType::AsyncFlush => None,
            };
            let target = format!("petrel {}", flush_name(broker.flush));
            let of_transport = Some(summary.requests_per_second / transport.max(1.0));
            lines.push(line(target, connections, summary, &base, of_transport, per_send, ceiling));
        }
    }
    client.shutdown();
    drop(brokers);
    let _ = std::fs::remove_dir_all(&bench.dir);
    Ok(SendReport { message_bytes: bench.message_bytes, lines })
}

fn line(
    target: String,
    connections: usize,
    summary: Summary,
    floor: &Summary,
    ratio_of_transport: Option<f64>,
    allocations_per_send: Option<f64>,
    ceiling: Option<f64>,
) -> SendLine {
    SendLine {
        target,
        connections,
        ratio_of_floor: summary.requests_per_second / floor.requests_per_second.max(1.0),
        p50_over_floor: summary.latency_p50_us as f64 / floor.latency_p50_us.max(1) as f64,
        ratio_of_transport,
        allocations_per_send,
        ratio_of_ceiling: ceiling.map(|c| summary.requests_per_second / c),
        summary,
    }
}
