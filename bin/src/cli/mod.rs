//! The commands of the `petrel` binary, one module each, and what they share: the shutdown
//! signal, the line a server prints when it is ready, and the message of a broker whose store
//! stopped.

pub mod admin;
pub mod bench;
pub mod broker;
pub mod console;
pub mod controller;
pub mod namesrv;
pub mod standalone;

/// Prints a line for whoever started the server. A server outlives its launcher's interest in
/// stdout: if nobody reads it any more, the server goes on rather than dying of a broken pipe.
pub fn announce(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Why a broker exits after its store stopped, and what the operator does about it.
pub fn store_failed(reason: &str) -> String {
    format!(
        "the broker stopped because a disk sync failed ({reason}); nothing more was \
         acknowledged after it. Check the disk, then start the broker again: recovery keeps \
         every message acknowledged before the failure"
    )
}

/// Loads a `.conf` file of RocketMQ property names (none: no file) into `apply`, with the
/// command line's `overrides` in place of the file's values, warning of names it ignored.
/// Returns the properties, which hold what `-p` prints.
pub fn load_conf(
    path: Option<&std::path::Path>,
    what: &str,
    overrides: &[(&str, String)],
    apply: impl FnOnce(&mut petrel::config::Properties) -> Result<(), String>,
) -> Result<petrel::config::Properties, String> {
    let mut props = match path {
        Some(path) => petrel::config::Properties::load(path).map_err(|e| e.to_string())?,
        None => petrel::config::Properties::default(),
    };
    for (key, value) in overrides {
        props.set(key, value.clone());
    }
    apply(&mut props)?;
    props.warn_unused(what);
    Ok(props)
}

/// SIGINT or SIGTERM, watched from the moment it is installed.
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    pub fn install() -> Result<ShutdownSignal, String> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let watch = |kind| signal(kind).map_err(|e| format!("cannot watch for signals: {e}"));
            Ok(ShutdownSignal {
                interrupt: watch(SignalKind::interrupt())?,
                terminate: watch(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignal {})
    }

    pub async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
