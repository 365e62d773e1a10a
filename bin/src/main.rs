//! The `petrel` binary: `namesrv | broker | standalone | bench`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use petrel::bench::consume::{self, ConsumeBench};
use petrel::bench::idle::{self, IdleBench};
use petrel::bench::producer::{self as producer_bench, Mode, ProducerBench};
use petrel::bench::route::{self, RouteBench};
use petrel::bench::store::{self as store_bench, StoreBench};
use petrel::broker::{self, BrokerConfig};
use petrel::config::Properties;
use petrel::namesrv::{self, NamesrvConfig};
use petrel_storage::disk::FsDisk;

#[derive(Parser)]
#[command(name = "petrel", version, about = "A RocketMQ-compatible message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a NameServer (route registration, broker liveness, route discovery).
    Namesrv {
        /// A namesrv.conf with RocketMQ property names (listenPort, kvConfigPath, ...).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Port to listen on (overrides listenPort).
        #[arg(long)]
        listen_port: Option<u16>,
        /// Print the effective configuration and exit.
        #[arg(short = 'p', long = "print-config")]
        print_config: bool,
    },
    /// Run a broker: store, produce and consume, registered with the NameServers.
    Broker {
        /// A broker.conf with RocketMQ property names (brokerName, namesrvAddr, listenPort,
        /// storePathRootDir, flushDiskType, ...).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// NameServer addresses, `host:port;host:port` (overrides namesrvAddr; NAMESRV_ADDR
        /// is read when neither is given).
        #[arg(short = 'n', long)]
        namesrv_addr: Option<String>,
        /// Port to listen on (overrides listenPort).
        #[arg(long)]
        listen_port: Option<u16>,
        /// Store directory (overrides storePathRootDir).
        #[arg(long)]
        store_path: Option<PathBuf>,
        /// Print the effective configuration and exit.
        #[arg(short = 'p', long = "print-config")]
        print_config: bool,
    },
    /// Run a NameServer and a broker in one process, data under ./petrel-data.
    Standalone {
        /// Where data is kept.
        #[arg(long, default_value = "./petrel-data")]
        data_dir: PathBuf,
        /// NameServer port.
        #[arg(long, default_value_t = 9876)]
        namesrv_port: u16,
        /// Broker port.
        #[arg(long, default_value_t = 10911)]
        broker_port: u16,
        /// A broker.conf for the broker (its store path and ports are the ones above).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Measure Petrel over real sockets.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// GET_ROUTEINFO_BY_TOPIC against a NameServer.
    Route {
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
    },
    /// Send TPS and latency through the Rust producer (RocketMQ's benchmark option letters).
    Producer {
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
    },
    /// Messages per second through a push consumer reading a topic from its start.
    Consumer {
        #[arg(short = 'n', long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[arg(short = 't', long, default_value = "BenchmarkTest")]
        topic: String,
        /// Consumer group (a fresh one reads from the start).
        #[arg(short = 'g', long, default_value = "BenchConsumer")]
        group: String,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long)]
        json: bool,
    },
    /// Produce-to-consume latency at a fixed send rate.
    E2e {
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
    },
    /// A broker's resident memory with idle client connections and held pulls.
    Idle {
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
    },
    /// The store's append throughput against this disk's ceiling, and its recovery time.
    Store {
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
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("petrel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("petrel: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Namesrv { config, listen_port, print_config } => {
            let mut namesrv_config = NamesrvConfig::default();
            if let Some(path) = &config {
                let mut props = Properties::load(path).map_err(|e| e.to_string())?;
                namesrv_config.apply(&mut props).map_err(|e| e.to_string())?;
                props.warn_unused("namesrv.conf");
            }
            if let Some(port) = listen_port {
                namesrv_config.listen_port = port;
            }
            if print_config {
                println!("{namesrv_config:#?}");
                return Ok(());
            }
            serve_namesrv(namesrv_config).await
        }
        Command::Broker { config, namesrv_addr, listen_port, store_path, print_config } => {
            let mut broker_config = BrokerConfig::default();
            if let Some(path) = &config {
                let mut props = Properties::load(path).map_err(|e| e.to_string())?;
                broker_config.apply(&mut props).map_err(|e| e.to_string())?;
                props.warn_unused("broker.conf");
            }
            let from_env = || std::env::var("NAMESRV_ADDR").ok();
            match namesrv_addr {
                Some(addrs) => broker_config.namesrv_addrs = broker::config::split_addrs(&addrs),
                None if broker_config.namesrv_addrs.is_empty() => {
                    broker_config.namesrv_addrs =
                        from_env().map(|a| broker::config::split_addrs(&a)).unwrap_or_default();
                }
                None => {}
            }
            if let Some(port) = listen_port {
                broker_config.listen_port = port;
            }
            if let Some(path) = store_path {
                broker_config.store.root = path;
            }
            if print_config {
                println!("{broker_config:#?}");
                return Ok(());
            }
            serve_broker(broker_config).await
        }
        Command::Standalone { data_dir, namesrv_port, broker_port, config } => {
            standalone(data_dir, namesrv_port, broker_port, config).await
        }
        Command::Bench { which } => run_bench(which).await,
    }
}

