//! The controller service: one raft replica of the broker groups' metadata
//! ([`petrel_core::controller::node`]) bound to a socket, a clock and a disk.
//!
//! Every `tickInterval` the node ticks, on a schedule jittered by up to a fifth from a
//! generator seeded by the raft id (so the controllers drift apart); raft messages travel as
//! PETREL_RAFT_MESSAGE (oneway, raft-rs's protobuf in the body). After each turn of the node
//! the service sends the messages that need nothing persisted, writes the raft state file
//! whole (`raft-state`, renamed over the old one, on the `Disk` trait) when the turn changed
//! it, then sends the rest.
//!
//! Requests: heartbeats (every controller records them; `brokers`), the metadata
//! (CONTROLLER_GET_METADATA_INFO, here), and on the leader only the rest: broker ids
//! (`broker_id`), registration, replica info, sync-state data, cleaning (`brokers`),
//! elections and sync-state set changes (`elect`, which also runs the scan for dead masters).
//! A change is decided and replicated one at a time ([`Controller::decide`]).

mod broker_id;
mod brokers;
mod elect;
mod settings;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::broker::Refusal;
use petrel_core::controller::code;
use petrel_core::controller::node::{ControllerNode, Outcome, Output, Persisted};
use petrel_core::controller::{Event, Liveness};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::GetMetaDataResponseHeader;
use petrel_net::signal::{Flag, SetOnDrop};
use petrel_net::transport::{
    not_supported, ClientConfig, Connection, Handled, RemotingClient, RequestHandler, Server,
    ServerConfig,
};
use petrel_storage::disk::{self, Disk};
use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::config::{ConfigError, Properties};

/// The raft state file's largest size read back; a bigger one is refused, not allocated.
const STATE_BYTES_MAX: u64 = 256 << 20;

/// Controller settings, by RocketMQ's property names.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `controllerDLegerGroup`: the raft group's name.
    pub group: String,
    /// `controllerDLegerPeers`: `n0-host:port;n1-host:port;...`, the same list, in the same
    /// order, on every controller (raft ids are positions in it, from 1).
    pub peers: Vec<(String, String)>,
    /// `controllerDLegerSelfId`: this controller's name in `peers`.
    pub self_id: String,
    /// `controllerStorePath`: where the raft state file lives.
    pub store_path: PathBuf,
    /// `tickInterval` (Petrel): milliseconds between raft ticks; an election follows ten
    /// silent ticks, heartbeats every two.
    pub tick_ms: u64,
    /// `enableElectUncleanMaster`: when no member of a group's sync-state set lives, elect
    /// another broker of the group, losing what only the set had.
    pub elect_unclean_master: bool,
    /// `notifyBrokerRoleChanged`: tell a group's live brokers of a new master at once
    /// (NOTIFY_BROKER_ROLE_CHANGED), not only when they next ask.
    pub notify_broker_role_changed: bool,
    /// `scanNotActiveBrokerInterval`: milliseconds between scans for brokers whose heartbeats
    /// stopped, and for groups whose master is gone.
    pub scan_not_active_broker_ms: u64,
    /// `snapshotEntries` (Petrel): applied entries between two snapshots of the metadata; the
    /// log before a snapshot is dropped, so the raft state file stays small.
    pub snapshot_entries: u64,
    pub server: ServerConfig,
    /// Told of every event as this controller applies it, with its log index (for the
    /// simulator's checkers; none in a real process).
    pub on_applied: Option<AppliedHook>,
}

/// What an [`AppliedHook`] calls.
pub type OnApplied = dyn Fn(u64, &Event) + Send + Sync;

/// A function told of each applied event and its index.
#[derive(Clone)]
pub struct AppliedHook(pub Arc<OnApplied>);

