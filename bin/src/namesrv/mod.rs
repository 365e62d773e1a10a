//! The NameServer service: binds the route-table core to a socket, a clock and a KV file.
//!
//! Requests are answered synchronously under one lock (each is a few map operations); the
//! housekeeping task ticks the table so silent brokers expire, and closes their connections.
//! One file per request group, each with the same shape: doc comment, decode, act, answer.

mod broker_perm;
mod cluster_info;
mod delete_topic;
mod kv_config;
mod metrics;
mod namesrv_config;
mod query_data_version;
mod register_broker;
mod route_info;
mod topic_list;
mod unregister_broker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use petrel_core::kv::KvConfig;
use petrel_core::route::{RouteAction, RouteTable, RouteTableConfig};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::header::HeaderError;
use petrel_net::codec::RemotingCommand;
use petrel_net::signal::{Flag, SetOnDrop};
use petrel_net::transport::{
    not_supported, Connection, Handled, RequestHandler, Server, ServerConfig, ServerHandle,
};
use petrel_storage::disk::Disk;

use crate::clock::now_millis;
use crate::config::{ConfigError, Properties};

/// The largest KV file read back: the bound is checked before anything is allocated.
const KV_FILE_BYTES_MAX: u64 = 64 << 20;

/// NameServer settings, by RocketMQ's property names.
#[derive(Debug, Clone)]
pub struct NamesrvConfig {
    /// `listenPort`: 9876.
    pub listen_port: u16,
    /// `bindAddress`: 0.0.0.0.
    pub bind_address: String,
    /// `kvConfigPath`: where the KV config persists; `None` keeps it in memory only.
    pub kv_config_path: Option<PathBuf>,
    /// `orderMessageEnable`: routes carry `orderTopicConf` from the KV config.
    pub order_message_enable: bool,
    /// `returnOrderTopicConfigToBroker`: REGISTER_BROKER answers with the order topic table.
    pub return_order_topic_config_to_broker: bool,
    /// `enableAllTopicList`, `enableTopicList`: serve the topic listings.
    pub enable_all_topic_list: bool,
    pub enable_topic_list: bool,
    /// `scanNotActiveBrokerInterval` and `brokerChannelExpiredTime` (ms), and the other
    /// route-table switches.
    pub route: RouteTableConfig,
    /// `serverChannelMaxConnections`, `frameMaxLength`: transport limits.
    pub server: ServerConfig,
    /// The Prometheus endpoint (`metricsExporterType`, `metricsPromExporterPort`, ...), as
    /// the broker's.
    pub metrics: crate::metrics::MetricsConfig,
    /// `configBlackList`: properties UPDATE_NAMESRV_CONFIG may not change, `;`-separated.
    pub config_black_list: String,
    /// The file the NameServer was started from (`-c`), where UPDATE_NAMESRV_CONFIG writes
    /// what it changes; `None` keeps changes until the NameServer stops.
    pub config_file: Option<PathBuf>,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen_port: 9876,
            bind_address: "0.0.0.0".to_owned(),
            kv_config_path: None,
            order_message_enable: false,
            return_order_topic_config_to_broker: true,
            enable_all_topic_list: true,
            enable_topic_list: true,
            route: RouteTableConfig::default(),
            server: ServerConfig::default(),
            metrics: crate::metrics::MetricsConfig::default(),
            config_black_list: "configBlackList;configStorePath;kvConfigPath".to_owned(),
            config_file: None,
        }
    }
}

impl NamesrvConfig {
    /// Applies properties from a `namesrv.conf`.
    pub fn apply(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        props.apply("listenPort", &mut self.listen_port, "a port number")?;
        props.apply("bindAddress", &mut self.bind_address, "an address")?;
        let mut kv_path =
            self.kv_config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        props.apply("kvConfigPath", &mut kv_path, "a file path")?;
        if !kv_path.is_empty() {
            self.kv_config_path = Some(PathBuf::from(kv_path));
        }
        props.apply("orderMessageEnable", &mut self.order_message_enable, "true or false")?;
        props.apply(
            "returnOrderTopicConfigToBroker",
            &mut self.return_order_topic_config_to_broker,
            "true or false",
        )?;
        props.apply("enableAllTopicList", &mut self.enable_all_topic_list, "true or false")?;
        props.apply("enableTopicList", &mut self.enable_topic_list, "true or false")?;
        props.apply(
            "supportActingMaster",
            &mut self.route.support_acting_master,
            "true or false",
        )?;
        props.apply(
            "deleteTopicWithBrokerRegistration",
            &mut self.route.delete_topic_with_broker_registration,
            "true or false",
        )?;
        props.apply(
            "scanNotActiveBrokerInterval",
            &mut self.route.scan_interval_ms,
            "milliseconds",
        )?;
        props.apply(
            "brokerChannelExpiredTime",
            &mut self.route.broker_timeout_ms,
            "milliseconds",
        )?;
        crate::config::apply_server(props, &mut self.server)?;
        self.metrics.apply(props)?;
        props.apply("configBlackList", &mut self.config_black_list, "names separated by ;")?;
        Ok(())
    }

