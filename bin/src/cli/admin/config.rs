//! updateBrokerConfig, updateNamesrvConfig: one property set on running servers.

use std::fmt::Write;

use clap::Args;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
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
