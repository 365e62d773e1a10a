//! `petrel standalone`: a NameServer and a broker in one process, both on loopback.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use petrel::broker::{self, BrokerConfig};
use petrel::namesrv::{self, NamesrvConfig};
use petrel_storage::disk::FsDisk;

use super::{announce, load_conf, store_failed, ShutdownSignal};

#[derive(Args)]
pub struct StandaloneArgs {
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
}

pub async fn run(args: StandaloneArgs) -> Result<(), String> {
    let shutdown = ShutdownSignal::install()?;
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", data_dir.display()))?;
    let namesrv_config = NamesrvConfig {
        listen_port: args.namesrv_port,
        kv_config_path: Some(data_dir.join("namesrv").join("kvConfig.json")),
        ..NamesrvConfig::default()
    };
    let namesrv = namesrv::start(namesrv_config, Arc::new(FsDisk)).await?;
    let port = namesrv.local_addr.port();
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        load_conf(Some(path), "broker.conf", &[], |props| {
            config.apply(props).map_err(|e| e.to_string())
        })?;
        config.config_file = Some(std::path::absolute(path).map_err(|e| e.to_string())?);
    }
    config.listen_port = args.broker_port;
    config.broker_ip = Some("127.0.0.1".to_owned());
    config.namesrv_addrs = vec![format!("127.0.0.1:{port}")];
    config.store.root = data_dir.join("broker");
    let broker = match broker::start(config, Arc::new(FsDisk)).await {
        Ok(broker) => broker,
        Err(e) => {
            namesrv.shutdown().await;
            return Err(e);
        }
    };
    let metrics = match broker.metrics_addr {
        Some(addr) => format!("\nMetrics:    http://{addr}/metrics"),
        None => String::new(),
    };
    announce(&format!(
        "petrel standalone is ready.\nNameServer: 127.0.0.1:{port}\nBroker:     {}   data: {}{metrics}\nClients:    export NAMESRV_ADDR=127.0.0.1:{port}",
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