impl std::fmt::Debug for AppliedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppliedHook")
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        ControllerConfig {
            group: "DefaultControllerGroup".to_owned(),
            peers: vec![("n0".to_owned(), "127.0.0.1:9878".to_owned())],
            self_id: "n0".to_owned(),
            store_path: home.join("DledgerController"),
            tick_ms: 100,
            elect_unclean_master: false,
            notify_broker_role_changed: true,
            scan_not_active_broker_ms: 5000,
            snapshot_entries: petrel_core::controller::node::SNAPSHOT_ENTRIES_DEFAULT,
            server: ServerConfig::default(),
            on_applied: None,
        }
    }
}

impl ControllerConfig {
    pub fn apply(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        props.apply("controllerDLegerGroup", &mut self.group, "a name")?;
        let peers: Vec<String> = self.peers.iter().map(|(n, addr)| format!("{n}-{addr}")).collect();
        let mut peers = peers.join(";");
        props.apply("controllerDLegerPeers", &mut peers, "n0-host:port;n1-host:port")?;
        if !peers.is_empty() {
            self.peers = parse_peers(&peers).ok_or_else(|| ConfigError::Invalid {
                key: "controllerDLegerPeers".into(),
                value: peers,
                expected: "n0-host:port;n1-host:port",
            })?;
        }
        props.apply("controllerDLegerSelfId", &mut self.self_id, "a peer name")?;
        let mut store = self.store_path.display().to_string();
        props.apply("controllerStorePath", &mut store, "a directory")?;
        if !store.is_empty() {
            self.store_path = PathBuf::from(store);
        }
        props.apply("tickInterval", &mut self.tick_ms, "milliseconds")?;
        props.apply("enableElectUncleanMaster", &mut self.elect_unclean_master, "true or false")?;
        props.apply(
            "notifyBrokerRoleChanged",
            &mut self.notify_broker_role_changed,
            "true or false",
        )?;
        props.apply(
            "scanNotActiveBrokerInterval",
            &mut self.scan_not_active_broker_ms,
            "milliseconds",
        )?;
        props.apply("snapshotEntries", &mut self.snapshot_entries, "a number of entries")?;
        if self.snapshot_entries == 0 {
            return Err(ConfigError::Invalid {
                key: "snapshotEntries".into(),
                value: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(())
    }

    /// This controller's raft id (its position in `peers`, from 1) and address.
    pub fn me(&self) -> Result<(u64, &str), String> {
        let at =
            self.peers.iter().position(|(name, _)| *name == self.self_id).ok_or_else(|| {
                format!("controllerDLegerSelfId {} is not in controllerDLegerPeers", self.self_id)
            })?;
        Ok((at as u64 + 1, &self.peers[at].1))
    }

    fn address_of(&self, raft_id: u64) -> Option<&str> {
        let index = usize::try_from(raft_id).ok()?.checked_sub(1)?;
        self.peers.get(index).map(|(_, addr)| addr.as_str())
    }
}

/// `n0-127.0.0.1:9878;n1-...` into names and addresses.
fn parse_peers(text: &str) -> Option<Vec<(String, String)>> {
    let peers: Option<Vec<_>> = text
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('-').map(|(n, a)| (n.to_owned(), a.to_owned())))
        .collect();
    peers.filter(|p| !p.is_empty())
}

/// The controller's state: the raft node and what it has persisted, behind one async lock so
/// that turns (drive, persist, send) happen one at a time and in order.
pub struct Controller {
    config: ControllerConfig,
    raft_id: u64,
    disk: Arc<dyn Disk>,
    inner: tokio::sync::Mutex<Inner>,
    peers: RemotingClient,
    /// Set, with the reason, when the raft state file could not be written: the controller
    /// stops taking part (nothing unpersisted may reach a peer) and the process exits.
    failed: Flag,
    failure: std::sync::Mutex<String>,
    /// Woken after every turn of the node.
    applied: tokio::sync::Notify,
    /// Held by the one decision in progress ([`Controller::decide`]).
    writer: tokio::sync::Mutex<()>,
    /// Reads waiting for a quorum's confirmation, by tag ([`Controller::read`]).
    pending_reads: std::sync::Mutex<BTreeMap<u64, ReadWaiter>>,
    next_read: std::sync::atomic::AtomicU64,
    /// Which brokers heartbeat to this controller: each controller keeps its own, since
    /// brokers heartbeat to all of them, and only the leader acts on it.
    liveness: std::sync::Mutex<Liveness>,
    /// What an admin may change while it runs (UPDATE_CONTROLLER_CONFIG).
    settings: std::sync::Mutex<settings::Settings>,
}

struct Inner {
    node: ControllerNode,
    persisted: Persisted,
}

/// Where a confirmed read's commit index goes.
type ReadWaiter = tokio::sync::oneshot::Sender<u64>;

/// The leader's right to decide one change ([`Controller::decide`]).
struct Deciding<'a> {
    _writer: tokio::sync::MutexGuard<'a, ()>,
    inner: tokio::sync::MutexGuard<'a, Inner>,
}

/// Decodes a request's header.
fn header<H: petrel_net::codec::header::CommandHeader>(
    request: &RemotingCommand,
) -> Result<H, Refusal> {
    request.header().map_err(|e| {
        let name = petrel_net::codec::codes::request_name(request.code);
        Refusal::new(response::SYSTEM_ERROR, format!("{name}: {e}"))
    })
}

/// A handler's answer or refusal, as the answer to send.
async fn answer(
    handled: impl std::future::Future<Output = Result<RemotingCommand, Refusal>>,
) -> RemotingCommand {
    handled.await.unwrap_or_else(RemotingCommand::from)
}

impl Controller {
    fn settings(&self) -> settings::Settings {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state_path(&self) -> PathBuf {
        self.config.store_path.join("raft-state")
    }

    /// Drives the node until it has nothing more to do: sends, persists, sends.
    async fn turn(&self, inner: &mut Inner) {
        while !self.failed.is_set() {
            let out = inner.node.drive();
            if out.is_empty() {
                return;
            }
            self.send(&out.messages).await;
            if Persisted::changed_by(&out) {
                inner.persisted.record(&out);
                let path = self.state_path();
                let written =
                    disk::write_atomically(self.disk.as_ref(), &path, &inner.persisted.encode());
                if let Err(e) = written {
                    let why = format!("cannot write the raft state file {}: {e}", path.display());
                    *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = why;
                    self.failed.set();
                    return;
                }
            }
            self.send(&out.persisted_messages).await;
            for &(ctx, index) in &out.reads {
                if let Some(waiter) = self.reads().remove(&ctx) {
                    let _ = waiter.send(index);
                }
            }
            log_applied(&out, self.config.on_applied.as_ref());
            // Every turn: entries without events (a new leader's first) move the applied
            // index too, and reads wait on it.
            self.applied.notify_waiters();
        }
    }

    async fn send(&self, messages: &[Message]) {
        for message in messages {
            let Some(addr) = self.config.address_of(message.to) else { continue };
            let Ok(body) = message.write_to_bytes() else { continue };
            let request = RemotingCommand::request(request::PETREL_RAFT_MESSAGE).with_body(body);
            // Lost messages are raft's to recover from.
            let _ = self.peers.invoke_oneway(addr, request).await;
        }
    }

    async fn tick_loop(self: Arc<Self>, stop: Flag) {
        let mut jitter = Jitter::new(self.raft_id);
        loop {
            let nap = Duration::from_millis(jitter.next(self.config.tick_ms));
            tokio::select! {
                biased;
                _ = stop.wait() => return,
                () = tokio::time::sleep(nap) => {}
            }
            let mut inner = self.inner.lock().await;
            if self.failed.is_set() {
                return;
            }
            inner.node.tick();
            self.turn(&mut inner).await;
        }
    }

    async fn raft_message(self: Arc<Self>, body: bytes::Bytes) -> RemotingCommand {
        let message = match Message::parse_from_bytes(&body) {
            Ok(message) => message,
            Err(e) => {
                return RemotingCommand::response(
                    response::SYSTEM_ERROR,
                    format!("not a raft message: {e}"),
                )
            }
        };
        let mut inner = self.inner.lock().await;
        if self.failed.is_set() {
            let why = "this controller stopped: its raft state file could not be written";
            return RemotingCommand::response(response::SYSTEM_ERROR, Some(why.to_owned()));
        }
        if let Err(e) = inner.node.step(message) {
            tracing::debug!(error = %e, "raft message refused");
        }
        self.turn(&mut inner).await;
        RemotingCommand::response(response::SUCCESS, None)
    }

    /// CONTROLLER_NOT_LEADER (2007), naming the leader, unless this controller leads.
    fn leads(&self, inner: &Inner) -> Result<(), Refusal> {
        if inner.node.is_leader() {
            return Ok(());
        }
        Err(self.not_leader(inner.node.leader()))
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_leader(&self, leader: u64) -> Refusal {
        let leader = self.config.address_of(leader).unwrap_or("unknown");
        let why = format!("this controller is not the leader; the leader is {leader}");
        Refusal::new(code::NOT_LEADER, why)
    }

    /// The metadata to read, as of a moment within the call: on the leader, once a quorum
    /// confirmed it still leads (raft's ReadIndex) and the log is applied to the commit index
    /// of that moment. A leader cut off from the others, which does not know it yet, cannot
    /// confirm, and answers CONTROLLER_NOT_LEADER after 3 s rather than an old state.
    async fn read(&self) -> Result<tokio::sync::MutexGuard<'_, Inner>, Refusal> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let (confirmed, wait) = tokio::sync::oneshot::channel();
        let ctx = self.next_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            // A new leader's first entry commits within a heartbeat or two.
            let why = "this new leader has not committed an entry of its term; retry";
            let mut inner = self
                .until(deadline, why, |inner| {
                    self.leads(inner)?;
                    Ok(inner.node.can_read())
                })
                .await?;
            self.reads().insert(ctx, confirmed);
            inner.node.read_index(ctx);
            self.turn(&mut inner).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Ok(index)) = tokio::time::timeout(left, wait).await else {
            self.reads().remove(&ctx);
            let why = "a quorum of controllers did not confirm this leader within 3 s; retry";
            return Err(Refusal::new(code::NOT_LEADER, why));
        };
        self.applied_to(index, deadline).await
    }

