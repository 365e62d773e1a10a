//! `petrel bench`: Petrel measured over real sockets, one subcommand per measurement, each
//! with its options as a struct.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use petrel::bench::check_back::{self, CheckBackBench};
use petrel::bench::churn::{self, ChurnBench};
use petrel::bench::consume::{self, ConsumeBench, ConsumeKind};
use petrel::bench::filter::{self, FilterBench};
use petrel::bench::idle::{self, IdleBench};
use petrel::bench::producer::{self, Mode, ProducerBench};
use petrel::bench::replication::{self, ReplicationBench};
use petrel::bench::route::{self, RouteBench};
use petrel::bench::send::{self, FloorKind, SendBench};
use petrel::bench::store::{self, StoreBench};
use petrel::bench::timer::{self, TimerBench};
use petrel_storage::FlushDiskType;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// GET_ROUTEINFO_BY_TOPIC against a NameServer.
    Route(RouteArgs),
    /// Send TPS and latency through the Rust producer (RocketMQ's benchmark option letters).
    Producer(ProducerArgs),
    /// Sends/s while the broker checks many unresolved transactions, against sends/s before.
    CheckBack(CheckBackArgs),
    /// Timer messages sent and delivered per second with many pending, against plain sends.
    Timer(TimerArgs),
    /// Messages per second through a push consumer reading a topic from its start.
    Consumer(ConsumerArgs),
    /// Produce-to-consume latency at a fixed send rate.
    E2e(E2eArgs),
    /// A broker's resident memory with idle client connections and held pulls.
    Idle(IdleArgs),
    /// A broker's resident memory and a client's send latency while N connections stay idle
    /// and M rounds of connections open and close.
    Churn(ChurnArgs),
    /// The store's append throughput against this disk's ceiling, and its recovery time.
    Store(StoreArgs),
    /// SEND_MESSAGE_V2 through Petrel brokers it starts, as a ratio to the transport floor
    /// measured with the same client in the same run.
    Send(SendArgs),
    /// The transport floor: answers every frame with a fixed send response, nothing else, from
    /// threads, an event loop or Petrel's transport.
    FloorServer(FloorServerArgs),
    /// Sends to an ASYNC_MASTER and a SYNC_MASTER with their slaves against a lone master,
    /// and an empty slave's catch-up against this disk's sequential-write ceiling.
    Replication(ReplicationArgs),
    /// Reads one queue whole through TAG and SQL92 filters, against the unfiltered read.
    Filter(FilterArgs),
}

