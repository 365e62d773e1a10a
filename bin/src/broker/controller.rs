//! A broker in controller mode talks to its controllers (RocketMQ 5's `ReplicasManager`,
//! `docs/failover.md`): it takes an id once and keeps it in `brokerIdentity`, registers, sends
//! BROKER_HEARTBEAT to every controller each `brokerHeartbeatInterval`, asks for the group's
//! replica info each `syncBrokerMetadataPeriod`, and sends what the role core asks for (an
//! election, a new sync-state set). The role core (`petrel_core::broker::replicas`) decides.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use petrel_core::broker::replicas::{
    GroupView, ProposalOutcome, Replicas, ReplicasAction, ReplicasConfig,
};
use petrel_core::controller::body::SyncStateSet;
use petrel_core::controller::code::{MASTER_STILL_EXIST, NOT_LEADER};
use petrel_core::controller::BrokerId;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    AlterSyncStateSetRequestHeader, AlterSyncStateSetResponseHeader, ApplyBrokerIdRequestHeader,
    ElectMasterRequestHeader, ElectMasterResponseHeader, GetNextBrokerIdRequestHeader,
    GetNextBrokerIdResponseHeader, GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader,
    RegisterBrokerToControllerRequestHeader, RegisterBrokerToControllerResponseHeader,
};
use petrel_net::headers::namesrv::BrokerHeartbeatRequestHeader;
use petrel_net::signal::Flag;
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::disk;

use super::config::ControllerModeConfig;
use super::{lock, Broker};
use crate::clock::now_millis;

/// How long a controller request may take (RocketMQ's 3 s).
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the role core is ticked (the set's shrink check) and a failed start is retried.
const TICK: Duration = Duration::from_secs(1);
/// The identity files are a line of a few dozen bytes.
const IDENTITY_BYTES_MAX: u64 = 4096;

/// The controller task and the heartbeat task.
pub(super) fn spawn(broker: &Arc<Broker>, stop: &Flag) -> Vec<tokio::task::JoinHandle<()>> {
    let link = Arc::new(Link::new(broker));
    vec![
        tokio::spawn(run(broker.clone(), link.clone(), stop.clone())),
        tokio::spawn(heartbeats(broker.clone(), link, stop.clone())),
        tokio::spawn(adopt_inherited(broker.clone(), stop.clone())),
    ]
}

/// After each promotion, serves the topics of the records the store held when it came, once
/// dispatch has passed them: the records a slave took past its old master's confirm offset
/// reach the consume queues only as the new master confirms them, after the promotion's own
/// `adopt_held_topics`. Ends the wait early if the role changes again.
async fn adopt_inherited(broker: Arc<Broker>, stop: Flag) {
    let dispatched = broker.store.dispatched();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = broker.promoted.notified() => {}
        }
        let Some((end, term)) = lock(&broker.inherited).take() else { continue };
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            _ = term.wait() => {}
            true = dispatched.wait_for(|at| at >= end) => broker.adopt_held_topics(),
        }
    }
}

/// The connection to the controllers: the leader as last found, and every controller.
struct Link {
    config: ControllerModeConfig,
    client: RemotingClient,
    leader: Mutex<Option<String>>,
}

impl Link {
    fn new(broker: &Broker) -> Link {
        let config = broker.config.controller.clone().expect("controller mode");
        Link {
            config,
            client: RemotingClient::new(ClientConfig::default(), None),
            leader: Mutex::new(None),
        }
    }

    /// Asks the leader: the one that last answered first, then each controller in turn; a
    /// controller that is not the leader answers CONTROLLER_NOT_LEADER and the next is tried.
    async fn ask(&self, command: RemotingCommand) -> Result<RemotingCommand, String> {
        let known = lock(&self.leader).clone();
        let mut last = "no controller answered".to_owned();
        for addr in known.iter().chain(self.config.controller_addrs.iter()) {
            match self.client.invoke(addr, command.clone(), ASK_TIMEOUT).await {
                Ok(reply) if reply.code == NOT_LEADER => last = format!("{addr} is not the leader"),
                Ok(reply) => {
                    *lock(&self.leader) = Some(addr.clone());
                    return Ok(reply);
                }
                Err(error) => last = format!("{addr}: {error}"),
            }
        }
        *lock(&self.leader) = None;
        Err(last)
    }