    /// The node once its log is applied to `index` (until `deadline`).
    async fn applied_to(
        &self,
        index: u64,
        deadline: tokio::time::Instant,
    ) -> Result<tokio::sync::MutexGuard<'_, Inner>, Refusal> {
        let why = "this controller has not yet applied its log; retry";
        self.until(deadline, why, |inner| Ok(inner.node.applied_index() >= index)).await
    }

    /// The node once `ready` holds of it, looked at after every turn until `deadline`
    /// (then CONTROLLER_NOT_LEADER saying `why`); `ready` may refuse at once.
    async fn until(
        &self,
        deadline: tokio::time::Instant,
        why: &str,
        ready: impl Fn(&Inner) -> Result<bool, Refusal>,
    ) -> Result<tokio::sync::MutexGuard<'_, Inner>, Refusal> {
        loop {
            let notified = self.applied.notified();
            let inner = self.inner.lock().await;
            if ready(&inner)? {
                return Ok(inner);
            }
            drop(inner);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, notified).await.is_err() {
                return Err(Refusal::new(code::NOT_LEADER, why));
            }
        }
    }

    fn reads(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ReadWaiter>> {
        self.pending_reads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The right to change the metadata, on the leader: decisions happen one at a time, each
    /// against a metadata read as [`Controller::read`] reads it, with every entry of the log
    /// applied (RocketMQ's controller runs them on one thread for the same reason: two
    /// elections decided on one state could both apply). A decision that changes nothing is a
    /// read, and answers as one.
    async fn decide(&self) -> Result<Deciding<'_>, Refusal> {
        let writer = self.writer.lock().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let inner = self.read().await?;
        let last = inner.node.last_index();
        drop(inner);
        let inner = self.applied_to(last, deadline).await?;
        self.leads(&inner)?;
        Ok(Deciding { _writer: writer, inner })
    }

    /// Replicates a decided `event` and waits (up to 3 s) until it is applied here. The
    /// writer's right is held until then, so the next decision sees it.
    async fn replicate(&self, deciding: Deciding<'_>, event: &Event) -> Result<(), Refusal> {
        let Deciding { _writer, mut inner } = deciding;
        let proposal = inner.node.propose(event).map_err(|e| self.not_leader(e.leader))?;
        self.turn(&mut inner).await;
        drop(inner);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let why = "the change was not committed within 3 s; ask the leader again";
        let settled = |inner: &Inner| Ok(inner.node.outcome(proposal) != Outcome::Pending);
        let inner = self.until(deadline, why, settled).await?;
        match inner.node.outcome(proposal) {
            Outcome::Replaced => {
                let why =
                    "leadership changed before the change was committed; ask the leader again";
                Err(Refusal::new(code::NOT_LEADER, why))
            }
            Outcome::Unknown => {
                let why = "the log was compacted before the change's fate was read; ask again";
                Err(Refusal::new(code::NOT_LEADER, why))
            }
            _ => Ok(()),
        }
    }

    async fn metadata(self: Arc<Self>) -> RemotingCommand {
        let inner = self.inner.lock().await;
        let leader = inner.node.leader();
        let name_of = |id: u64| {
            let index = usize::try_from(id).ok().and_then(|i| i.checked_sub(1));
            index.and_then(|i| self.config.peers.get(i))
        };
        let (leader_id, leader_addr) =
            name_of(leader).map_or((String::new(), String::new()), |(n, a)| (n.clone(), a.clone()));
        let peers: String = self.config.peers.iter().map(|(n, a)| format!("{n}:{a};")).collect();
        let header = GetMetaDataResponseHeader {
            group: self.config.group.clone(),
            controller_leader_id: leader_id,
            controller_leader_address: leader_addr,
            is_leader: inner.node.is_leader(),
            peers,
        };
        RemotingCommand::response(response::SUCCESS, None).with_header(&header)
    }
}

