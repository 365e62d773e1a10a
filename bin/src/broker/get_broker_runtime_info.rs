//! GET_BROKER_RUNTIME_INFO (28): the broker's counters and offsets, as mqadmin brokerStatus shows them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_core::model::KvTable;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::config::flush_name;
use super::{answered, lock, success, Broker, Outcome};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    let store = broker.store();
    let now = now_millis();
    let mut table = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        table.insert(key.to_owned(), value);
    };
    put("brokerVersionDesc", "V5_3_3".into());
    put("brokerVersion", "479".into());
    put("brokerActive", "true".into());
    put("bootTimestamp", broker.boot_millis.to_string());
    put("runtime", format!("[ {} ms ]", now.saturating_sub(broker.boot_millis)));
    let (put_total, got_total) = broker.stats.totals();
    put("msgPutTotalTodayNow", put_total.to_string());
    put("msgGetTotalTodayNow", got_total.to_string());
    let rates = lock(&broker.stats.rates).per_second(now, put_total, got_total);
    put("putTps", format!("{:.2} {:.2} {:.2}", rates[0].0, rates[1].0, rates[2].0));
    put("getTransferredTps", format!("{:.2} {:.2} {:.2}", rates[0].1, rates[1].1, rates[2].1));
    if let Some(earliest) = store.earliest_message_time() {
        put("earliestMessageTimeStamp", earliest.to_string());
    }
    if let Some(ratio) = broker.disk_used_ratio() {
        put("commitLogDiskRatio", ratio.to_string());
    }
    put("commitLogMinOffset", store.min_physical_offset().to_string());
    put("commitLogMaxOffset", store.written_offset().to_string());
    put(
        "dispatchBehindBytes",
        store.written_offset().saturating_sub(store.dispatched_offset()).to_string(),
    );
    put(
        "remainHowManyDataToFlush",
        store.written_offset().saturating_sub(store.flushed_offset()).to_string(),
    );
    put("flushDiskType", flush_name(broker.config.store.flush_disk_type).into());
    put("brokerRole", broker.role().name().into());
    put("pullHeldRequests", broker.held_pulls.load(Ordering::Relaxed).to_string());
    put("connections", broker.server.connection_count().to_string());
    if let Some(allocations) = crate::alloc::allocations() {
        put("allocations", allocations.to_string());
    }
    answered(success().with_body(to_json(&KvTable { table }, JsonStyle::Fastjson)))
}
