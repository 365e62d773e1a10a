//! getControllerMetaData, getSyncStateSet, electMaster, getBrokerEpoch: the controller's
//! view of the broker groups, and a broker's epochs (docs/failover.md).

use std::fmt::Write;

use clap::Args;
use petrel_core::controller::body::{
    BrokerReplicasInfo, ElectMasterResponseBody, EpochEntryCache, ReplicaIdentity,
};
use petrel_net::codec::codes::request;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    ElectMasterRequestHeader, ElectMasterResponseHeader, GetMetaDataResponseHeader,
};
use serde_json::json;

use super::{decode_body, Admin, Common, Output};

#[derive(Args, Debug)]
pub struct GetControllerMetaData {
    #[command(flatten)]
    common: Common,
    /// A controller's address.
    #[arg(short = 'a', long = "controllerAddress")]
    controller: String,
}

pub async fn metadata(args: GetControllerMetaData) -> Result<Output, String> {
    let admin = Admin::for_controller();
    let request = RemotingCommand::request(request::CONTROLLER_GET_METADATA_INFO);
    let answer = admin.call(first(&args.controller), request).await?;
    let meta: GetMetaDataResponseHeader = answer
        .header()
        .map_err(|e| format!("the controller answered without its metadata: {e}"))?;
    let mut text = format!(
        "\n#ControllerGroup\t{}\n#ControllerLeaderId\t{}\n#ControllerLeaderAddress\t{}",
        meta.group, meta.controller_leader_id, meta.controller_leader_address
    );
    let peers: Vec<&str> = meta.peers.split(';').filter(|p| !p.is_empty()).collect();
    for peer in &peers {
        let _ = write!(text, "\n#Peer:\t{peer}");
    }
    text.push('\n');
    let json = json!({
        "group": meta.group, "controllerLeaderId": meta.controller_leader_id,
        "controllerLeaderAddress": meta.controller_leader_address, "isLeader": meta.is_leader,
        "peers": peers,
    });
    Ok(Output::new(&args.common, text, json))
}

/// The first of `a;b;c`, as mqadmin takes it.
fn first(addresses: &str) -> &str {
    addresses.split(';').next().unwrap_or(addresses).trim()
}

/// The raft leader, as the named controller knows it: requests other than the metadata are
/// the leader's to answer (mqadmin asks the same way).
async fn leader(admin: &Admin, controllers: &str) -> Result<String, String> {
    let request = RemotingCommand::request(request::CONTROLLER_GET_METADATA_INFO);
    let answer = admin.call(first(controllers), request).await?;
    let meta: GetMetaDataResponseHeader = answer
        .header()
        .map_err(|e| format!("the controller answered without its metadata: {e}"))?;
    match meta.controller_leader_address.is_empty() {
        true => Err(format!("controller {} knows no leader yet", first(controllers))),
        false => Ok(meta.controller_leader_address),
    }
}

#[derive(Args, Debug)]
#[group(id = "which", required = true, multiple = false, args = ["broker_name", "cluster"])]
pub struct GetSyncStateSet {
    #[command(flatten)]
    common: Common,
    /// A controller's address.
    #[arg(short = 'a', long = "controllerAddress")]
    controller: String,
    /// One broker group.
    #[arg(short = 'b', long = "brokerName")]
    broker_name: Option<String>,
    /// Every broker group of a cluster (through the NameServer).
    #[arg(short = 'c', long = "clusterName")]
    cluster: Option<String>,
}

pub async fn sync_state_set(args: GetSyncStateSet) -> Result<Output, String> {
    let names: Vec<String> = match (&args.broker_name, &args.cluster) {
        (Some(name), _) => vec![name.clone()],
        (None, cluster) => {
            let admin = Admin::connect(&args.common)?;
            let info = admin.cluster_info().await?;
            let cluster = cluster.as_deref().unwrap_or_default();
            info.cluster_addr_table.get(cluster).cloned().unwrap_or_default().into_iter().collect()
        }
    };
    let admin = Admin::for_controller();
    let request = RemotingCommand::request(request::CONTROLLER_GET_SYNC_STATE_DATA)
        .with_body(to_json(&names, JsonStyle::Fastjson));
    let answer = admin.call(&leader(&admin, &args.controller).await?, request).await?;
    let replicas: BrokerReplicasInfo = decode_body(&answer, "BrokerReplicasInfo")?;
    let mut text = String::new();
    for (name, group) in &replicas.replicas_info_table {
        let _ = write!(
            text,
            "\n#brokerName\t{name}\n#MasterBrokerId\t{}\n#MasterAddr\t{}\n#MasterEpoch\t{}\n\
             #SyncStateSetEpoch\t{}\n#SyncStateSetNums\t{}\n",
            group.master_broker_id.map_or_else(|| "null".to_owned(), |id| id.to_string()),
            group.master_address.as_deref().unwrap_or("null"),
            group.master_epoch,
            group.sync_state_set_epoch,
            group.in_sync_replicas.len()
        );
        for member in &group.in_sync_replicas {
            let _ = write!(text, "\nInSyncReplica:\t{}\n", identity(member));
        }
        for member in &group.not_in_sync_replicas {
            let _ = write!(text, "\nNotInSyncReplica:\t{}\n", identity(member));
        }
    }
    let json = serde_json::to_value(&replicas).map_err(|e| e.to_string())?;
    Ok(Output::new(&args.common, text, json))
}