fn log_applied(out: &Output, hook: Option<&AppliedHook>) {
    for (index, event) in &out.applied {
        tracing::info!(index, ?event, "controller metadata changed");
        if let Some(hook) = hook {
            (hook.0)(*index, event);
        }
    }
    if let Some(snapshot) = &out.received_snapshot {
        let index = snapshot.get_metadata().index;
        tracing::info!(index, "controller took the leader's snapshot of the metadata");
    }
    if let Some(snapshot) = &out.compacted {
        tracing::debug!(index = snapshot.get_metadata().index, "controller log compacted");
    }
}

/// Each tick's delay: `tick_ms` plus up to a fifth more, from a small generator seeded by the
/// raft id, so that controllers drift apart and one of them stands for election first.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        Jitter(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self, tick_ms: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        tick_ms + self.0 % (tick_ms / 5 + 1)
    }
}

struct Handler(Arc<Controller>);

fn later(
    handled: impl std::future::Future<Output = Result<RemotingCommand, Refusal>> + Send + 'static,
) -> Handled {
    Handled::Later(Box::pin(answer(handled)))
}

impl RequestHandler for Handler {
    fn handle(&self, _conn: &Connection, request: RemotingCommand) -> Handled {
        let controller = self.0.clone();
        match request.code {
            request::PETREL_RAFT_MESSAGE => {
                Handled::Later(Box::pin(controller.raft_message(request.body_bytes())))
            }
            request::CONTROLLER_GET_METADATA_INFO => {
                Handled::Later(Box::pin(controller.metadata()))
            }
            request::GET_CONTROLLER_CONFIG => Handled::Now(settings::get(&controller)),
            request::UPDATE_CONTROLLER_CONFIG => {
                Handled::Now(settings::update(&controller, &request))
            }
            request::BROKER_HEARTBEAT => Handled::Now(
                brokers::heartbeat(&controller, &request).unwrap_or_else(RemotingCommand::from),
            ),
            request::CONTROLLER_GET_NEXT_BROKER_ID => later(broker_id::next(controller, request)),
            request::CONTROLLER_APPLY_BROKER_ID => later(broker_id::apply(controller, request)),
            request::CONTROLLER_REGISTER_BROKER => later(brokers::register(controller, request)),
            request::CONTROLLER_GET_REPLICA_INFO => {
                later(brokers::replica_info(controller, request))
            }
            request::CONTROLLER_GET_SYNC_STATE_DATA => {
                later(brokers::sync_state_data(controller, request))
            }
            request::CLEAN_BROKER_DATA => later(brokers::clean(controller, request)),
            request::CONTROLLER_ELECT_MASTER => later(elect::request(controller, request)),
            request::CONTROLLER_ALTER_SYNC_STATE_SET => later(elect::alter(controller, request)),
            other => Handled::Now(not_supported(other)),
        }
    }
}

