//! `petrel admin`: mqadmin's commands, names and flags, for operators of Petrel (or RocketMQ)
//! without Java. Each command prints what mqadmin prints (`--json` prints JSON for scripts)
//! and exits non-zero with a message on bad flags, an unreachable server or a refusal.
//!
//! The NameServer comes from `-n` or, as mqadmin reads it, `NAMESRV_ADDR`. Commands that act
//! on brokers take `-b` (one broker's address) or `-c` (every master of a cluster, found
//! through the NameServer).

mod cluster;
mod config;
mod group;
mod ha;
mod message;
mod print;
mod queue;
mod reset;
mod rt;
mod stats;
mod status;
mod topic;

use std::time::Duration;

use clap::{Args, Subcommand};
use petrel_core::admin::GroupList;
use petrel_core::codes::response_name;
use petrel_core::model::{BrokerData, ClusterInfo, TopicList, TopicRouteData, MASTER_ID};
use petrel_net::codec::codes::{request, request_name, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    OffsetResponseHeader, SearchOffsetRequestHeader, TopicRequestHeader,
};
use petrel_net::headers::namesrv::GetRouteInfoRequestHeader;
use petrel_net::transport::{ClientConfig, RemotingClient};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Flags every command takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// NameServer address(es), `host:port;host:port` (default: $NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv: Option<String>,
    /// Print the result as JSON instead of mqadmin's text.
    #[arg(long)]
    json: bool,
}

/// Which brokers a command acts on.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// One broker, by its address `host:port`.
    #[arg(short = 'b', long = "brokerAddr")]
    broker: Option<String>,
    /// Every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    cluster: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create or update a topic on a broker or on every master of a cluster.
    #[command(name = "updateTopic")]
    UpdateTopic(topic::UpdateTopic),
    /// Delete a topic from a cluster's brokers and from the NameServer.
    #[command(name = "deleteTopic")]
    DeleteTopic(topic::DeleteTopic),
    /// List the topics the NameServer knows (with -c, their clusters and consumer groups).
    #[command(name = "topicList")]
    TopicList(topic::TopicList),
    /// Print a topic's route as the NameServer answers it.
    #[command(name = "topicRoute")]
    TopicRoute(topic::TopicRoute),
    /// The clusters a topic's brokers belong to.
    #[command(name = "topicClusterList")]
    TopicClusterList(topic::TopicRoute),
    /// Print every queue of a topic with its offsets.
    #[command(name = "topicStatus")]
    TopicStatus(topic::TopicStatus),
    /// Create or update a consumer group on a broker or on every master of a cluster.
    #[command(name = "updateSubGroup")]
    UpdateSubGroup(group::UpdateSubGroup),
    /// Delete a consumer group from a broker or from every master of a cluster.
    #[command(name = "deleteSubGroup")]
    DeleteSubGroup(group::DeleteSubGroup),
    /// A consumer group's progress in each queue, or every group's on the cluster.
    #[command(name = "consumerProgress")]
    ConsumerProgress(group::ConsumerProgress),
    /// Give a consumer group another's committed offsets of a topic.
    #[command(name = "cloneGroupOffset")]
    CloneGroupOffset(group::CloneGroupOffset),
    /// Move a consumer group's offsets of a topic to a time (or one queue's to an offset).
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime(reset::ResetOffsetByTime),
    /// A consumer group's live connections and subscriptions.
    #[command(name = "consumerConnection")]
    ConsumerConnection(group::ConsumerConnection),
    /// What each member of a consumer group reports of itself (one member's whole report
    /// with -i).
    #[command(name = "consumerStatus")]
    ConsumerStatus(status::ConsumerStatus),
    /// A producer group's live connections.
    #[command(name = "producerConnection")]
    ProducerConnection(group::ProducerConnection),
    /// The clusters and their brokers with their counters.
    #[command(name = "clusterList")]
    ClusterList(cluster::ClusterList),
    /// The time a send to each broker takes, every few seconds.
    #[command(name = "clusterRT")]
    ClusterRt(rt::ClusterRt),
    /// Each topic's messages in and each group's out, a second and in the last day.
    #[command(name = "statsAll")]
    StatsAll(stats::StatsAll),
    /// Have brokers delete their expired commit-log files now rather than at deleteWhen.
    #[command(name = "deleteExpiredCommitLog")]
    DeleteExpiredCommitLog(cluster::DeleteExpiredCommitLog),
    /// A broker's runtime figures.
    #[command(name = "brokerStatus")]
    BrokerStatus(cluster::BrokerStatus),
    /// The configuration a broker runs with.
    #[command(name = "getBrokerConfig")]
    GetBrokerConfig(cluster::GetBrokerConfig),
    /// Set a property of a broker, or of every master (with -a every broker) of a cluster.
    #[command(name = "updateBrokerConfig")]
    UpdateBrokerConfig(config::UpdateBrokerConfig),
    /// Set a property of every NameServer.
    #[command(name = "updateNamesrvConfig")]
    UpdateNamesrvConfig(config::UpdateNamesrvConfig),
    /// Create or update an entry of every NameServer's KV config.
    #[command(name = "updateKvConfig")]
    UpdateKvConfig(config::UpdateKvConfig),
    /// Delete an entry of every NameServer's KV config.
    #[command(name = "deleteKvConfig")]
    DeleteKvConfig(config::KvEntry),
    /// The configuration each NameServer runs with.
    #[command(name = "getNamesrvConfig")]
    GetNamesrvConfig(cluster::GetNamesrvConfig),
    /// Stop producers writing to a broker: the NameServer routes its topics read-only.
    #[command(name = "wipeWritePerm")]
    WipeWritePerm(cluster::WritePerm),
    /// Let producers write to a broker again.
    #[command(name = "addWritePerm")]
    AddWritePerm(cluster::WritePerm),
    /// Print messages by their offset ids (as a send answers them).
    #[command(name = "queryMsgById")]
    QueryMsgById(message::QueryMsgById),
    /// Print a message by its unique key (the id consumers see).
    #[command(name = "queryMsgByUniqueKey")]
    QueryMsgByUniqueKey(message::QueryMsgByUniqueKey),
    /// List the messages of a topic with a key.
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey(message::QueryMsgByKey),
    /// Print the message at a queue offset.
    #[command(name = "queryMsgByOffset")]
    QueryMsgByOffset(message::QueryMsgByOffset),
    /// Print the units of a consume queue from an index.
    #[command(name = "queryCq")]
    QueryCq(queue::QueryCq),
    /// Print a topic's messages, queue by queue, in a time range.
    #[command(name = "printMsg")]
    PrintMsg(print::PrintMsg),
    /// Print up to -c messages of a topic, a broker's queues or one queue.
    #[command(name = "consumeMessage")]
    ConsumeMessage(print::ConsumeMessage),
    /// Send one message.
    #[command(name = "sendMessage")]
    SendMessage(message::SendMessage),
    /// A controller's raft group: its leader and peers.
    #[command(name = "getControllerMetaData")]
    GetControllerMetaData(ha::GetControllerMetaData),
    /// The sync-state set of broker groups, as their controller keeps it.
    #[command(name = "getSyncStateSet")]
    GetSyncStateSet(ha::GetSyncStateSet),
    /// Make a broker of a group its master, through the controller.
    #[command(name = "electMaster")]
    ElectMaster(ha::ElectMaster),
    /// The epochs of brokers' commit logs (controller mode).
    #[command(name = "getBrokerEpoch")]
    GetBrokerEpoch(ha::GetBrokerEpoch),
}

