//! The `petrel` binary: `namesrv | broker | controller | standalone | admin | console | bench`,
//! one module of `cli/` each.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: petrel::alloc::CountingAllocator = petrel::alloc::CountingAllocator;

#[derive(Parser)]
#[command(name = "petrel", version, about = "A RocketMQ-compatible message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a NameServer (route registration, broker liveness, route discovery).
    Namesrv(cli::namesrv::NamesrvArgs),
    /// Run a broker: store, produce and consume, registered with the NameServers.
    Broker(cli::broker::BrokerArgs),
    /// Run a controller: one of a raft group keeping the broker groups' masters (in progress:
    /// it elects a raft leader and answers CONTROLLER_GET_METADATA_INFO).
    Controller(cli::controller::ControllerArgs),
    /// Run a NameServer and a broker in one process, data under ./petrel-data.
    Standalone(cli::standalone::StandaloneArgs),
    /// mqadmin's commands, with its names and flags (`petrel admin topicList -n host:9876`).
    Admin {
        #[command(subcommand)]
        which: cli::admin::AdminCommand,
    },
    /// A web console for operators: the cluster, topics, consumer groups and messages.
    Console(cli::console::ConsoleArgs),
    /// Measure Petrel over real sockets.
    Bench {
        #[command(subcommand)]
        which: cli::bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    petrel::alloc::count_if_asked();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file (or a pipe to one) gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("petrel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = runtime.block_on(async {
        match cli.command {
            Command::Namesrv(args) => cli::namesrv::run(args).await,
            Command::Broker(args) => cli::broker::run(args).await,
            Command::Controller(args) => cli::controller::run(args).await,
            Command::Standalone(args) => cli::standalone::run(args).await,
            Command::Admin { which } => cli::admin::run(which).await,
            Command::Console(args) => cli::console::run(args).await,
            Command::Bench { which } => cli::bench::run(which).await,
        }
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("petrel: {message}");
            ExitCode::FAILURE
        }
    }
}
