//! `petrel broker`: a broker, registered with the NameServers.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
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
    /// Check the configuration, print it in RocketMQ's property names (`key=value`, every
    /// property Petrel reads, with the value it takes) and exit.
    #[arg(short = 'p', long = "print-config")]
    print_config: bool,
}

pub async fn run(args: BrokerArgs) -> Result<(), String> {
    let mut overrides = Vec::new();
    if let Some(addrs) = args.namesrv_addr {
        overrides.push(("namesrvAddr", addrs));
    }
    if let Some(port) = args.listen_port {
        overrides.push(("listenPort", port.to_string()));
    }
    if let Some(path) = &args.store_path {
        overrides.push(("storePathRootDir", path.display().to_string()));
    }
    let mut config = BrokerConfig::default();
    let file = args.config.as_deref();
    let props = load_conf(file, "broker.conf", &overrides, |props| {
        if !props.has_value("namesrvAddr") {
            if let Ok(from_env) = std::env::var("NAMESRV_ADDR") {
                props.set("namesrvAddr", from_env);
            }
        }
        config.apply(props).map_err(|e| e.to_string())
    })?;
    config.config_file = file.map(std::path::absolute).transpose().map_err(|e| e.to_string())?;
    if args.print_config {
        config.validate().map_err(|e| format!("the configuration is refused: {e}"))?;
        print!("{}", props.render_effective());
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