async fn run_bench(which: BenchCommand) -> Result<(), String> {
    match which {
        BenchCommand::Producer {
            namesrv,
            topic,
            threads,
            size,
            keys,
            tags,
            async_send,
            oneway,
            batch,
            duration,
            report_interval,
            json,
        } => {
            let mode = match (oneway, async_send) {
                (true, _) => Mode::Oneway,
                (false, true) => Mode::Async,
                (false, false) => Mode::Sync,
            };
            let bench = ProducerBench {
                namesrv,
                topic,
                threads,
                message_bytes: size,
                keys,
                tag_count: tags,
                mode,
                batch,
                duration: Duration::from_secs(duration),
                report_interval: Duration::from_secs(report_interval.max(1)),
            };
            let report = producer_bench::run(bench, |line| eprintln!("{line}")).await?;
            println!("{}", report.render(json));
            Ok(())
        }
        BenchCommand::Route { namesrv, topic, connections, duration, register, json } => {
            let bench = RouteBench {
                namesrv,
                topic,
                connections,
                duration: Duration::from_secs(duration),
                register,
            };
            let summary = route::run(bench).await?;
            println!("{}", summary.render(json));
            Ok(())
        }
        BenchCommand::Consumer { namesrv, topic, group, duration, json } => {
            let duration = Duration::from_secs(duration);
            let bench = ConsumeBench { namesrv, topic, group, duration, rate: 0, message_bytes: 0 };
            println!("{}", consume::run(bench).await?.render(json));
            Ok(())
        }
        BenchCommand::E2e { namesrv, topic, group, rate, size, duration, json } => {
            let duration = Duration::from_secs(duration);
            let rate = rate.max(1);
            let bench = ConsumeBench { namesrv, topic, group, duration, rate, message_bytes: size };
            println!("{}", consume::run(bench).await?.render(json));
            Ok(())
        }
        BenchCommand::Idle { broker, pid, connections, held, json } => {
            let bench = IdleBench { broker, pid, connections, held_pulls: held };
            let report = idle::run(bench).await?;
            print!("{}", report.render(json));
            Ok(())
        }
        BenchCommand::Store { dir, size, writers, duration, recovery_gib, json } => {
            let bench =
                StoreBench { dir, message_bytes: size, writers, seconds: duration, recovery_gib };
            let report = store_bench::run(bench).await?;
            print!("{}", report.render(json));
            Ok(())
        }
    }
}

