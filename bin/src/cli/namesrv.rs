//! `petrel namesrv`: a NameServer, with a controller in the same process when its
//! configuration says `enableControllerInNamesrv=true` (RocketMQ's embedded controller: the
//! controller's properties in the same file, the controller on its own peer address).

use std::path::PathBuf;

use std::sync::Arc;

use clap::Args;
use petrel::controller::{self, ControllerConfig};
use petrel::namesrv::{self, NamesrvConfig};
use petrel_storage::disk::FsDisk;

use super::{announce, load_conf, ShutdownSignal};

#[derive(Args)]
pub struct NamesrvArgs {
    /// A namesrv.conf with RocketMQ property names (listenPort, kvConfigPath, ...).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Port to listen on (overrides listenPort).
    #[arg(long)]
    listen_port: Option<u16>,
    /// Check the configuration, print it in RocketMQ's property names (`key=value`, every
    /// property Petrel reads, with the value it takes) and exit.
    #[arg(short = 'p', long = "print-config")]
    print_config: bool,
}

pub async fn run(args: NamesrvArgs) -> Result<(), String> {
    let mut config = NamesrvConfig::default();
    let mut embedded = None;
    let overrides: Vec<_> =
        args.listen_port.map(|port| ("listenPort", port.to_string())).into_iter().collect();
    let props = load_conf(args.config.as_deref(), "namesrv.conf", &overrides, |props| {
        config.apply(props).map_err(|e| e.to_string())?;
        let mut enable = false;
        props
            .apply("enableControllerInNamesrv", &mut enable, "true or false")
            .map_err(|e| e.to_string())?;
        if enable {
            let mut controller = ControllerConfig::default();
            controller.apply(props).map_err(|e| e.to_string())?;
            embedded = Some(controller);
        }
        Ok(())
    })?;
    config.config_file =
        args.config.as_deref().map(std::path::absolute).transpose().map_err(|e| e.to_string())?;
    if args.print_config {
        print!("{}", props.render_effective());
        return Ok(());
    }
    serve(config, embedded).await
}

async fn serve(config: NamesrvConfig, embedded: Option<ControllerConfig>) -> Result<(), String> {
    // Watch for signals before binding, so a signal that comes right after the address is
    // printed still stops the server cleanly instead of killing it.
    let shutdown = ShutdownSignal::install()?;
    let handle = namesrv::start(config, Arc::new(FsDisk)).await?;
    // The bound address, on stdout: with `--listen-port 0` this is how a caller learns the port.
    announce(&format!("namesrv listening on {}", handle.local_addr));
    if let Some(addr) = handle.metrics_addr {
        announce(&format!("metrics at http://{addr}/metrics"));
    }
    let controller = match embedded {
        Some(config) => {
            let running = controller::start(config, Arc::new(FsDisk)).await?;
            announce(&format!("controller listening on {}", running.local_addr));
            Some(running)
        }
        None => None,
    };
    let failed = async {
        match &controller {
            Some(running) => running.failed().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        biased;
        () = shutdown.wait() => Ok(()),
        reason = failed => Err(reason),
    };
    tracing::info!("shutting down");
    if let Some(running) = controller {
        running.shutdown().await;
    }
    handle.shutdown().await;
    tracing::info!("namesrv stopped");
    outcome
}