/// RocketMQ's `ReplicaIdentity.toString`.
fn identity(member: &ReplicaIdentity) -> String {
    format!(
        "ReplicaIdentity{{brokerName='{}', brokerId={}, brokerAddress='{}', alive={}}}",
        member.broker_name, member.broker_id, member.broker_address, member.alive
    )
}

#[derive(Args, Debug)]
pub struct ElectMaster {
    #[command(flatten)]
    common: Common,
    /// A controller's address.
    #[arg(short = 'a', long = "controllerAddress")]
    controller: String,
    /// The id of the broker to make master.
    #[arg(short = 'b', long = "brokerId")]
    broker_id: i64,
    /// Its broker group.
    #[arg(long = "bn", alias = "brokerName")]
    broker_name: String,
    /// Its cluster.
    #[arg(short = 'c', long = "clusterName")]
    cluster: String,
}

pub async fn elect(args: ElectMaster) -> Result<Output, String> {
    let admin = Admin::for_controller();
    let header = ElectMasterRequestHeader {
        cluster_name: args.cluster.clone(),
        broker_name: args.broker_name.clone(),
        broker_id: args.broker_id,
        designate_elect: true,
        invoke_time: Some(petrel::clock::now_millis() as i64),
    };
    let request = RemotingCommand::request(request::CONTROLLER_ELECT_MASTER).with_header(&header);
    let answer = admin.call(&leader(&admin, &args.controller).await?, request).await?;
    let elected: ElectMasterResponseHeader =
        answer.header().map_err(|e| format!("the controller's answer has no header: {e}"))?;
    let body: ElectMasterResponseBody = decode_body(&answer, "ElectMasterResponseBody")?;
    let show = |v: Option<String>| v.unwrap_or_else(|| "null".to_owned());
    let mut text = format!(
        "\n#ClusterName\t{}\n#BrokerName\t{}\n#BrokerMasterAddr\t{}\n#MasterEpoch\t{}\n#SyncStateSetEpoch\t{}\n",
        args.cluster,
        args.broker_name,
        show(elected.master_address.clone()),
        show(elected.master_epoch.map(|e| e.to_string())),
        show(elected.sync_state_set_epoch.map(|e| e.to_string())),
    );
    if let Some(group) = &body.broker_member_group {
        for (id, addr) in &group.broker_addrs {
            let _ = writeln!(text, "\t#Broker\t{id}\t{addr}");
        }
    }
    let json = json!({
        "cluster": args.cluster, "brokerName": args.broker_name,
        "masterAddress": elected.master_address, "masterEpoch": elected.master_epoch,
        "syncStateSetEpoch": elected.sync_state_set_epoch, "syncStateSet": body.sync_state_set,
    });
    Ok(Output::new(&args.common, text, json))
}

#[derive(Args, Debug)]
#[group(id = "brokers", required = true, multiple = false, args = ["broker_name", "cluster"])]
pub struct GetBrokerEpoch {
    #[command(flatten)]
    common: Common,
    /// Every broker of one group.
    #[arg(short = 'b', long = "brokerName")]
    broker_name: Option<String>,
    /// Every broker of a cluster.
    #[arg(short = 'c', long = "clusterName")]
    cluster: Option<String>,
}

pub async fn epochs(args: GetBrokerEpoch) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let info = admin.cluster_info().await?;
    let names: Vec<String> = match (&args.broker_name, &args.cluster) {
        (Some(name), _) => vec![name.clone()],
        (None, cluster) => info
            .cluster_addr_table
            .get(cluster.as_deref().unwrap_or_default())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    };
    let addrs: Vec<String> = names
        .iter()
        .filter_map(|name| info.broker_addr_table.get(name))
        .flat_map(|data| data.broker_addrs.values().cloned())
        .collect();
    let (mut text, mut all) = (String::new(), Vec::new());
    for addr in addrs {
        let answer =
            admin.call(&addr, RemotingCommand::request(request::GET_BROKER_EPOCH_CACHE)).await?;
        let cache: EpochEntryCache = decode_body(&answer, "EpochEntryCache")?;
        let _ = write!(
            text,
            "\n#clusterName\t{}\n#brokerName\t{}\n#brokerAddr\t{addr}\n#brokerId\t{}",
            cache.cluster_name, cache.broker_name, cache.broker_id
        );
        let last = cache.epoch_list.len().saturating_sub(1);
        for (i, entry) in cache.epoch_list.iter().enumerate() {
            // As mqadmin: the newest epoch ends where the broker's log ends.
            let end = if i == last { cache.max_offset } else { entry.end_offset };
            let _ = write!(
                text,
                "\n#Epoch: EpochEntry{{epoch={}, startOffset={}, endOffset={end}}}",
                entry.epoch, entry.start_offset
            );
        }
        text.push('\n');
        all.push(json!({ "brokerAddr": addr, "cache": cache }));
    }
    Ok(Output::new(&args.common, text, json!(all)))
}
