//! `petrel controller`: one controller of a raft group (RocketMQ's `ControllerStartup`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use petrel::controller::{self, ControllerConfig};
use petrel_storage::disk::FsDisk;

use super::{announce, load_conf, ShutdownSignal};

#[derive(Args)]
pub struct ControllerArgs {
    /// A controller.conf with RocketMQ property names (controllerDLegerGroup,
    /// controllerDLegerPeers, controllerDLegerSelfId, controllerStorePath).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "print-config")]
    print_config: bool,
}

pub async fn run(args: ControllerArgs) -> Result<(), String> {
    let mut config = ControllerConfig::default();
    if let Some(path) = &args.config {
        load_conf(path, "controller.conf", |props| config.apply(props).map_err(|e| e.to_string()))?;
    }
    if args.print_config {
        println!("{config:#?}");
        return Ok(());
    }
    let shutdown = ShutdownSignal::install()?;
    let handle = controller::start(config, Arc::new(FsDisk)).await?;
    announce(&format!("controller listening on {}", handle.local_addr));
    tokio::select! {
        () = shutdown.wait() => {}
        reason = handle.failed() => return Err(reason),
    }
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}
