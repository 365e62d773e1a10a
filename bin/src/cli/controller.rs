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
    /// Print the configuration in RocketMQ's property names (`key=value`, every property
    /// Petrel reads, with the value it takes) and exit.
    #[arg(short = 'p', long = "print-config")]
    print_config: bool,
}

pub async fn run(args: ControllerArgs) -> Result<(), String> {
    let mut config = ControllerConfig::default();
    let file = args.config.as_deref();
    let props = load_conf(file, "controller.conf", &[], |props| {
        config.apply(props).map_err(|e| e.to_string())
    })?;
    if args.print_config {
        print!("{}", props.render_effective());
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
