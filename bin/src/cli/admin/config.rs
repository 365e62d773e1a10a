//! updateBrokerConfig, updateNamesrvConfig: one property set on running servers;
//! updateKvConfig, deleteKvConfig: one entry of the NameServers' KV config.

use std::fmt::Write;

use clap::Args;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{KvConfigKeyRequestHeader, PutKvConfigRequestHeader};
use serde_json::json;

use super::{Admin, Common, Output, Target};

#[derive(Args, Debug)]
pub struct UpdateBrokerConfig {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    target: Target,
    /// With -c, the slaves too (mqadmin takes a value here; any value, or none, will do).
    #[arg(short = 'a', long = "updateAllBroker", num_args = 0..=1, default_missing_value = "true")]
    all: Option<String>,
    /// The property's name, as in broker.conf.
    #[arg(short = 'k', long = "key")]
    key: String,
    /// Its new value.
    #[arg(short = 'v', long = "value")]
    value: String,
}

/// The Java properties body of one `key=value`.
fn body(key: &str, value: &str) -> Vec<u8> {
    format!("{}={}\n", key.trim(), value.trim()).into_bytes()
}

pub async fn update_broker(args: UpdateBrokerConfig) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let mut addrs: Vec<String> =
        admin.targets(&args.target).await?.into_iter().map(|(_, addr)| addr).collect();
    if let (Some(cluster), Some(_)) = (&args.target.cluster, &args.all) {
        let info = admin.cluster_info().await?;
        let names = info.cluster_addr_table.get(cluster).cloned().unwrap_or_default();
        addrs = names
            .iter()
            .filter_map(|name| info.broker_addr_table.get(name))
            .flat_map(|data| data.broker_addrs.values().cloned())
            .collect();
        addrs.sort();
    }
    let (mut text, mut answers) = (String::new(), Vec::new());
    for addr in addrs {
        let request = RemotingCommand::request(request::UPDATE_BROKER_CONFIG)
            .with_body(body(&args.key, &args.value));
        let answer = admin.call(&addr, request).await?;
        let remark = answer.remark.unwrap_or_default();
        let _ = writeln!(text, "update broker config success, {addr}");
        if !remark.is_empty() {
            let _ = writeln!(text, "  {remark}");
        }
        answers.push(json!({"brokerAddr": addr, "remark": remark}));
    }
    Ok(Output::new(&args.common, text, json!(answers)))
}

#[derive(Args, Debug)]
pub struct UpdateNamesrvConfig {
    #[command(flatten)]
    common: Common,
    /// The property's name, as in namesrv.conf.
    #[arg(short = 'k', long = "key")]
    key: String,
    /// Its new value.
    #[arg(short = 'v', long = "value")]
    value: String,
}

/// Sends the update to every NameServer `-n` names, as mqadmin does; the first refusal stops
/// it (the NameServers before it keep the change).
pub async fn update_namesrv(args: UpdateNamesrvConfig) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let mut answers = Vec::new();
    let mut remarks = String::new();
    for addr in &admin.namesrvs {
        let request = RemotingCommand::request(request::UPDATE_NAMESRV_CONFIG)
            .with_body(body(&args.key, &args.value));
        let answer = admin.call(addr, request).await?;
        let remark = answer.remark.unwrap_or_default();
        if !remark.is_empty() {
            let _ = writeln!(remarks, "  {addr}: {remark}");
        }
        answers.push(json!({"namesrvAddr": addr, "remark": remark}));
    }
    let (key, value) = (args.key.trim(), args.value.trim());
    let text = format!(
        "update name server config success![{}]\n{key} : {value}\n{remarks}",
        admin.namesrvs.join(", ")
    );
    Ok(Output::new(&args.common, text, json!(answers)))
}

#[derive(Args, Debug)]
pub struct KvEntry {
    #[command(flatten)]
    common: Common,
    /// The namespace (ORDER_TOPIC_CONFIG holds each ordered topic's `broker:queues;...`).
    #[arg(short = 's', long = "namespace")]
    namespace: String,
    /// The key.
    #[arg(short = 'k', long = "key")]
    key: String,
}

#[derive(Args, Debug)]
pub struct UpdateKvConfig {
    #[command(flatten)]
    entry: KvEntry,
    /// Its value.
    #[arg(short = 'v', long = "value")]
    value: String,
}

/// PUT_KV_CONFIG to every NameServer `-n` names, as mqadmin does; the first refusal stops it
/// (the NameServers before it keep the entry).
pub async fn update_kv(args: UpdateKvConfig) -> Result<Output, String> {
    let entry = &args.entry;
    let header = PutKvConfigRequestHeader {
        namespace: entry.namespace.trim().to_owned(),
        key: entry.key.trim().to_owned(),
        value: args.value.trim().to_owned(),
    };
    let request = RemotingCommand::request(request::PUT_KV_CONFIG).with_header(&header);
    let json = json!({ "namespace": header.namespace, "key": header.key, "value": header.value });
    kv_to_every_namesrv(entry, request, "create or update kv config to namespace success.", json)
        .await
}

/// DELETE_KV_CONFIG to every NameServer `-n` names, as mqadmin does.
pub async fn delete_kv(args: KvEntry) -> Result<Output, String> {
    let header = KvConfigKeyRequestHeader {
        namespace: args.namespace.trim().to_owned(),
        key: args.key.trim().to_owned(),
    };
    let request = RemotingCommand::request(request::DELETE_KV_CONFIG).with_header(&header);
    let json = json!({ "namespace": header.namespace, "key": header.key });
    kv_to_every_namesrv(&args, request, "delete kv config from namespace success.", json).await
}

async fn kv_to_every_namesrv(
    entry: &KvEntry,
    request: RemotingCommand,
    done: &str,
    json: serde_json::Value,
) -> Result<Output, String> {
    let admin = Admin::connect(&entry.common)?;
    for addr in &admin.namesrvs {
        admin.call(addr, request.clone()).await?;
    }
    Ok(Output::new(&entry.common, format!("{done}\n"), json))
}
