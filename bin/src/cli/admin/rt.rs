//! clusterRT: the time a send to each broker takes, as mqadmin's CLusterSendMsgRTCommand
//! measures it: `-a` sends of `-s` bytes to each broker's own topic (named after the broker),
//! the mean of all but the first, every `-i` seconds.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use clap::Args;
use petrel_client::{Message, Producer, ProducerConfig};
use serde_json::json;

use super::{Admin, Common, Output};

#[derive(Args, Debug)]
pub struct ClusterRt {
    #[command(flatten)]
    common: Common,
    /// Sends to each broker per round.
    #[arg(short = 'a', long = "amount", default_value_t = 100)]
    amount: u64,
    /// Bytes in each message.
    #[arg(short = 's', long = "size", default_value_t = 128)]
    size: usize,
    /// Only this cluster.
    #[arg(short = 'c', long = "cluster")]
    cluster: Option<String>,
    /// Print each figure as `time|room|cluster|broker|rt` (mqadmin's tlog form).
    #[arg(short = 'p', long = "printLog", default_value_t = false, action = clap::ArgAction::Set)]
    print_log: bool,
    /// The machine room named in the tlog form.
    #[arg(short = 'm', long = "machineRoom", default_value = "noname")]
    machine_room: String,
    /// Seconds between rounds.
    #[arg(short = 'i', long = "interval", default_value_t = 10)]
    interval: u64,
    /// Stop after this many rounds (Petrel's; mqadmin runs until it is stopped).
    #[arg(long)]
    rounds: Option<u64>,
}

/// One broker's figures in a round.
struct Measured {
    cluster: String,
    broker: String,
    rt_ms: f64,
    ok: u64,
    failed: u64,
}

pub async fn cluster_rt(args: ClusterRt) -> Result<Output, String> {
    if args.common.json && args.rounds.is_none() {
        return Err("--json prints when the command ends: give --rounds".into());
    }
    if args.amount < 2 {
        return Err("-a must be 2 or more: the first send of each broker is not counted".into());
    }
    let admin = Admin::connect(&args.common)?;
    let info = admin.cluster_info().await?;
    let clusters: Vec<(&String, &Vec<String>)> = match &args.cluster {
        Some(name) => match info.cluster_addr_table.get_key_value(name) {
            Some(found) => vec![found],
            None => return Err(format!("cluster [{name}] not exist")),
        },
        None => info.cluster_addr_table.iter().collect(),
    };
    let config = ProducerConfig {
        namesrv_addrs: admin.namesrvs.clone(),
        group: "PID_PETREL_CLUSTER_RT".into(),
        ..ProducerConfig::default()
    };
    let producer = Producer::start(config).map_err(|e| e.to_string())?;
    let body = vec![b'a'; args.size];
    let mut text = String::new();
    if !args.print_log {
        let _ = writeln!(
            text,
            "{:<24}  {:<24}  {:<4}  {:<8}  {:<8}",
            "#Cluster Name", "#Broker Name", "#RT", "#successCount", "#failCount"
        );
    }
    let mut all = Vec::new();
    let mut round = 0;
    loop {
        for (cluster, brokers) in &clusters {
            let mut brokers: Vec<&String> = brokers.iter().collect();
            brokers.sort();
            for broker in brokers {
                let measured = measure(&producer, cluster, broker, &body, args.amount).await;
                let line = row(&args, &measured);
                // mqadmin prints as it goes; with --json everything is printed at the end.
                if args.rounds.is_none() && !args.common.json {
                    print!("{}{line}", std::mem::take(&mut text));
                    let _ = std::io::stdout().flush();
                } else {
                    text.push_str(&line);
                }
                all.push(json!({
                    "cluster": measured.cluster, "brokerName": measured.broker,
                    "rtMillis": measured.rt_ms, "successCount": measured.ok,
                    "failCount": measured.failed,
                }));
            }
        }
        round += 1;
        if args.rounds.is_some_and(|rounds| round >= rounds) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
    }
    producer.shutdown().await;
    Ok(Output::new(&args.common, text, json!(all)))
}

/// `amount` sends of `body` to the broker's own topic; the mean time of all but the first.
async fn measure(
    producer: &Producer,
    cluster: &str,
    broker: &str,
    body: &[u8],
    amount: u64,
) -> Measured {
    let message = Message::new(broker, body.to_vec());
    let (mut ok, mut failed, mut elapsed) = (0, 0, Duration::ZERO);
    for i in 0..amount {
        let started = Instant::now();
        match producer.send(&message).await {
            Ok(_) => ok += 1,
            Err(e) => {
                tracing::debug!(%broker, error = %e, "a clusterRT send failed");
                failed += 1;
            }
        }
        if i != 0 {
            elapsed += started.elapsed();
        }
    }
    let rt_ms = elapsed.as_secs_f64() * 1000.0 / (amount - 1) as f64;
    Measured { cluster: cluster.to_owned(), broker: broker.to_owned(), rt_ms, ok, failed }
}

/// A figure as mqadmin prints it: the table's row, or the tlog form (time in UTC, where
/// mqadmin prints GMT+8).
fn row(args: &ClusterRt, m: &Measured) -> String {
    match args.print_log {
        false => format!(
            "{:<24}  {:<24}  {:<8}  {:<16}  {:<16}\n",
            m.cluster,
            m.broker,
            format!("{:.2}", m.rt_ms),
            m.ok,
            m.failed
        ),
        true => {
            let time = petrel_core::time::human_time(petrel::clock::now_millis() as i64);
            let time = time.split(',').next().unwrap_or_default();
            format!("{time}|{}|{}|{}|{}\n", args.machine_room, m.cluster, m.broker, m.rt_ms.round())
        }
    }
}
