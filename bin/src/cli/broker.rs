//! `petrel broker`: a broker, registered with the NameServers.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use petrel::broker::config::split_addrs;
use petrel::broker::{self, BrokerConfig};
use petrel_storage::disk::FsDisk;

use super::{announce, load_conf, store_failed, ShutdownSignal};

#[derive(Args)]
pub struct BrokerArgs {
    /// A broker.conf with RocketMQ property names (brokerName, namesrvAddr, listenPort,
    /// storePathRootDir, flushDiskType, ...).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// NameServer addresses, `host:port;host:port` (overrides namesrvAddr; NAMESRV_ADDR is
    /// read when neither is given).
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
}

pub async fn run(args: BrokerArgs) -> Result<(), String> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        load_conf(path, "broker.conf", |props| config.apply(props).map_err(|e| e.to_string()))?;
    }
    match args.namesrv_addr {
        Some(addrs) => config.namesrv_addrs = split_addrs(&addrs),
        None if config.namesrv_addrs.is_empty() => {
            let from_env = std::env::var("NAMESRV_ADDR").ok();
            config.namesrv_addrs = from_env.map(|a| split_addrs(&a)).unwrap_or_default();
        }
        None => {}
    }
    if let Some(port) = args.listen_port {
        config.listen_port = port;
    }
    if let Some(path) = args.store_path {
        config.store.root = path;
    }
    if args.print_config {
        println!("{config:#?}");
        return Ok(());
    }
    serve(config).await
}

async fn serve(config: BrokerConfig) -> Result<(), String> {
    let shutdown = ShutdownSignal::install()?;
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