/// `petrel admin` as a parser of its own: the console runs the same commands in process.
#[derive(clap::Parser, Debug)]
#[command(name = "petrel admin", no_binary_name = true)]
pub struct AdminLine {
    #[command(subcommand)]
    pub command: AdminCommand,
}

pub async fn run(command: AdminCommand) -> Result<(), String> {
    let output = execute(command).await?;
    print(output)
}

/// Runs one command: what it would print.
pub async fn execute(command: AdminCommand) -> Result<Output, String> {
    match command {
        AdminCommand::UpdateTopic(args) => topic::update(args).await,
        AdminCommand::DeleteTopic(args) => topic::delete(args).await,
        AdminCommand::TopicList(args) => topic::list(args).await,
        AdminCommand::TopicRoute(args) => topic::route(args).await,
        AdminCommand::TopicClusterList(args) => topic::clusters(args).await,
        AdminCommand::UpdateKvConfig(args) => config::update_kv(args).await,
        AdminCommand::DeleteKvConfig(args) => config::delete_kv(args).await,
        AdminCommand::TopicStatus(args) => topic::status(args).await,
        AdminCommand::UpdateSubGroup(args) => group::update(args).await,
        AdminCommand::DeleteSubGroup(args) => group::delete(args).await,
        AdminCommand::ConsumerProgress(args) => group::progress(args).await,
        AdminCommand::CloneGroupOffset(args) => group::clone_offsets(args).await,
        AdminCommand::ResetOffsetByTime(args) => reset::reset(args).await,
        AdminCommand::ConsumerConnection(args) => group::consumer_connection(args).await,
        AdminCommand::ConsumerStatus(args) => status::consumer_status(args).await,
        AdminCommand::ProducerConnection(args) => group::producer_connection(args).await,
        AdminCommand::ClusterList(args) => cluster::list(args).await,
        AdminCommand::ClusterRt(args) => rt::cluster_rt(args).await,
        AdminCommand::StatsAll(args) => stats::stats_all(args).await,
        AdminCommand::DeleteExpiredCommitLog(args) => cluster::delete_expired(args).await,
        AdminCommand::BrokerStatus(args) => cluster::broker_status(args).await,
        AdminCommand::GetBrokerConfig(args) => cluster::broker_config(args).await,
        AdminCommand::GetNamesrvConfig(args) => cluster::namesrv_config(args).await,
        AdminCommand::UpdateBrokerConfig(args) => config::update_broker(args).await,
        AdminCommand::UpdateNamesrvConfig(args) => config::update_namesrv(args).await,
        AdminCommand::WipeWritePerm(args) => cluster::write_perm(args, false).await,
        AdminCommand::AddWritePerm(args) => cluster::write_perm(args, true).await,
        AdminCommand::QueryMsgById(args) => message::by_id(args).await,
        AdminCommand::QueryMsgByUniqueKey(args) => message::by_unique(args).await,
        AdminCommand::QueryMsgByKey(args) => message::by_key(args).await,
        AdminCommand::QueryMsgByOffset(args) => message::by_offset(args).await,
        AdminCommand::SendMessage(args) => message::send(args).await,
        AdminCommand::QueryCq(args) => queue::query_cq(args).await,
        AdminCommand::PrintMsg(args) => print::print_msg(args).await,
        AdminCommand::ConsumeMessage(args) => print::consume_message(args).await,
        AdminCommand::GetControllerMetaData(args) => ha::metadata(args).await,
        AdminCommand::GetSyncStateSet(args) => ha::sync_state_set(args).await,
        AdminCommand::ElectMaster(args) => ha::elect(args).await,
        AdminCommand::GetBrokerEpoch(args) => ha::epochs(args).await,
    }
}