async fn serve_broker(config: BrokerConfig) -> Result<(), String> {
    let shutdown =
        ShutdownSignal::install().map_err(|e| format!("cannot watch for signals: {e}"))?;
    if config.namesrv_addrs.is_empty() {
        tracing::warn!("no NameServer given (namesrvAddr, -n or NAMESRV_ADDR): clients cannot find this broker");
    }
    let handle = broker::start(config, Arc::new(FsDisk)).await?;
    announce(&format!(
        "broker listening on {} (clients are told {})",
        handle.local_addr,
        handle.state.addr()
    ));
    tokio::select! {
        () = shutdown.wait() => {}
        reason = handle.failed() => return Err(store_failed(&reason)),
    }
    tracing::info!("shutting down");
    handle.shutdown().await?;
    tracing::info!("broker stopped");
    Ok(())
}

/// Why a broker exits after its store stopped, and what the operator does about it.
fn store_failed(reason: &str) -> String {
    format!(
        "the broker stopped because a disk sync failed ({reason}); nothing more was \
         acknowledged after it. Check the disk, then start the broker again: recovery keeps \
         every message acknowledged before the failure"
    )
}

/// A NameServer and a broker in one process, both on loopback, data under `data_dir`.
async fn standalone(
    data_dir: PathBuf,
    namesrv_port: u16,
    broker_port: u16,
    config: Option<PathBuf>,
) -> Result<(), String> {
    let shutdown =
        ShutdownSignal::install().map_err(|e| format!("cannot watch for signals: {e}"))?;
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", data_dir.display()))?;
    let namesrv_config = NamesrvConfig {
        listen_port: namesrv_port,
        kv_config_path: Some(data_dir.join("namesrv").join("kvConfig.json")),
        ..NamesrvConfig::default()
    };
    let namesrv = namesrv::start(namesrv_config)
        .await
        .map_err(|e| format!("cannot listen on port {namesrv_port}: {e}"))?;
    let mut broker_config = BrokerConfig::default();
    if let Some(path) = &config {
        let mut props = Properties::load(path).map_err(|e| e.to_string())?;
        broker_config.apply(&mut props).map_err(|e| e.to_string())?;
        props.warn_unused("broker.conf");
    }
    broker_config.listen_port = broker_port;
    broker_config.broker_ip = Some("127.0.0.1".to_owned());
    broker_config.namesrv_addrs = vec![format!("127.0.0.1:{}", namesrv.local_addr.port())];
    broker_config.store.root = data_dir.join("broker");
    let broker = match broker::start(broker_config, Arc::new(FsDisk)).await {
        Ok(broker) => broker,
        Err(e) => {
            namesrv.shutdown().await;
            return Err(e);
        }
    };
    let port = namesrv.local_addr.port();
    announce(&format!(
        "petrel standalone is ready.\nNameServer: 127.0.0.1:{port}\nBroker:     {}   data: {}\nClients:    export NAMESRV_ADDR=127.0.0.1:{port}",
        broker.state.addr(),
        data_dir.display()
    ));
    tokio::select! {
        () = shutdown.wait() => {}
        reason = broker.failed() => {
            namesrv.shutdown().await;
            return Err(store_failed(&reason));
        }
    }
    tracing::info!("shutting down");
    let stopped = broker.shutdown().await;
    namesrv.shutdown().await;
    stopped?;
    tracing::info!("standalone stopped");
    Ok(())
}

/// Prints a line for whoever started the server. A server outlives its launcher's interest in
/// stdout: if nobody reads it any more, the server goes on rather than dying of a broken pipe.
fn announce(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

async fn serve_namesrv(config: NamesrvConfig) -> Result<(), String> {
    // Watch for signals before binding, so a signal that comes right after the address is
    // printed still stops the server cleanly instead of killing it.
    let shutdown =
        ShutdownSignal::install().map_err(|e| format!("cannot watch for signals: {e}"))?;
    let port = config.listen_port;
    let handle =
        namesrv::start(config).await.map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    // The bound address, on stdout: with `--listen-port 0` this is how a caller learns the port.
    announce(&format!("namesrv listening on {}", handle.local_addr));
    shutdown.wait().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    tracing::info!("namesrv stopped");
    Ok(())
}

/// SIGINT or SIGTERM, watched from the moment it is installed.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> std::io::Result<ShutdownSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignal {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignal {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
