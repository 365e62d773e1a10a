//! consumerStatus: what each member of a consumer group reports of itself
//! (GET_CONSUMER_RUNNING_INFO through the broker it heartbeats to), as mqadmin prints it.
//!
//! Without `-i` every member is asked; as mqadmin does, each report is written to the file
//! `<now>/<clientId>` under the working directory, whose path the table names, and the group
//! is checked: the same subscriptions everywhere, and no queue that looks stuck. With `-i`
//! one member's report is printed whole. `--json` writes no files and prints the reports.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use clap::Args;
use petrel_core::admin::version_desc;
use petrel_core::running_info::{same_subscription, stuck_queues, ConsumerRunningInfo};
use petrel_net::bodies::running_info_from_json;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetConsumerRunningInfoRequestHeader;
use serde_json::json;

use super::group::{connections_at, group_broker};
use super::{Admin, Common, Output};

#[derive(Args, Debug)]
pub struct ConsumerStatus {
    #[command(flatten)]
    common: Common,
    /// Consumer group name.
    #[arg(short = 'g', long = "consumerGroup")]
    group: String,
    /// One member's client id: print its whole report.
    #[arg(short = 'i', long = "clientId")]
    client_id: Option<String>,
    /// The broker to ask (default: a master routing the group's retry topic).
    #[arg(short = 'b', long = "brokerAddr")]
    broker: Option<String>,
    /// Ask for each member's thread dump too (a Java client's jstack; others send none).
    #[arg(short = 's', long = "jstack")]
    jstack: bool,
}

pub async fn consumer_status(args: ConsumerStatus) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let addr = match &args.broker {
        Some(addr) => addr.clone(),
        None => group_broker(&admin, &args.group).await?,
    };
    if let Some(client_id) = &args.client_id {
        let info = running_info(&admin, &addr, &args.group, client_id, args.jstack).await?;
        let json = serde_json::to_value(&info).map_err(|e| e.to_string())?;
        return Ok(Output::new(&args.common, info.format_string(), json));
    }
    let members = connections_at(&admin, &addr, &args.group).await?;
    let now = petrel::clock::now_millis() as i64;
    let mut text = format!(
        "{:<10} {:<40} {:<20} {}\n",
        "#Index", "#ClientId", "#Version", "#ConsumerRunningInfoFile"
    );
    let (mut reports, mut rows) = (BTreeMap::new(), Vec::new());
    for member in &members.connection_set {
        let id = &member.client_id;
        let info = match running_info(&admin, &addr, &args.group, id, args.jstack).await {
            Ok(info) => info,
            Err(e) => {
                // As mqadmin does: say why, and go on with the other members.
                eprintln!("{e}");
                continue;
            }
        };
        let file = report_path(now, id);
        if !args.common.json {
            write_report(Path::new(&file), &info.format_string())?;
        }
        let version = version_desc(member.version);
        let _ = writeln!(text, "{:<10} {id:<40} {version:<20} {file}", rows.len() + 1);
        rows.push(json!({ "clientId": id, "version": version, "runningInfo": &info }));
        reports.insert(id.clone(), info);
    }
    let same = same_subscription(&reports, now);
    let stuck: Vec<String> = reports
        .iter()
        .flat_map(|(id, info)| {
            stuck_queues(id, info, now).lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    if !reports.is_empty() {
        if same {
            text.push_str("\n\nSame subscription in the same group of consumer");
            text.push_str("\n\nRebalance OK\n");
            for line in &stuck {
                let _ = writeln!(text, "{line}");
            }
        } else {
            text.push_str("\n\nWARN: Different subscription in the same group of consumer!!!");
        }
    }
    let json = json!({ "members": rows, "sameSubscription": same, "stuckQueues": stuck });
    Ok(Output::new(&args.common, text, json))
}

/// Where a member's report goes: `<now>/<clientId>`, as mqadmin names it, with any path
/// separator in the client id (a name the client chose) made `_`, so that the file stays in
/// its directory.
fn report_path(now: i64, client_id: &str) -> String {
    format!("{now}/{}", client_id.replace(['/', '\\'], "_"))
}

/// Writes one member's report where mqadmin would, creating its directory.
fn write_report(file: &Path, report: &str) -> Result<(), String> {
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(file, report));
    written.map_err(|e| format!("cannot write the report {}: {e}", file.display()))
}

/// GET_CONSUMER_RUNNING_INFO for one member, through the broker at `addr`.
pub(super) async fn running_info(
    admin: &Admin,
    addr: &str,
    group: &str,
    client_id: &str,
    jstack: bool,
) -> Result<ConsumerRunningInfo, String> {
    let header = GetConsumerRunningInfoRequestHeader {
        consumer_group: group.to_owned(),
        client_id: client_id.to_owned(),
        jstack_enable: Some(jstack),
    };
    let request = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO).with_header(&header);
    let answer = admin.call(addr, request).await?;
    running_info_from_json(&answer.body)
        .map_err(|e| format!("the running info {client_id} answered is not readable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_stays_in_its_directory() {
        assert_eq!(report_path(7, "10.0.0.1@12345#99"), "7/10.0.0.1@12345#99");
        assert_eq!(report_path(7, "../../etc/x"), "7/.._.._etc_x");
        assert_eq!(report_path(7, "a\\b"), "7/a_b");
    }
}