fn print(output: Output) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = match output.json {
        Some(json) if output.as_json => {
            let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
            writeln!(out, "{text}")
        }
        _ => write!(out, "{}", output.text),
    };
    // A reader that stopped reading (`| head`) is not an error of the command.
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// What a command prints: mqadmin's text, and the same as JSON for `--json`.
pub struct Output {
    text: String,
    json: Option<serde_json::Value>,
    as_json: bool,
}

impl Output {
    fn new(common: &Common, text: String, json: serde_json::Value) -> Output {
        Output { text, json: Some(json), as_json: common.json }
    }

    /// The result as JSON (what `--json` prints).
    pub fn into_json(self) -> serde_json::Value {
        self.json.unwrap_or(serde_json::Value::Null)
    }
}

/// A connection to the NameServers and brokers a command talks to.
pub struct Admin {
    client: RemotingClient,
    namesrvs: Vec<String>,
}

impl Admin {
    fn connect(common: &Common) -> Result<Admin, String> {
        let given = common.namesrv.clone().or_else(|| std::env::var("NAMESRV_ADDR").ok());
        let namesrvs: Vec<String> = given
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if namesrvs.is_empty() {
            return Err("no NameServer: give -n host:port or set NAMESRV_ADDR".into());
        }
        let client = RemotingClient::new(ClientConfig::default(), None);
        Ok(Admin { client, namesrvs })
    }

    /// A client for commands that speak to a controller named on their command line.
    fn for_controller() -> Admin {
        let client = RemotingClient::new(ClientConfig::default(), None);
        Admin { client, namesrvs: Vec::new() }
    }

    /// Sends `request` to `addr`; anything but SUCCESS is an error naming the server and code.
    async fn call(&self, addr: &str, request: RemotingCommand) -> Result<RemotingCommand, String> {
        let code = request.code;
        let answer = self.ask(addr, request).await?;
        accepted(addr, code, answer)
    }

    /// Sends `request` to `addr`: its answer, whatever its code.
    async fn ask(&self, addr: &str, request: RemotingCommand) -> Result<RemotingCommand, String> {
        let code = request.code;
        self.client
            .invoke(addr, request, TIMEOUT)
            .await
            .map_err(|e| format!("{} to {addr} failed: {e}", request_name(code)))
    }