    /// `ask`, SUCCESS only.
    async fn ask_ok(&self, command: RemotingCommand) -> Result<RemotingCommand, String> {
        let code = command.code;
        let reply = self.ask(command).await?;
        match reply.code {
            response::SUCCESS => Ok(reply),
            other => Err(format!("request {code} refused: {other} {:?}", reply.remark)),
        }
    }
}

/// Takes an id, registers, then keeps the role current until `stop`.
async fn run(broker: Arc<Broker>, link: Arc<Link>, stop: Flag) {
    let mut from_core = lock(&broker.from_core).take().expect("one controller task");
    let view = loop {
        match start(&broker, &link).await {
            Ok(view) => break view,
            Err(why) => tracing::warn!(%why, "cannot join the controller yet; retrying"),
        }
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(TICK * 2) => {}
        }
    };
    broker.change_replicas(|replicas| replicas.view(view));
    let poll = Duration::from_millis(link.config.sync_metadata_ms);
    let mut next_poll = tokio::time::Instant::now() + poll;
    let mut next_tick = tokio::time::Instant::now() + TICK;
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            Some(action) = from_core.recv() => ask_for(&broker, &link, action).await,
            () = tokio::time::sleep_until(next_poll) => {
                next_poll = tokio::time::Instant::now() + poll;
                match replica_info(&broker, &link).await {
                    Ok(view) => { broker.change_replicas(|replicas| replicas.view(view)); }
                    Err(why) => tracing::warn!(%why, "cannot read the group's replica info"),
                }
            }
            () = tokio::time::sleep_until(next_tick) => {
                next_tick = tokio::time::Instant::now() + TICK;
                broker.change_replicas(|replicas| replicas.tick(now_millis()));
            }
        }
    }
}

/// The id (from `brokerIdentity`, or taken now), the role core, and the registration's view.
async fn start(broker: &Arc<Broker>, link: &Link) -> Result<GroupView, String> {
    let me = identity(broker, link).await?;
    let config = &link.config;
    let replicas_config = ReplicasConfig {
        all_ack: config.all_ack,
        min_in_sync: config.min_in_sync,
        not_catchup_ms: config.not_catchup_ms,
    };
    lock(&broker.replicas).get_or_insert_with(|| Replicas::new(replicas_config, me));
    let header = RegisterBrokerToControllerRequestHeader {
        cluster_name: broker.config.cluster_name.clone(),
        broker_name: broker.config.broker_name.clone(),
        broker_id: me,
        broker_address: broker.addr.clone(),
        invoke_time: Some(now_millis() as i64),
    };
    let ask = RemotingCommand::request(request::CONTROLLER_REGISTER_BROKER).with_header(&header);
    let reply = link.ask_ok(ask).await?;
    let answer: RegisterBrokerToControllerResponseHeader =
        reply.header().map_err(|e| format!("the registration's answer: {e}"))?;
    tracing::info!(broker_id = me, master = ?answer.master_broker_id, "registered with the controller");
    Ok(view(
        answer.master_broker_id,
        answer.master_address,
        answer.master_epoch,
        answer.sync_state_set_epoch,
        &reply.body,
    ))
}

/// A view from an answer's fields and its `SyncStateSet` body.
fn view(
    master: Option<i64>,
    addr: Option<String>,
    master_epoch: Option<i32>,
    set_epoch: Option<i32>,
    body: &[u8],
) -> GroupView {
    let set: SyncStateSet = from_json(body).unwrap_or_default();
    GroupView {
        master: master.zip(addr.filter(|a| !a.is_empty())),
        master_epoch: master_epoch.unwrap_or(0),
        set_epoch: set_epoch.unwrap_or(set.sync_state_set_epoch),
        set: set.sync_state_set,
    }
}

/// The files that keep this broker's id: `brokerIdentity` (`cluster#name#id`), and while an
/// id is being applied for, `brokerIdentity-temp` (`cluster#name#id#registerCheckCode`).
fn identity_paths(broker: &Broker) -> (PathBuf, PathBuf) {
    let root = &broker.config.store.root;
    (root.join("brokerIdentity"), root.join("brokerIdentity-temp"))
}