/// A running controller.
pub struct ControllerHandle {
    pub local_addr: std::net::SocketAddr,
    pub state: Arc<Controller>,
    stop: SetOnDrop,
    done: tokio::task::JoinHandle<()>,
}

impl ControllerHandle {
    /// Waits until the controller cannot go on (its raft state file could not be written);
    /// the reason.
    pub async fn failed(&self) -> String {
        self.state.failed.wait().await;
        self.state.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether this controller leads its raft group now.
    pub async fn is_leader(&self) -> bool {
        self.state.inner.lock().await.node.is_leader()
    }

    pub async fn shutdown(self) {
        self.stop.set();
        let _ = self.done.await;
    }
}

/// Loads the raft state, binds this controller's peer address and starts ticking.
pub async fn start(
    config: ControllerConfig,
    disk: Arc<dyn Disk>,
) -> Result<ControllerHandle, String> {
    let (raft_id, addr) = config.me()?;
    let bind = addr.to_owned();
    disk.create_dir_all(&config.store_path)
        .map_err(|e| format!("cannot create {}: {e}", config.store_path.display()))?;
    let path = config.store_path.join("raft-state");
    let persisted = match disk::read_small(disk.as_ref(), &path, STATE_BYTES_MAX) {
        Ok(Some(bytes)) => Persisted::decode(&bytes)
            .map_err(|e| format!("the raft state file {} is damaged: {e}", path.display()))?,
        Ok(None) => Persisted::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let ids: Vec<u64> = (1..=config.peers.len() as u64).collect();
    let node = ControllerNode::new(raft_id, &ids, &persisted)
        .map_err(|e| e.to_string())?
        .snapshot_every(config.snapshot_entries);
    let server = Server::bind(&bind, config.server.clone())
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let local_addr = server.local_addr().map_err(|e| e.to_string())?;
    let state = Arc::new(Controller {
        raft_id,
        disk,
        inner: tokio::sync::Mutex::new(Inner { node, persisted }),
        peers: RemotingClient::new(ClientConfig::default(), None),
        failed: Flag::new(),
        failure: std::sync::Mutex::default(),
        applied: tokio::sync::Notify::new(),
        writer: tokio::sync::Mutex::new(()),
        pending_reads: std::sync::Mutex::default(),
        next_read: std::sync::atomic::AtomicU64::new(1),
        liveness: std::sync::Mutex::default(),
        settings: std::sync::Mutex::new(settings::Settings::of(&config)),
        config,
    });
    let stop = SetOnDrop::new();
    let stopped = stop.flag();
    tokio::spawn(state.clone().tick_loop(stopped.clone()));
    tokio::spawn(elect::scan_loop(state.clone(), stopped.clone()));
    let handler = Arc::new(Handler(state.clone()));
    let done = tokio::spawn(async move {
        server.serve(handler, async move { stopped.wait().await }).await;
    });
    tracing::info!(%local_addr, raft_id, "controller listening");
    Ok(ControllerHandle { local_addr, state, stop, done })
}
