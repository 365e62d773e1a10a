//! In-process NameServer and brokers on loopback, each broker on its own temporary store.
#![allow(dead_code)] // Each test file uses a different part.

use std::sync::Arc;

use petrel::broker::{self, BrokerConfig, BrokerHandle};
use petrel::namesrv::{self, NamesrvConfig, NamesrvHandle};
use petrel_storage::disk::FsDisk;

pub struct Running {
    handle: Option<BrokerHandle>,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Running {
    /// A broker on a kernel-picked port, registered with `namesrv` when given.
    pub async fn start(
        namesrv: Option<&str>,
        configure: impl FnOnce(&mut BrokerConfig),
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig {
            listen_port: 0,
            bind_address: "127.0.0.1".into(),
            broker_ip: Some("127.0.0.1".into()),
            namesrv_addrs: namesrv.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            ..BrokerConfig::default()
        };
        config.store.root = dir.path().to_path_buf();
        config.store.commit_log_file_bytes = 16 << 20;
        configure(&mut config);
        let handle = broker::start(config, Arc::new(FsDisk)).await.unwrap();
        let addr = handle.state.addr().to_owned();
        Running { handle: Some(handle), addr, _dir: dir }
    }

    pub async fn stop(mut self) {
        self.handle.take().unwrap().shutdown().await.unwrap();
    }
}

/// A NameServer on a kernel-picked port.
pub async fn namesrv() -> (NamesrvHandle, String) {
    let config = NamesrvConfig {
        listen_port: 0,
        bind_address: "127.0.0.1".into(),
        ..NamesrvConfig::default()
    };
    let handle = namesrv::start(config).await.unwrap();
    let addr = format!("127.0.0.1:{}", handle.local_addr.port());
    (handle, addr)
}
