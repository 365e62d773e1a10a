//! `petrel namesrv`: a NameServer.

use std::path::PathBuf;

use clap::Args;
use petrel::namesrv::{self, NamesrvConfig};

use super::{announce, load_conf, ShutdownSignal};

#[derive(Args)]
pub struct NamesrvArgs {
    /// A namesrv.conf with RocketMQ property names (listenPort, kvConfigPath, ...).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Port to listen on (overrides listenPort).
    #[arg(long)]
    listen_port: Option<u16>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "print-config")]
    print_config: bool,
}

pub async fn run(args: NamesrvArgs) -> Result<(), String> {
    let mut config = NamesrvConfig::default();
    if let Some(path) = &args.config {
        load_conf(path, "namesrv.conf", |props| config.apply(props).map_err(|e| e.to_string()))?;
    }
    if let Some(port) = args.listen_port {
        config.listen_port = port;
    }
    if args.print_config {
        println!("{config:#?}");
        return Ok(());
    }
    serve(config).await
}

async fn serve(config: NamesrvConfig) -> Result<(), String> {
    // Watch for signals before binding, so a signal that comes right after the address is
    // printed still stops the server cleanly instead of killing it.
    let shutdown = ShutdownSignal::install()?;
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
