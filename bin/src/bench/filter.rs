//! `petrel bench filter`: how fast a consumer moves through a queue with a broker-side filter,
//! against the same queue read unfiltered, in one run.
//!
//! It starts a `petrel standalone` with `enablePropertyFilter=true`, fills one queue with
//! `messages` messages (property `p` = the message's number mod 100, tag `TagA` on one in a
//! hundred, `TagB` on the rest), then reads the whole queue from its start once per filter, on
//! one connection, with PULL_MESSAGE of 32 and no hold: unfiltered (TAG `*`), TAG `TagA` (1 %),
//! and SQL92 `p < 1` (1 %), `p < 50` (50 %) and `p >= 0` (100 %). For each it reports pulls per
//! second, queue messages passed per second (what the filter costs a consumer catching up),
//! and messages handed over per second, as ratios to the unfiltered read.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use petrel_client::raw::{self, SendOutcome};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::PullMessageRequestHeader;
use petrel_net::transport::{ClientConfig, RemotingClient};
use serde::Serialize;

use super::send::spawn;

/// What to run.
#[derive(Debug, Clone)]
pub struct FilterBench {
    /// The broker's store (emptied first).
    pub dir: PathBuf,
    pub messages: u64,
    pub message_bytes: usize,
}

/// One filter's read of the queue.
#[derive(Debug, Clone, Serialize)]
pub struct FilterLine {
    pub filter: String,
    pub matched: u64,
    pub pulls_per_second: f64,
    pub queue_messages_per_second: f64,
    pub matched_per_second: f64,
    /// `queue_messages_per_second` over the unfiltered read's.
    pub queue_ratio: f64,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FilterReport {
    pub messages: u64,
    pub lines: Vec<FilterLine>,
}

const TOPIC: &str = "BenchFiltered";
const GROUP: &str = "BenchFilterReaders";
/// The filters read with, the unfiltered read first: (type, expression).
const FILTERS: [(&str, &str); 5] =
    [("TAG", "*"), ("TAG", "TagA"), ("SQL92", "p < 1"), ("SQL92", "p < 50"), ("SQL92", "p >= 0")];
/// Sends in flight while filling.
const FILL_TASKS: u64 = 8;

pub async fn run(bench: FilterBench) -> Result<FilterReport, String> {
    let _ = std::fs::remove_dir_all(&bench.dir);
    std::fs::create_dir_all(&bench.dir).map_err(|e| e.to_string())?;
    let conf = bench.dir.join("broker.conf");
    std::fs::write(&conf, "enablePropertyFilter=true\n").map_err(|e| e.to_string())?;
    let data = bench.dir.join("data").to_string_lossy().into_owned();
    let args = ["standalone", "--namesrv-port", "0", "--broker-port", "0", "--data-dir", &data];
    let (_broker, addr) = spawn(&args, "Broker:", Some(&conf))?;
    let client = RemotingClient::new(ClientConfig::default(), None);
    if !raw::create_topic(&client, &addr, TOPIC, 1).await {
        return Err(format!("cannot create {TOPIC} at {addr}"));
    }
    fill(&addr, &bench).await?;
    let mut lines: Vec<FilterLine> = Vec::new();
    for (kind, expression) in FILTERS {
        let (pulls, matched, passed, elapsed) = read(&client, &addr, kind, expression).await?;
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let queue_messages_per_second = passed as f64 / seconds;
        let base = lines.first().map_or(queue_messages_per_second, |l| l.queue_messages_per_second);
        lines.push(FilterLine {
            filter: format!("{kind} {expression}"),
            matched,
            pulls_per_second: pulls as f64 / seconds,
            queue_messages_per_second,
            matched_per_second: matched as f64 / seconds,
            queue_ratio: queue_messages_per_second / base,
        });
    }
    Ok(FilterReport { messages: bench.messages, lines })
}

/// Sends the messages to queue 0 from [`FILL_TASKS`] tasks.
async fn fill(addr: &str, bench: &FilterBench) -> Result<(), String> {
    let tasks: Vec<_> = (0..FILL_TASKS)
        .map(|task| {
            let (addr, bytes, total) = (addr.to_owned(), bench.message_bytes, bench.messages);
            tokio::spawn(async move {
                let client = RemotingClient::new(ClientConfig::default(), None);
                for id in (task..total).step_by(FILL_TASKS as usize) {
                    let tag = if id % 100 == 0 { "TagA" } else { "TagB" };
                    let extra = format!("p\u{1}{}\u{2}TAGS\u{1}{tag}\u{2}", id % 100);
                    match raw::send_with(&client, &addr, TOPIC, 0, id, bytes, &extra).await {
                        SendOutcome::Acked { .. } => {}
                        other => return Err(format!("fill send {id}: {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Reads the queue from its start to its end through one filter: pulls, messages handed over,
/// queue messages passed, time taken.
async fn read(
    client: &RemotingClient,
    addr: &str,
    kind: &str,
    expression: &str,
) -> Result<(u64, u64, u64, Duration), String> {
    let (mut offset, mut pulls, mut matched) = (0i64, 0u64, 0u64);
    let started = Instant::now();
    loop {
        let header = PullMessageRequestHeader {
            consumer_group: GROUP.into(),
            topic: TOPIC.into(),
            queue_id: 0,
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag: 0x4,
            commit_offset: -1,
            suspend_timeout_millis: 0,
            subscription: Some(expression.into()),
            sub_version: 0,
            expression_type: Some(kind.into()),
            max_msg_bytes: None,
        };
        let ask = RemotingCommand::request(request::PULL_MESSAGE).with_header(&header);
        let reply =
            client.invoke(addr, ask, raw::REQUEST_TIMEOUT).await.map_err(|e| e.to_string())?;
        pulls += 1;
        let answer: petrel_net::headers::broker::PullMessageResponseHeader =
            reply.header().map_err(|e| format!("pull answer without its header: {e}"))?;
        match reply.code {
            response::SUCCESS => matched += records(&reply.body),
            response::PULL_RETRY_IMMEDIATELY => {}
            response::PULL_NOT_FOUND => {
                return Ok((pulls, matched, offset as u64, started.elapsed()))
            }
            code => {
                return Err(format!(
                    "pull with {kind} {expression} answered {code}: {:?}",
                    reply.remark
                ))
            }
        }
        offset = answer.next_begin_offset;
    }
}

/// How many records a pull answer's body holds, back to back.
fn records(body: &[u8]) -> u64 {
    let (mut at, mut count) = (0usize, 0);
    while let Some(size) = body.get(at..at + 4) {
        let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        let Ok(size) = usize::try_from(size) else { break };
        at += size.max(4);
        count += 1;
    }
    count
}

impl FilterReport {
    /// A table, or JSON for scripts.
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).unwrap_or_default();
        }
        let mut out = format!(
            "{} messages in one queue, read whole per filter on one connection (pulls of 32, no hold)\n\
             {:<18} {:>8} {:>10} {:>14} {:>14} {:>12}\n",
            self.messages, "filter", "matched", "pulls/s", "queue msgs/s", "matched/s", "×unfiltered"
        );
        for l in &self.lines {
            out += &format!(
                "{:<18} {:>8} {:>10.0} {:>14.0} {:>14.0} {:>12.2}\n",
                l.filter,
                l.matched,
                l.pulls_per_second,
                l.queue_messages_per_second,
                l.matched_per_second,
                l.queue_ratio
            );
        }
        out
    }
}
