//! clusterList, brokerStatus, getBrokerConfig, getNamesrvConfig, wipeWritePerm, addWritePerm.

use std::collections::BTreeMap;
use std::fmt::Write;

use clap::Args;
use petrel_core::model::KvTable;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{
    AddWritePermResponseHeader, BrokerPermRequestHeader, WipeWritePermResponseHeader,
};
use serde_json::json;

use super::{decode_body, properties, Admin, Common, Output, Target};

#[derive(Args, Debug)]
pub struct ClusterList {
    #[command(flatten)]
    common: Common,
    /// Only this cluster.
    #[arg(short = 'c', long = "clusterName")]
    cluster: Option<String>,
}

pub async fn list(args: ClusterList) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let info = admin.cluster_info().await?;
    let mut text = format!(
        "{:<22}  {:<22}  {:<4}  {:<22} {:<16}  {:>16}  {:>30}  {:<22}  {:<11}  {:<12}  {:<8}  {:<10}\n",
        "#Cluster Name",
        "#Broker Name",
        "#BID",
        "#Addr",
        "#Version",
        "#InTPS(LOAD)",
        "#OutTPS(LOAD)",
        "#Timer(Progress)",
        "#PCWait(ms)",
        "#Hour",
        "#SPACE",
        "#ACTIVATED"
    );
    let mut rows = Vec::new();
    for (cluster, names) in &info.cluster_addr_table {
        if args.cluster.as_ref().is_some_and(|c| c != cluster) {
            continue;
        }
        let mut names: Vec<&String> = names.iter().collect();
        names.sort();
        for name in names {
            let Some(data) = info.broker_addr_table.get(name) else { continue };
            for (id, addr) in &data.broker_addrs {
                // As mqadmin: a broker that does not answer is listed with what is known.
                let figures = Figures(runtime_info(&admin, addr).await.unwrap_or_default());
                let _ = writeln!(
                    text,
                    "{cluster:<22}  {name:<22}  {id:<4}  {addr:<22} {}",
                    figures.columns()
                );
                rows.push(json!({
                    "cluster": cluster, "brokerName": name, "brokerId": id, "addr": addr,
                    "version": figures.text("brokerVersionDesc"), "active": figures.active(),
                    "runtime": figures.0,
                }));
            }
        }
    }
    Ok(Output::new(&args.common, text, json!(rows)))
}

/// A broker's runtime table, read as clusterList reads it: a missing figure prints as Java
/// prints a null (`null`, `N` for thread pools, 0 for numbers).
struct Figures(BTreeMap<String, String>);

impl Figures {
    fn text(&self, key: &str) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| "null".into())
    }

    fn pool(&self, key: &str) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| "N".into())
    }

    /// The number a figure starts with (`putTps` is "10s 60s 600s").
    fn number(&self, key: &str) -> f64 {
        self.0.get(key).and_then(|v| v.split(' ').next()?.parse().ok()).unwrap_or(0.0)
    }

    fn active(&self) -> bool {
        self.0.get("brokerActive").is_some_and(|v| v == "true")
    }

    /// The columns after the address, in mqadmin's row format.
    fn columns(&self) -> String {
        let in_tps = format!(
            "{:9.2}({},{}ms)",
            self.number("putTps"),
            self.pool("sendThreadPoolQueueSize"),
            self.pool("sendThreadPoolQueueHeadWaitTimeMills")
        );
        let out_tps = format!(
            "{:9.2}({},{}ms|{},{}ms)",
            self.number("getTransferredTps"),
            self.pool("pullThreadPoolQueueSize"),
            self.pool("pullThreadPoolQueueHeadWaitTimeMills"),
            self.pool("ackThreadPoolQueueSize"),
            self.pool("ackThreadPoolQueueHeadWaitTimeMills")
        );
        let timer = format!(
            "{}-{}({:.1}w, {:.1}, {:.1})",
            self.number("timerReadBehind") as i64,
            self.number("timerOffsetBehind") as i64,
            self.number("timerCongestNum") / 10_000.0,
            self.number("timerEnqueueTps"),
            self.number("timerDequeueTps")
        );
        // A broker that names no oldest message shows 0 hours, as mqadmin shows it.
        let hour = match self.0.get("earliestMessageTimeStamp") {
            Some(_) => {
                let earliest = self.number("earliestMessageTimeStamp");
                (petrel::clock::now_millis() as f64 - earliest) / 3_600_000.0
            }
            None => 0.0,
        };
        format!(
            "{:<16}  {in_tps:>16}  {out_tps:>30}  {timer:<22}  {:>11}  {:<12}  {:<8}  {:>10}",
            self.text("brokerVersionDesc"),
            self.text("pageCacheLockTimeMills"),
            format!("{hour:2.2}"),
            format!("{:.4}", self.number("commitLogDiskRatio")),
            self.active()
        )
    }
}

/// GET_BROKER_RUNTIME_INFO's table.
async fn runtime_info(admin: &Admin, addr: &str) -> Result<BTreeMap<String, String>, String> {
    let answer =
        admin.call(addr, RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO)).await?;
    let table: KvTable = decode_body(&answer, "KVTable")?;
    Ok(table.table)
}

#[derive(Args, Debug)]
pub struct BrokerStatus {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    target: Target,
}

