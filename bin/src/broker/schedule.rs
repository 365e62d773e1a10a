//! The delay service's shell (`ScheduleMessageService`): binds the delay core
//! (`petrel_core::broker::delay`) to the store and the clock. It reads the heads of
//! `SCHEDULE_TOPIC_XXXX`'s queues and re-appends due messages when the core says, and wakes
//! the core when a head comes due (its timer), when dispatch stores new delayed messages, at
//! the persist interval, and once a second for a level that found nothing (a unit whose write
//! failed becomes readable at a later checkpoint, with nothing to tell of it).
//!
//! A message is re-appended before its cursor moves, and the cursors reach
//! `config/delayOffset.json` only after the commit log holding those re-appends was flushed:
//! a crash can deliver a message twice, never lose one.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use petrel_core::broker::delay::{DelayAction, DelayConfig, DelayEvent, DelayService};
use petrel_core::broker::schedule::DelayLevels;
use petrel_core::broker::send_plan::plan_due;
use petrel_core::broker::SCHEDULE_TOPIC;
use petrel_core::record::{scan_record, Checks, Scanned};
use petrel_net::signal::Flag;
use petrel_storage::{GetStatus, ReadLimits};

use super::{lock, persist, Broker};
use crate::clock::{now_millis, sleep_until};

/// How long after a failed read or re-append a level tries again.
const RETRY_MS: u64 = 1_000;
/// How long a level with nothing to read waits for an arrival before it looks again anyway.
const IDLE_RECHECK_MS: u64 = 1_000;

pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    let config = DelayConfig {
        levels: broker.config.store.delay_levels.clone(),
        retry_ms: RETRY_MS,
        persist_interval_ms: broker.config.flush_delay_offsets_interval_ms,
        idle_recheck_ms: IDLE_RECHECK_MS,
    };
    let cursors = lock(&broker.delays).clone();
    let mut service = DelayService::new(config, cursors, now_millis());
    let dispatched = broker.store.dispatched();
    // The head each level read last, kept for its delivery.
    let mut heads: BTreeMap<i32, Bytes> = BTreeMap::new();
    loop {
        let seen = dispatched.get();
        while let Some(action) = service.poll_action() {
            let event = execute(&broker, &mut heads, action);
            service.handle(now_millis(), event);
            // In simulation builds every step of the core is checked.
            #[cfg(madsim)]
            service.check_invariants();
        }
        tokio::select! {
            biased;
            _ = stop.wait() => break,
            going = dispatched.wait_for(|now| now != seen) => match going {
                true => arrivals(&broker, &mut service),
                // Dispatch ended: the store stopped, and the broker with it.
                false => {
                    stop.wait().await;
                    break;
                }
            },
            () = sleep_until(service.poll_timeout()) => {}
        }
        service.tick(now_millis());
    }
    hand_over(&broker, &service);
}

/// Tells the core of every idle level whose queue now holds messages past its cursor.
fn arrivals(broker: &Broker, service: &mut DelayService) {
    for level in 1..=broker.config.store.delay_levels.count() {
        let queue = DelayLevels::queue_id(level);
        let end = broker.store().queue_offsets(SCHEDULE_TOPIC, queue).map_or(0, |(_, max)| max);
        if service.is_idle(level) && end as i64 > service.cursor(level) {
            service.handle(now_millis(), DelayEvent::Arrived { level });
        }
    }
}

fn execute(broker: &Broker, heads: &mut BTreeMap<i32, Bytes>, action: DelayAction) -> DelayEvent {
    match action {
        DelayAction::Read { level, offset } => read_head(broker, heads, level, offset),
        DelayAction::Deliver { level, offset } => {
            let head = heads.remove(&level).expect("a delivery follows the read of its head");
            match deliver(broker, &head) {
                Ok(()) => DelayEvent::Delivered { level, offset },
                Err(e) => {
                    tracing::warn!(level, offset, error = %e, "delayed message not delivered yet; will retry");
                    DelayEvent::Failed { level, offset }
                }
            }
        }
        DelayAction::Persist(cursors) => {
            *lock(&broker.delays) = cursors;
            broker.delays_dirty.store(true, Ordering::Release);
            DelayEvent::Persisted { written: persist(broker) }
        }
    }
}

/// Reads the first message of `level` at or after `offset`, keeping it for its delivery.
fn read_head(
    broker: &Broker,
    heads: &mut BTreeMap<i32, Bytes>,
    level: i32,
    offset: i64,
) -> DelayEvent {
    let queue = DelayLevels::queue_id(level);
    let limits = ReadLimits { messages_max: 1, ..ReadLimits::default() };
    let got = broker.store().get_messages(SCHEDULE_TOPIC, queue, offset as u64, limits, &|_| true);
    let next = got.next_begin_offset as i64;
    let Some(head) = got.messages.into_iter().next() else {
        return match got.status {
            GetStatus::ReadFailed => DelayEvent::Failed { level, offset },
            _ => DelayEvent::Empty { level, next },
        };
    };
    // The store checked the record whole; it is scanned again only to read its fields.
    let Scanned::Record(record) = scan_record(&head, Checks { physical_offset: None, crc: false })
    else {
        return DelayEvent::Failed { level, offset };
    };
    let due_at = broker.config.store.delay_levels.due_time(level, record.store_timestamp);
    let offset = record.queue_offset;
    heads.insert(level, head);
    DelayEvent::Head { level, offset, due_at }
}

/// Re-appends a due message to its real topic, as the send planner says; one without its
/// real topic is dropped.
fn deliver(broker: &Broker, head: &[u8]) -> Result<(), String> {
    let Scanned::Record(record) = scan_record(head, Checks { physical_offset: None, crc: false })
    else {
        return Err("the head read no longer decodes".into());
    };
    let plan = match plan_due(record.properties, record.sys_flag, record.reconsume_times) {
        Ok(plan) => plan,
        Err(refusal) => {
            let offset = record.physical_offset;
            tracing::error!(offset, remark = %refusal.remark, "delayed message dropped");
            return Ok(());
        }
    };
    let properties = plan.stored_properties(record.properties, || broker.unique_key());
    let input = plan.copy_of(&record, &properties, broker.config.store.store_host);
    broker.store.append(&input, now_millis() as i64).map(|_| ()).map_err(|e| e.to_string())
}

/// At a stop, leaves the cursors where the broker's shutdown writes them.
fn hand_over(broker: &Broker, service: &DelayService) {
    let mut written = lock(&broker.delays);
    if *written != *service.cursors() {
        *written = service.cursors().clone();
        broker.delays_dirty.store(true, Ordering::Release);
    }
}

/// Writes the cursors, after flushing the re-appends they account for; whether they are on
/// disk now.
pub(super) fn persist(broker: &Broker) -> bool {
    let _writing = lock(&broker.persisting);
    if !broker.delays_dirty.swap(false, Ordering::AcqRel) {
        return true;
    }
    let snapshot = lock(&broker.delays).clone();
    if let Err(e) = broker.store.persist() {
        tracing::warn!(error = %e, "delay cursors not written: the commit log did not flush");
        broker.delays_dirty.store(true, Ordering::Release);
        return false;
    }
    let written = persist::save(broker, persist::DELAYS, &snapshot);
    if !written {
        broker.delays_dirty.store(true, Ordering::Release);
    }
    written
}