    /// The first offset of `topic`'s queue `queue_id` on `addr` stored at or after `millis`
    /// (SEARCH_OFFSET_BY_TIMESTAMP).
    async fn search_offset(
        &self,
        addr: &str,
        topic: &str,
        queue_id: i32,
        millis: i64,
    ) -> Result<i64, String> {
        let header = SearchOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            timestamp: millis,
            boundary_type: None,
        };
        let request =
            RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP).with_header(&header);
        let answer = self.call(addr, request).await?;
        let found: OffsetResponseHeader =
            answer.header().map_err(|e| format!("{addr} answered no offset: {e}"))?;
        Ok(found.offset)
    }

    /// Sends `request` to the NameServers in turn until one answers.
    async fn call_namesrv(&self, request: RemotingCommand) -> Result<RemotingCommand, String> {
        let mut errors = Vec::new();
        for addr in &self.namesrvs {
            match self.call(addr, request.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    async fn cluster_info(&self) -> Result<ClusterInfo, String> {
        let answer =
            self.call_namesrv(RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO)).await?;
        decode_body(&answer, "ClusterInfo")
    }

    async fn route(&self, topic: &str) -> Result<TopicRouteData, String> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: Some(true),
        };
        let request =
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
        let answer = self.call_namesrv(request).await?;
        decode_body(&answer, "TopicRouteData")
    }

    /// Every topic the NameServers know, sorted.
    async fn all_topics(&self) -> Result<std::collections::BTreeSet<String>, String> {
        let request = RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER);
        let topics: TopicList = decode_body(&self.call_namesrv(request).await?, "TopicList")?;
        Ok(topics.topic_list.into_iter().collect())
    }

    /// The consumer groups of `topic` (QUERY_TOPIC_CONSUME_BY_WHO) on each master of its
    /// route; a master that does not answer adds none.
    async fn consumers_of(
        &self,
        route: &TopicRouteData,
        topic: &str,
    ) -> Result<std::collections::BTreeSet<String>, String> {
        let mut groups = std::collections::BTreeSet::new();
        for addr in route.master_addrs() {
            let header = TopicRequestHeader { topic: topic.to_owned() };
            let request =
                RemotingCommand::request(request::QUERY_TOPIC_CONSUME_BY_WHO).with_header(&header);
            if let Ok(answer) = self.call(addr, request).await {
                let list: GroupList = decode_body(&answer, "GroupList")?;
                groups.extend(list.group_list);
            }
        }
        Ok(groups)
    }

    /// The brokers `target` names: its address, or every master of its cluster, with their
    /// names (a broker given by address is named by it).
    async fn targets(&self, target: &Target) -> Result<Vec<(String, String)>, String> {
        if let Some(addr) = &target.broker {
            return Ok(vec![(addr.clone(), addr.clone())]);
        }
        let cluster = target.cluster.as_deref().unwrap_or_default();
        let info = self.cluster_info().await?;
        let masters = masters_of(&info, cluster);
        if masters.is_empty() {
            return Err(format!("cluster {cluster} has no master the NameServer knows"));
        }
        Ok(masters)
    }
}

/// `answer` from `addr` to a request of `code`, if it is SUCCESS; else an error naming the
/// server and the answer's code.
fn accepted(addr: &str, code: i32, answer: RemotingCommand) -> Result<RemotingCommand, String> {
    if answer.code == response::SUCCESS {
        return Ok(answer);
    }
    Err(format!(
        "{addr} refused {}: {} ({}){}",
        request_name(code),
        response_name(answer.code),
        answer.code,
        answer.remark.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
    ))
}

/// `(broker name, master address)` of each broker group of `cluster`, by name.
fn masters_of(info: &ClusterInfo, cluster: &str) -> Vec<(String, String)> {
    let names = info.cluster_addr_table.get(cluster).cloned().unwrap_or_default();
    let mut masters: Vec<(String, String)> = names
        .iter()
        .filter_map(|name| info.broker_addr_table.get(name))
        .filter_map(|data: &BrokerData| {
            let addr = data.broker_addrs.get(&MASTER_ID)?;
            Some((data.broker_name.clone(), addr.clone()))
        })
        .collect();
    masters.sort();
    masters
}

fn decode_body<T: serde::de::DeserializeOwned>(
    answer: &RemotingCommand,
    what: &str,
) -> Result<T, String> {
    from_json(&answer.body).map_err(|e| format!("the {what} answered is not readable: {e}"))
}

/// A time flag: milliseconds, `yyyy-MM-dd#HH:mm:ss:SSS` read in UTC, or, when `now` is
/// given, `now`.
fn admin_time(flag: &str, text: &str, now: Option<i64>) -> Result<i64, String> {
    let text = text.trim();
    if let (Some(now), "now") = (now, text) {
        return Ok(now);
    }
    let parsed = text.parse().ok().or_else(|| petrel_core::time::parse_admin_time(text));
    parsed.ok_or_else(|| {
        let now = if now.is_some() { "now, " } else { "" };
        format!("{flag} {text} is not a time: give {now}milliseconds or yyyy-MM-dd#HH:mm:ss:SSS")
    })
}

/// Java properties text as `(key, value)` pairs, in order.
fn properties(text: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (line.trim().to_owned(), String::new()),
        })
        .collect()
}
