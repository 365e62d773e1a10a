//! statsAll: each topic's messages in and each consumer group's out, a second over the last
//! minute and in the last day, with the group's lag (VIEW_BROKER_STATS_DATA, GET_CONSUME_STATS).

use std::fmt::Write;

use clap::Args;
use petrel_core::admin::BrokerStatsData;
use petrel_core::model::TopicRouteData;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ViewBrokerStatsDataRequestHeader;
use serde_json::json;

use super::group::consume_stats;
use super::{decode_body, Admin, Common, Output};

#[derive(Args, Debug)]
pub struct StatsAll {
    #[command(flatten)]
    common: Common,
    /// Only topics with messages in (or out) in the last day.
    #[arg(short = 'a', long = "activeTopic")]
    active: bool,
    /// Only this topic.
    #[arg(short = 't', long = "topic")]
    topic: Option<String>,
}

/// mqadmin's `compute24HourSum`: the day's sum, else the hour's, else the minute's.
fn day_sum(data: &BrokerStatsData) -> u64 {
    [data.stats_day.sum, data.stats_hour.sum, data.stats_minute.sum]
        .into_iter()
        .find(|sum| *sum != 0)
        .unwrap_or(0)
}

/// An item's minute TPS and day sum, added over the topic's masters; a master that has no
/// such item adds nothing, as in mqadmin.
async fn figures(admin: &Admin, route: &TopicRouteData, name: &str, key: &str) -> (f64, u64) {
    let (mut tps, mut sum) = (0.0, 0);
    for addr in route.master_addrs() {
        let header =
            ViewBrokerStatsDataRequestHeader { stats_name: name.into(), stats_key: key.into() };
        let request =
            RemotingCommand::request(request::VIEW_BROKER_STATS_DATA).with_header(&header);
        let Ok(answer) = admin.call(addr, request).await else { continue };
        let Ok(data) = decode_body::<BrokerStatsData>(&answer, "BrokerStatsData") else { continue };
        tps += data.stats_minute.tps;
        sum += day_sum(&data);
    }
    (tps, sum)
}

pub async fn stats_all(args: StatsAll) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let topics = admin.all_topics().await?;
    let mut text = format!(
        "{:<64}  {:<64} {:>12} {:>11} {:>11} {:>14} {:>14}\n",
        "#Topic",
        "#Consumer Group",
        "#Accumulation",
        "#InTPS",
        "#OutTPS",
        "#InMsg24Hour",
        "#OutMsg24Hour"
    );
    let mut rows = Vec::new();
    let chosen = topics.iter().filter(|t| !t.starts_with("%RETRY%") && !t.starts_with("%DLQ%"));
    for topic in chosen.filter(|t| args.topic.as_ref().is_none_or(|only| only == *t)) {
        let Ok(route) = admin.route(topic).await else { continue };
        let (in_tps, in_day) = figures(&admin, &route, "TOPIC_PUT_NUMS", topic).await;
        let groups = admin.consumers_of(&route, topic).await?;
        if groups.is_empty() && (!args.active || in_day > 0) {
            let _ = writeln!(
                text,
                "{topic:<64}  {:<64} {:>12} {in_tps:>11.2} {:>11} {in_day:>14} {:>14}",
                "", 0, "", "NO_CONSUMER"
            );
            rows.push(json!({"topic": topic, "inTps": in_tps, "inMsg24Hour": in_day}));
        }
        for group in groups {
            let key = format!("{topic}@{group}");
            let (out_tps, out_day) = figures(&admin, &route, "GROUP_GET_NUMS", &key).await;
            let lag = consume_stats(&admin, &group, Some(topic))
                .await
                .map_or(0, |stats| stats.diff_total().max(0));
            if args.active && in_day == 0 && out_day == 0 {
                continue;
            }
            let _ = writeln!(
                text,
                "{topic:<64}  {group:<64} {lag:>12} {in_tps:>11.2} {out_tps:>11.2} {in_day:>14} {out_day:>14}"
            );
            rows.push(json!({
                "topic": topic, "consumerGroup": group, "accumulation": lag,
                "inTps": in_tps, "outTps": out_tps, "inMsg24Hour": in_day, "outMsg24Hour": out_day,
            }));
        }
    }
    Ok(Output::new(&args.common, text, json!(rows)))
}