    /// The properties UPDATE_NAMESRV_CONFIG refuses to change: `configBlackList`'s, and
    /// `configBlackList` itself always.
    pub fn black_list(&self) -> Vec<&str> {
        let listed = self.config_black_list.split(';').map(str::trim).filter(|n| !n.is_empty());
        std::iter::once("configBlackList").chain(listed).collect()
    }

    /// The configuration in RocketMQ's property names with the values it holds, a
    /// `key=value` line each (GET_NAMESRV_CONFIG).
    pub fn to_properties(&self) -> String {
        crate::config::effective(|props| self.clone().apply(props))
    }
}

/// The NameServer's state, shared by the request handler and the housekeeping task.
pub struct Namesrv {
    /// The configuration the NameServer started with; `live` holds what
    /// UPDATE_NAMESRV_CONFIG changed since (`namesrv_config.rs`).
    config: NamesrvConfig,
    live: Mutex<(NamesrvConfig, i64)>,
    /// Held through an UPDATE_NAMESRV_CONFIG, file write included.
    updating: Mutex<()>,
    table: Mutex<RouteTable>,
    kv: Mutex<KvConfig>,
    /// Where `kvConfigPath` is read and written.
    disk: Arc<dyn Disk>,
    server: ServerHandle,
}

/// What a request handler returns: the response, or a malformed-header error to answer with.
type Reply = Result<RemotingCommand, HeaderError>;

impl Namesrv {
    fn table(&self) -> MutexGuard<'_, RouteTable> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The configuration as UPDATE_NAMESRV_CONFIG last left it, and how many updates it had.
    fn live(&self) -> MutexGuard<'_, (NamesrvConfig, i64)> {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn kv(&self) -> MutexGuard<'_, KvConfig> {
        self.kv.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on the route table, then carries out what the table asks for.
    fn change_table<T>(&self, change: impl FnOnce(&mut RouteTable) -> T) -> T {
        let (result, actions) = {
            let mut table = self.table();
            let result = change(&mut table);
            let actions: Vec<RouteAction> = std::iter::from_fn(|| table.poll_action()).collect();
            (result, actions)
        };
        for action in actions {
            self.execute(action);
        }
        result
    }

    fn execute(&self, action: RouteAction) {
        match action {
            RouteAction::CloseConnection(conn) => self.server.close(conn),
            RouteAction::BrokerRemoved { cluster, broker_name, broker_addr, reason } => {
                tracing::info!(%cluster, %broker_name, %broker_addr, ?reason, "broker left the route table");
            }
        }
    }

    fn dispatch(&self, conn: &Connection, request: &RemotingCommand) -> Reply {
        match request.code {
            request::REGISTER_BROKER => register_broker::handle(self, conn, request),
            request::UNREGISTER_BROKER => unregister_broker::handle(self, request),
            request::GET_ROUTEINFO_BY_TOPIC => route_info::handle(self, request),
            request::GET_BROKER_CLUSTER_INFO => Ok(cluster_info::handle(self)),
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => Ok(topic_list::all(self)),
            request::GET_TOPICS_BY_CLUSTER => topic_list::by_cluster(self, request),
            request::GET_SYSTEM_TOPIC_LIST_FROM_NS => Ok(topic_list::system(self)),
            request::DELETE_TOPIC_IN_NAMESRV => delete_topic::handle(self, request),
            request::PUT_KV_CONFIG => kv_config::put(self, request),
            request::GET_KV_CONFIG => kv_config::get(self, request),
            request::DELETE_KV_CONFIG => kv_config::delete(self, request),
            request::GET_KVLIST_BY_NAMESPACE => kv_config::list(self, request),
            request::QUERY_DATA_VERSION => query_data_version::handle(self, request),
            request::BROKER_HEARTBEAT => query_data_version::heartbeat(self, request),
            request::WIPE_WRITE_PERM_OF_BROKER => broker_perm::handle(self, request, false),
            request::ADD_WRITE_PERM_OF_BROKER => broker_perm::handle(self, request, true),
            request::GET_NAMESRV_CONFIG => Ok(namesrv_config::get(self)),
            request::UPDATE_NAMESRV_CONFIG => Ok(namesrv_config::update(self, conn, request)),
            other => Ok(not_supported(other)),
        }
    }

    /// Makes `change` to a copy of the KV table, writes the copy to `kvConfigPath` and only
    /// then takes it, so that a change answered SUCCESS is on disk. `Ok(false)` when nothing
    /// changed (nothing is written); on a failed write the table stays as it was.
    fn change_kv(&self, change: impl FnOnce(&mut KvConfig) -> bool) -> Result<bool, String> {
        let mut kv = self.kv();
        let mut next = kv.clone();
        if !change(&mut next) {
            return Ok(false);
        }
        if let Some(path) = &self.config.kv_config_path {
            let text = serde_json::to_vec_pretty(&next).expect("the KV table always serializes");
            crate::fsutil::save(self.disk.as_ref(), path, &text).map_err(|e| {
                tracing::error!(path = %path.display(), error = %e, "cannot write the KV config");
                format!(
                    "cannot write the KV config to {}: {e}; nothing was changed",
                    path.display()
                )
            })?;
        }
        *kv = next;
        Ok(true)
    }

    fn load_kv(disk: &dyn Disk, config: &NamesrvConfig) -> Result<KvConfig, String> {
        match &config.kv_config_path {
            Some(path) => crate::fsutil::load_json(disk, path, KV_FILE_BYTES_MAX),
            None => Ok(KvConfig::default()),
        }
    }

    /// Ticks the table whenever it asks to be ticked, until shutdown.
    async fn housekeeping(self: Arc<Self>, shutdown: Flag) {
        loop {
            let now = now_millis();
            let wake =
                self.table().poll_timeout().unwrap_or(now + self.config.route.scan_interval_ms);
            let nap = Duration::from_millis(
                wake.saturating_sub(now).clamp(1, self.config.route.scan_interval_ms),
            );
            tokio::select! {
                biased;
                () = tokio::time::sleep(nap) => {}
                _ = shutdown.wait() => return,
            }
            self.change_table(|table| table.tick(now_millis()));
        }
    }
}

struct Handler(Arc<Namesrv>);

impl RequestHandler for Handler {
    fn handle(&self, conn: &Connection, request: RemotingCommand) -> Handled {
        let response = self.0.dispatch(conn, &request).unwrap_or_else(|e| {
            RemotingCommand::response(
                response::SYSTEM_ERROR,
                format!(
                    "{} ({}) request rejected: {e}",
                    petrel_net::codec::codes::request_name(request.code),
                    request.code
                ),
            )
        });
        // In simulation builds every request is a step after which the cores must hold.
        #[cfg(madsim)]
        self.0.check_invariants();
        Handled::Now(response)
    }