pub async fn broker_status(args: BrokerStatus) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let (mut text, mut all) = (String::new(), BTreeMap::new());
    for (_, addr) in admin.targets(&args.target).await? {
        let figures = runtime_info(&admin, &addr).await?;
        for (key, value) in &figures {
            let _ = match args.target.cluster {
                Some(_) => writeln!(text, "{addr:<24} {key:<32}: {value}"),
                None => writeln!(text, "{key:<32}: {value}"),
            };
        }
        all.insert(addr, figures);
    }
    Ok(Output::new(&args.common, text, json!(all)))
}

#[derive(Args, Debug)]
pub struct GetBrokerConfig {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    target: Target,
}

pub async fn broker_config(args: GetBrokerConfig) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let (mut text, mut all) = (String::new(), BTreeMap::new());
    for (_, addr) in admin.targets(&args.target).await? {
        let answer =
            admin.call(&addr, RemotingCommand::request(request::GET_BROKER_CONFIG)).await?;
        let config = properties(&answer.body);
        match args.target.cluster {
            Some(_) => text.push_str(&format!("============Master: {addr}============\n")),
            None => text.push_str(&format!("============{addr}============\n")),
        }
        for (key, value) in &config {
            let _ = writeln!(text, "{key:<50}=  {value}");
        }
        text.push('\n');
        all.insert(addr, config.into_iter().collect::<BTreeMap<_, _>>());
    }
    Ok(Output::new(&args.common, text, json!(all)))
}

#[derive(Args, Debug)]
pub struct GetNamesrvConfig {
    #[command(flatten)]
    common: Common,
}

pub async fn namesrv_config(args: GetNamesrvConfig) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let (mut text, mut all) = (String::new(), BTreeMap::new());
    for addr in &admin.namesrvs {
        let answer =
            admin.call(addr, RemotingCommand::request(request::GET_NAMESRV_CONFIG)).await?;
        let config = properties(&answer.body);
        let _ = writeln!(text, "============{addr}============");
        for (key, value) in &config {
            let _ = writeln!(text, "{key:<50}=  {value}");
        }
        all.insert(addr.clone(), config.into_iter().collect::<BTreeMap<_, _>>());
    }
    Ok(Output::new(&args.common, text, json!(all)))
}

#[derive(Args, Debug)]
pub struct WritePerm {
    #[command(flatten)]
    common: Common,
    /// The broker group's name.
    #[arg(short = 'b', long = "brokerName")]
    broker_name: String,
}

pub async fn write_perm(args: WritePerm, add: bool) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let header = BrokerPermRequestHeader { broker_name: args.broker_name.clone() };
    let (code, verb) = match add {
        true => (request::ADD_WRITE_PERM_OF_BROKER, "add"),
        false => (request::WIPE_WRITE_PERM_OF_BROKER, "wipe"),
    };
    let (mut text, mut counts) = (String::new(), BTreeMap::new());
    for namesrv in &admin.namesrvs {
        let answer =
            admin.call(namesrv, RemotingCommand::request(code).with_header(&header)).await?;
        let count = match add {
            true => answer.header::<AddWritePermResponseHeader>().map(|h| h.add_topic_count),
            false => answer.header::<WipeWritePermResponseHeader>().map(|h| h.wipe_topic_count),
        }
        .map_err(|e| format!("{namesrv} answered without a topic count: {e}"))?;
        let _ = writeln!(
            text,
            "{verb} write perm of broker[{}] in name server[{namesrv}] OK, {count}",
            args.broker_name
        );
        counts.insert(namesrv.clone(), count);
    }
    let json = json!({ "brokerName": args.broker_name, "topics": counts });
    Ok(Output::new(&args.common, text, json))
}

#[derive(Args, Debug)]
pub struct DeleteExpiredCommitLog {
    #[command(flatten)]
    common: Common,
    /// One broker, by its address.
    #[arg(short = 'b', long = "brokerAddr", conflicts_with = "cluster")]
    broker: Option<String>,
    /// Every broker of this cluster, slaves too (without -b or -c: of every cluster).
    #[arg(short = 'c', long = "cluster")]
    cluster: Option<String>,
}

/// DELETE_EXPIRED_COMMITLOG to the broker, or to every broker of the cluster (of every
/// cluster): each deletes its commit-log files past `fileReservedTime` in its next cleanup
/// passes. Prints `success` with no line end, as mqadmin.
pub async fn delete_expired(args: DeleteExpiredCommitLog) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let addrs: Vec<String> = match &args.broker {
        Some(addr) => vec![addr.clone()],
        None => {
            let info = admin.cluster_info().await?;
            let clusters: Vec<&String> = match &args.cluster {
                Some(name) => vec![name],
                None => info.cluster_addr_table.keys().collect(),
            };
            let names = clusters.iter().filter_map(|c| info.cluster_addr_table.get(*c)).flatten();
            let brokers = names.filter_map(|name| info.broker_addr_table.get(name));
            brokers.flat_map(|data| data.broker_addrs.values().cloned()).collect()
        }
    };
    if addrs.is_empty() {
        return Err("no broker to ask: the NameServer knows none of that cluster".into());
    }
    for addr in &addrs {
        admin.call(addr, RemotingCommand::request(request::DELETE_EXPIRED_COMMITLOG)).await?;
    }
    Ok(Output::new(&args.common, "success".into(), json!({ "brokers": addrs })))
}