fn read_identity(broker: &Broker, path: &Path) -> Result<Option<Vec<String>>, String> {
    let bytes = disk::read_small(broker.disk.as_ref(), path, IDENTITY_BYTES_MAX)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(bytes) = bytes else { return Ok(None) };
    let text = String::from_utf8(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let fields: Vec<String> = text.trim_end().split('#').map(str::to_owned).collect();
    let ours = [&broker.config.cluster_name, &broker.config.broker_name];
    if fields.len() < 3 || fields[0] != *ours[0] || fields[1] != *ours[1] {
        return Err(format!(
            "{} holds {text:?}, not this broker's cluster#name#id ({}#{}#...): the store \
             belongs to another broker",
            path.display(),
            ours[0],
            ours[1]
        ));
    }
    Ok(Some(fields))
}

fn parse_id(fields: &[String], path: &Path) -> Result<BrokerId, String> {
    fields[2].parse().map_err(|_| format!("{}: {:?} is not a broker id", path.display(), fields[2]))
}

/// This broker's controller id: kept in `brokerIdentity`, or applied for now.
async fn identity(broker: &Broker, link: &Link) -> Result<BrokerId, String> {
    let (path, temp) = identity_paths(broker);
    if let Some(fields) = read_identity(broker, &path)? {
        return parse_id(&fields, &path);
    }
    let (cluster, name) = (&broker.config.cluster_name, &broker.config.broker_name);
    let (id, code) = match read_identity(broker, &temp)? {
        // A crash between applying and writing the identity: apply again with the same code.
        Some(fields) if fields.len() == 4 => (parse_id(&fields, &temp)?, fields[3].clone()),
        _ => {
            let header = GetNextBrokerIdRequestHeader {
                cluster_name: cluster.clone(),
                broker_name: name.clone(),
            };
            let ask = RemotingCommand::request(request::CONTROLLER_GET_NEXT_BROKER_ID)
                .with_header(&header);
            let reply = link.ask_ok(ask).await?;
            let next: GetNextBrokerIdResponseHeader =
                reply.header().map_err(|e| format!("the next id's answer: {e}"))?;
            let code = format!("{};{}", broker.addr, now_millis());
            let text = format!("{cluster}#{name}#{}#{code}", next.next_broker_id);
            write(broker, &temp, &text)?;
            (next.next_broker_id, code)
        }
    };
    let header = ApplyBrokerIdRequestHeader {
        cluster_name: cluster.clone(),
        broker_name: name.clone(),
        applied_broker_id: id,
        register_check_code: code,
    };
    let ask = RemotingCommand::request(request::CONTROLLER_APPLY_BROKER_ID).with_header(&header);
    if let Err(refused) = link.ask_ok(ask).await {
        // Another broker took it: start again from the next id.
        let _ = broker.disk.remove(&temp);
        return Err(refused);
    }
    write(broker, &path, &format!("{cluster}#{name}#{id}"))?;
    let _ = broker.disk.remove(&temp);
    tracing::info!(broker_id = id, "took a broker id from the controller");
    Ok(id)
}

fn write(broker: &Broker, path: &Path, text: &str) -> Result<(), String> {
    disk::write_atomically(broker.disk.as_ref(), path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn replica_info(broker: &Broker, link: &Link) -> Result<GroupView, String> {
    let header = GetReplicaInfoRequestHeader { broker_name: broker.config.broker_name.clone() };
    let ask = RemotingCommand::request(request::CONTROLLER_GET_REPLICA_INFO).with_header(&header);
    let reply = link.ask_ok(ask).await?;
    let answer: GetReplicaInfoResponseHeader =
        reply.header().map_err(|e| format!("the replica info's answer: {e}"))?;
    Ok(view(answer.master_broker_id, answer.master_address, answer.master_epoch, None, &reply.body))
}

/// Sends what the role core asked for and hands it the answer.
async fn ask_for(broker: &Broker, link: &Link, action: ReplicasAction) {
    match action {
        ReplicasAction::Elect => match elect(broker, link).await {
            Ok(view) => {
                broker.change_replicas(|replicas| replicas.view(view));
            }
            Err(why) => tracing::info!(%why, "no master elected yet"),
        },
        ReplicasAction::ProposeSet { set, set_epoch, master_epoch, seq, joiners_hold } => {
            let promised = broker.store.promised();
            let outcome = match joiners_hold {
                Some(held) if held < promised => {
                    tracing::debug!(
                        held,
                        promised,
                        "a joining slave lacks records promised; not proposed yet"
                    );
                    ProposalOutcome::NotReplicated
                }
                _ => match propose(broker, link, &set, set_epoch, master_epoch).await {
                    Ok(epoch) => ProposalOutcome::Replicated(set, epoch),
                    Err(why) => {
                        tracing::info!(%why, "the sync-state set was not changed");
                        ProposalOutcome::NotReplicated
                    }
                },
            };
            broker.change_replicas(|replicas| replicas.proposal_answered(seq, outcome));
        }
        _ => {}
    }
}

async fn elect(broker: &Broker, link: &Link) -> Result<GroupView, String> {
    let me = lock(&broker.replicas).as_ref().map(Replicas::me).unwrap_or_default();
    let header = ElectMasterRequestHeader {
        cluster_name: broker.config.cluster_name.clone(),
        broker_name: broker.config.broker_name.clone(),
        broker_id: me,
        designate_elect: false,
        invoke_time: Some(now_millis() as i64),
    };
    let ask = RemotingCommand::request(request::CONTROLLER_ELECT_MASTER).with_header(&header);
    let reply = link.ask(ask).await?;
    // The master stays: both answers name it.
    if reply.code != response::SUCCESS && reply.code != MASTER_STILL_EXIST {
        return Err(format!("election refused: {} {:?}", reply.code, reply.remark));
    }
    let answer: ElectMasterResponseHeader =
        reply.header().map_err(|e| format!("the election's answer: {e}"))?;
    let body: petrel_core::controller::body::ElectMasterResponseBody =
        from_json(&reply.body).unwrap_or_default();
    let set = SyncStateSet {
        sync_state_set: body.sync_state_set,
        sync_state_set_epoch: answer.sync_state_set_epoch.unwrap_or(0),
    };
    let set_body = to_json(&set, JsonStyle::Fastjson);
    Ok(view(
        answer.master_broker_id,
        answer.master_address,
        answer.master_epoch,
        answer.sync_state_set_epoch,
        &set_body,
    ))
}

async fn propose(
    broker: &Broker,
    link: &Link,
    set: &BTreeSet<BrokerId>,
    set_epoch: i32,
    master_epoch: i32,
) -> Result<i32, String> {
    let me = lock(&broker.replicas).as_ref().map(Replicas::me).unwrap_or_default();
    let header = AlterSyncStateSetRequestHeader {
        broker_name: broker.config.broker_name.clone(),
        master_broker_id: me,
        master_epoch,
        invoke_time: Some(now_millis() as i64),
    };
    let body = SyncStateSet { sync_state_set: set.clone(), sync_state_set_epoch: set_epoch };
    let ask = RemotingCommand::request(request::CONTROLLER_ALTER_SYNC_STATE_SET)
        .with_header(&header)
        .with_body(to_json(&body, JsonStyle::Fastjson));
    let reply = link.ask_ok(ask).await?;
    let answer: AlterSyncStateSetResponseHeader =
        reply.header().map_err(|e| format!("the set change's answer: {e}"))?;
    tracing::info!(?set, epoch = answer.new_sync_state_set_epoch, "sync-state set changed");
    Ok(answer.new_sync_state_set_epoch)
}

/// BROKER_HEARTBEAT to every controller each `brokerHeartbeatInterval`, once the broker has
/// its id: its epoch, its log's end and confirm offset, for the controller's elections.
async fn heartbeats(broker: Arc<Broker>, link: Arc<Link>, stop: Flag) {
    let period = Duration::from_millis(link.config.heartbeat_interval_ms);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(period) => {}
        }
        let Some(me) = lock(&broker.replicas).as_ref().map(Replicas::me) else { continue };
        let store = broker.store();
        let header = BrokerHeartbeatRequestHeader {
            cluster_name: broker.config.cluster_name.clone(),
            broker_addr: broker.addr.clone(),
            broker_name: broker.config.broker_name.clone(),
            broker_id: Some(me),
            epoch: Some(store.last_epoch().map_or(0, |e| e.epoch)),
            max_offset: Some(store.written_offset() as i64),
            confirm_offset: Some(store.confirm_offset() as i64),
            heartbeat_timeout_mills: Some(link.config.heartbeat_timeout_ms as i64),
            election_priority: Some(link.config.election_priority),
        };
        for addr in &link.config.controller_addrs {
            let beat = RemotingCommand::request(request::BROKER_HEARTBEAT).with_header(&header);
            if let Err(error) = link.client.invoke_oneway(addr, beat).await {
                tracing::debug!(controller = %addr, %error, "heartbeat not sent");
            }
        }
    }
}