pub async fn run(which: BenchCommand) -> Result<(), String> {
    match which {
        BenchCommand::Route(args) => {
            let json = args.json;
            println!("{}", route::run(args.into()).await?.render(json));
        }
        BenchCommand::Producer(args) => {
            let json = args.json;
            let report = producer::run(args.into(), |line| eprintln!("{line}")).await?;
            println!("{}", report.render(json));
        }
        BenchCommand::CheckBack(args) => {
            let json = args.json;
            print!("{}", check_back::run(args.into()).await?.render(json));
        }
        BenchCommand::Timer(args) => {
            let json = args.json;
            print!("{}", timer::run(args.into()).await?.render(json));
        }
        BenchCommand::Consumer(args) if args.orderly || args.pop => {
            let json = args.json;
            let name = if args.pop { "pop" } else { "orderly" };
            let (push, other) = consume::run_against_push(args.into()).await?;
            let ratio = other.receive_tps / push.receive_tps.max(f64::MIN_POSITIVE);
            if json {
                let both = serde_json::json!({ "push": push, name: other, "ratio": ratio });
                println!("{both}");
            } else {
                println!("push    {}", push.render(false));
                println!("{name:<7} {}", other.render(false));
                println!("{name}/push receive tps ratio {ratio:.2}");
            }
        }
        BenchCommand::Consumer(args) => {
            let json = args.json;
            println!("{}", consume::run(args.into()).await?.render(json));
        }
        BenchCommand::E2e(args) => {
            let json = args.json;
            println!("{}", consume::run(args.into()).await?.render(json));
        }
        BenchCommand::Idle(args) => {
            let json = args.json;
            print!("{}", idle::run(args.into()).await?.render(json));
        }
        BenchCommand::Churn(args) => {
            let json = args.json;
            print!("{}", churn::run(args.into()).await?.render(json));
        }
        BenchCommand::Store(args) => {
            let json = args.json;
            print!("{}", store::run(args.into()).await?.render(json));
        }
        BenchCommand::Send(args) => {
            let json = args.json;
            print!("{}", send::run(args.into()).await?.render(json));
        }
        BenchCommand::Replication(args) => {
            let json = args.json;
            print!("{}", replication::run(args.into()).await?.render(json));
        }
        BenchCommand::Filter(args) => {
            let json = args.json;
            print!("{}", filter::run(args.into()).await?.render(json));
        }
        BenchCommand::FloorServer(args) => {
            let work = Duration::from_micros(args.work_us);
            send::floor_server(args.port, args.kind, work, |addr| {
                super::announce(&format!("floor server listening on {addr}"))
            })
            .await?;
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct RouteArgs {
    /// NameServer address.
    #[arg(short = 'n', long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    namesrv: String,
    /// Topic to ask for.
    #[arg(short = 't', long, default_value = "BenchmarkTest")]
    topic: String,
    /// Connections, each with one request in flight.
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Register a broker serving the topic first.
    #[arg(long)]
    register: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

impl From<RouteArgs> for RouteBench {
    fn from(args: RouteArgs) -> RouteBench {
        RouteBench {
            namesrv: args.namesrv,
            topic: args.topic,
            connections: args.connections,
            duration: Duration::from_secs(args.duration),
            register: args.register,
        }
    }
}

#[derive(Args)]
pub struct ProducerArgs {
    /// NameServer address.
    #[arg(short = 'n', long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    namesrv: String,
    /// Topic.
    #[arg(short = 't', long, default_value = "BenchmarkTest")]
    topic: String,
    /// Sending workers.
    #[arg(short = 'w', long, default_value_t = 64)]
    threads: usize,
    /// Message body size in bytes.
    #[arg(short = 's', long, default_value_t = 128)]
    size: usize,
    /// Give every message a key.
    #[arg(short = 'k', long)]
    keys: bool,
    /// Tag count: messages get tags tag0 .. tagN-1 (0: no tags).
    #[arg(short = 'l', long, default_value_t = 0)]
    tags: usize,
    /// Send asynchronously (64 in flight per worker).
    #[arg(short = 'y', long = "async")]
    async_send: bool,
    /// Send oneway (no answers).
    #[arg(long)]
    oneway: bool,
    /// Send transaction messages, each committed by its local transaction.
    #[arg(long, conflicts_with_all = ["oneway", "async_send", "batch"])]
    transaction: bool,
    /// Messages per SEND_BATCH_MESSAGE.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 1)]
    report_interval: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

impl From<ProducerArgs> for ProducerBench {
    fn from(args: ProducerArgs) -> ProducerBench {
        let mode = match (args.transaction, args.oneway, args.async_send) {
            (true, _, _) => Mode::Transaction,
            (false, true, _) => Mode::Oneway,
            (false, false, true) => Mode::Async,
            (false, false, false) => Mode::Sync,
        };
        ProducerBench {
            namesrv: args.namesrv,
            topic: args.topic,
            threads: args.threads,
            message_bytes: args.size,
            keys: args.keys,
            tag_count: args.tags,
            mode,
            batch: args.batch,
            duration: Duration::from_secs(args.duration),
            report_interval: Duration::from_secs(args.report_interval.max(1)),
        }
    }
}

#[derive(Args)]
pub struct CheckBackArgs {
    #[arg(short = 'n', long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    namesrv: String,
    #[arg(short = 't', long, default_value = "BenchCheckBack")]
    topic: String,
    /// Unresolved transactions to leave for the broker to check.
    #[arg(long, default_value_t = 100_000)]
    half: u64,
    /// Send workers.
    #[arg(short = 'w', long, default_value_t = 16)]
    threads: usize,
    /// Body bytes.
    #[arg(short = 's', long, default_value_t = 128)]
    size: usize,
    /// Seconds of each send phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long)]
    json: bool,
}

impl From<CheckBackArgs> for CheckBackBench {
    fn from(args: CheckBackArgs) -> CheckBackBench {
        CheckBackBench {
            namesrv: args.namesrv,
            topic: args.topic,
            half: args.half,
            threads: args.threads,
            message_bytes: args.size,
            duration: Duration::from_secs(args.duration),
        }
    }
}

#[derive(Args)]
pub struct TimerArgs {
    #[arg(short = 'n', long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    namesrv: String,
    #[arg(short = 't', long, default_value = "BenchTimer")]
    topic: String,
    /// Timer messages to leave pending.
    #[arg(long, default_value_t = 1_000_000)]
    pending: u64,
    /// Send workers.
    #[arg(short = 'w', long, default_value_t = 16)]
    threads: usize,
    /// Body bytes.
    #[arg(short = 's', long, default_value_t = 128)]
    size: usize,
    /// Seconds of the plain send phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds from each timer message's send to its time (longer than the fill).
    #[arg(long, default_value_t = 90)]
    delay: u64,
    /// The broker's process id, to read its resident memory from /proc.
    #[arg(long)]
    broker_pid: Option<u32>,
    #[arg(long)]
    json: bool,
}

impl From<TimerArgs> for TimerBench {
    fn from(args: TimerArgs) -> TimerBench {
        TimerBench {
            namesrv: args.namesrv,
            topic: args.topic,
            pending: args.pending,
            threads: args.threads,
            message_bytes: args.size,
            duration: Duration::from_secs(args.duration),
            delay: Duration::from_secs(args.delay),
            broker_pid: args.broker_pid,
        }
    }
}

#[derive(Args)]
pub struct ConsumerArgs {
    #[arg(short = 'n', long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    namesrv: String,
    #[arg(short = 't', long, default_value = "BenchmarkTest")]
    topic: String,
    /// Consumer group (a fresh one reads from the start).
    #[arg(short = 'g', long, default_value = "BenchConsumer")]
    group: String,
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Then read the topic again with an orderly consumer (group `{group}-orderly`), and
    /// compare the two rates.
    #[arg(long, conflicts_with = "pop")]
    orderly: bool,
    /// Then read the topic again with POP consumers (group `{group}-pop`: four receive loops,
    /// 32 messages a receive, each acknowledged), and compare the two rates.
    #[arg(long)]
    pop: bool,
    #[arg(long)]
    json: bool,
}

impl From<ConsumerArgs> for ConsumeBench {
    fn from(args: ConsumerArgs) -> ConsumeBench {
        ConsumeBench {
            namesrv: args.namesrv,
            topic: args.topic,
            group: args.group,
            duration: Duration::from_secs(args.duration),
            rate: 0,
            message_bytes: 0,
            kind: match (args.orderly, args.pop) {
                (true, _) => ConsumeKind::Orderly,
                (_, true) => ConsumeKind::Pop,
                _ => ConsumeKind::Push,
            },
        }
    }
}

#[derive(Args)]
pub struct E2eArgs {
    #[arg(short = 'n', long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    namesrv: String,
    #[arg(short = 't', long, default_value = "BenchE2e")]
    topic: String,
    #[arg(short = 'g', long, default_value = "BenchE2eGroup")]
    group: String,
    /// Messages per second.
    #[arg(short = 'r', long, default_value_t = 1000)]
    rate: u64,
    /// Message body size in bytes (at least 8: the send time).
    #[arg(short = 's', long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long)]
    json: bool,
}

impl From<E2eArgs> for ConsumeBench {
    fn from(args: E2eArgs) -> ConsumeBench {
        ConsumeBench {
            namesrv: args.namesrv,
            topic: args.topic,
            group: args.group,
            duration: Duration::from_secs(args.duration),
            rate: args.rate.max(1),
            message_bytes: args.size,
            kind: ConsumeKind::Push,
        }
    }
}

#[derive(Args)]
pub struct IdleArgs {
    /// Broker address.
    #[arg(short = 'b', long, default_value = "127.0.0.1:10911")]
    broker: String,
    /// Process id of the broker (its memory is read from /proc).
    #[arg(long)]
    pid: u32,
    /// Idle client connections to open.
    #[arg(short = 'c', long, default_value_t = 1000)]
    connections: usize,
    /// Pull requests to hold (on as many of those connections).
    #[arg(long, default_value_t = 100)]
    held: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ChurnArgs {
    /// Broker address.
    #[arg(short = 'b', long, default_value = "127.0.0.1:10911")]
    broker: String,
    /// Process id of the broker (its memory is read from /proc).
    #[arg(long)]
    pid: u32,
    /// Connections held idle throughout.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Rounds of connections opened and closed.
    #[arg(long, default_value_t = 24)]
    rounds: usize,
    /// Connections opened at once in each round.
    #[arg(long, default_value_t = 2000)]
    per_round: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl From<ChurnArgs> for ChurnBench {
    fn from(args: ChurnArgs) -> ChurnBench {
        ChurnBench {
            broker: args.broker,
            pid: args.pid,
            idle: args.idle,
            rounds: args.rounds,
            per_round: args.per_round,
        }
    }
}

impl From<IdleArgs> for IdleBench {
    fn from(args: IdleArgs) -> IdleBench {
        IdleBench {
            broker: args.broker,
            pid: args.pid,
            connections: args.connections,
            held_pulls: args.held,
        }
    }
}

#[derive(Args)]
pub struct StoreArgs {
    /// Scratch directory, deleted before and after.
    #[arg(long, default_value = ".bench/store")]
    dir: PathBuf,
    /// Message body size in bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    size: usize,
    /// Writer counts to measure, comma-separated.
    #[arg(short = 'w', long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// GiB of commit log for the recovery measurement; 0 skips it.
    #[arg(long, default_value_t = 4)]
    recovery_gib: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl From<StoreArgs> for StoreBench {
    fn from(args: StoreArgs) -> StoreBench {
        StoreBench {
            dir: args.dir,
            message_bytes: args.size,
            writers: args.writers,
            seconds: args.duration,
            recovery_gib: args.recovery_gib,
        }
    }
}

#[derive(Args)]
pub struct SendArgs {
    /// Connection counts to measure, comma-separated, each with one request in flight.
    #[arg(short = 'c', long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<usize>,
    /// Message body size in bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    size: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// The brokers to start, by flushDiskType, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ASYNC_FLUSH,SYNC_FLUSH")]
    flush: Vec<FlushDiskType>,
    /// Scratch directory for the brokers' data, deleted before and after.
    #[arg(long, default_value = ".bench/send")]
    dir: PathBuf,
    /// Measure this running broker (its flush type the first of --flush) instead of starting
    /// brokers: to attach a profiler to it, say.
    #[arg(short = 'b', long)]
    broker: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl From<SendArgs> for SendBench {
    fn from(args: SendArgs) -> SendBench {
        SendBench {
            connections: args.connections,
            message_bytes: args.size,
            seconds: args.duration,
            flush: args.flush,
            broker: args.broker,
            dir: args.dir,
        }
    }
}

#[derive(Args)]
pub struct FloorServerArgs {
    /// Port to listen on, on 127.0.0.1 (0: the kernel picks; the line printed tells it).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// How the server is built: threads (the floor every ratio is taken to), event-loop (one
    /// tokio task per connection, no decoding) or transport (Petrel's own, answering at once).
    #[arg(long, value_enum, default_value_t = FloorKind::Threads)]
    kind: FloorKind,
    /// Microseconds of busy work before each answer: what each microsecond a server spends on
    /// a request costs in answers per second (measure it with `bench send -b`).
    #[arg(long, default_value_t = 0)]
    work_us: u64,
}

#[derive(Args)]
pub struct ReplicationArgs {
    /// Connection counts to measure, comma-separated, each with one request in flight.
    #[arg(short = 'c', long, value_delimiter = ',', default_value = "1,16")]
    connections: Vec<usize>,
    /// Message body size in bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    size: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// GiB of commit log an empty slave copies in the catch-up measurement; 0 skips it.
    #[arg(long, default_value_t = 1.0)]
    catch_up_gib: f64,
    /// Scratch directory for the brokers' data, deleted before and after.
    #[arg(long, default_value = ".bench/replication")]
    dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl From<ReplicationArgs> for ReplicationBench {
    fn from(args: ReplicationArgs) -> ReplicationBench {
        ReplicationBench {
            connections: args.connections,
            message_bytes: args.size,
            seconds: args.duration,
            catch_up_bytes: (args.catch_up_gib * f64::from(1u32 << 30)) as u64,
            dir: args.dir,
        }
    }
}

#[derive(Args)]
pub struct FilterArgs {
    /// Scratch directory for the broker it starts, deleted first.
    #[arg(long, default_value = ".bench/filter")]
    dir: PathBuf,
    /// Messages in the queue.
    #[arg(short = 'n', long, default_value_t = 200_000)]
    messages: u64,
    /// Message body size in bytes.
    #[arg(short = 's', long, default_value_t = 256)]
    size: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl From<FilterArgs> for FilterBench {
    fn from(args: FilterArgs) -> FilterBench {
        FilterBench { dir: args.dir, messages: args.messages, message_bytes: args.size }
    }
}