    fn connection_closed(&self, conn: &Connection) {
        self.0.change_table(|table| table.connection_closed(conn.id()));
        #[cfg(madsim)]
        self.0.check_invariants();
    }
}

/// A running NameServer.
pub struct NamesrvHandle {
    pub local_addr: std::net::SocketAddr,
    /// Where metrics are served, when `metricsExporterType=PROM`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub state: Arc<Namesrv>,
    stop: SetOnDrop,
    done: tokio::task::JoinHandle<()>,
}

impl NamesrvHandle {
    /// Stops accepting, closes connections, and waits for the server to finish.
    pub async fn shutdown(self) {
        self.stop.set();
        let _ = self.done.await;
    }
}

impl Namesrv {
    /// A snapshot of the route table's cluster view, for tests and tools.
    pub fn cluster_info(&self) -> petrel_core::model::ClusterInfo {
        self.table().cluster_info()
    }

    /// Checks the cores' invariants (the simulator calls this after each step).
    pub fn check_invariants(&self) {
        self.table().check_invariants();
        self.kv().check_invariants();
    }
}

/// Reads the KV config from `disk`, binds and starts the NameServer. The error says what
/// failed: a KV file that reads neither whole nor from its `.bak`, or the address.
pub async fn start(config: NamesrvConfig, disk: Arc<dyn Disk>) -> Result<NamesrvHandle, String> {
    let kv = Namesrv::load_kv(disk.as_ref(), &config)?;
    let addr = format!("{}:{}", config.bind_address, config.listen_port);
    let metrics_listener = config.metrics.bind(&config.bind_address).await?;
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let cannot_listen = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    let server = Server::bind(&addr, config.server.clone()).await.map_err(cannot_listen)?;
    let local_addr = server.local_addr().map_err(cannot_listen)?;
    let state = Arc::new(Namesrv {
        table: Mutex::new(RouteTable::new(config.route.clone())),
        kv: Mutex::new(kv),
        disk,
        server: server.handle(),
        live: Mutex::new((config.clone(), 0)),
        updating: Mutex::new(()),
        config,
    });
    let stop = SetOnDrop::new();
    let stopped = stop.flag();
    tokio::spawn(state.clone().housekeeping(stopped.clone()));
    if let Some(listener) = metrics_listener {
        let namesrv = state.clone();
        let render = Arc::new(move || namesrv.metrics_text(local_addr));
        tokio::spawn(crate::metrics::serve(listener, render, stopped.clone()));
    }
    let handler = Arc::new(Handler(state.clone()));
    let serve_stop = stopped;
    let done = tokio::spawn(async move {
        server
            .serve(handler, async move {
                serve_stop.wait().await;
            })
            .await;
    });
    tracing::info!(%local_addr, "namesrv listening");
    Ok(NamesrvHandle { local_addr, metrics_addr, state, stop, done })
}

/// A success response with a JSON body.
fn ok_with_body(body: Vec<u8>) -> RemotingCommand {
    RemotingCommand::response(response::SUCCESS, None).with_body(body)
}
