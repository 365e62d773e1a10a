//! The timer wheel's shell (`TimerMessageStore`'s threads): binds the timer core
//! (`petrel_core::broker::timer_wheel`) to the store, RocketMQ's timer files and the clock.
//!
//! At start it reads `config/timercheck`, opens `timerlog/` cut at the checkpoint's flush
//! position (units past it are enqueued again from the checkpoint's queue offset) and rebuilds
//! the wheel from the units of slots not yet read. Then it does what the core asks, one action
//! at a time, and wakes it when dispatch stores timer messages and on its timers.
//!
//! Progress reaches `timercheck` only after the commit log (the messages put), the timer log
//! and the wheel's changed slots are durable. A restart reads again the slots read since the
//! last checkpoint; the checkpoint also says where in the commit log their puts may begin
//! (Petrel's bytes at 56 of `timercheck`), and the puts found from there on are not made
//! again: a message is put once, across crashes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use petrel_core::broker::timer::{
    self, due_properties, real_target, PutKey, Replayed, TIMER_TOPIC,
};
use petrel_core::broker::timer_metrics::TimerMetrics;
use petrel_core::broker::timer_wheel::{
    Arrival, LoggedUnit, Pipe, SlotRef, SlotUnit, TimerAction, TimerConfig, TimerEvent,
    TimerProgress, TimerResume, TimerService, UnitKeys,
};
use petrel_core::broker::{property, SCHEDULE_TOPIC};
use petrel_core::record::{self, RecordInput};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::signal::Flag;
use petrel_storage::timer::{
    checkpoint_path, is_sync_failure, log_dir, read_checkpoint, sync_entries, wheel_path,
    write_checkpoint, Slot, TimerCheckpoint, TimerLog, TimerWheelFile,
};
use petrel_storage::{GetStatus, ReadLimits, StoreError};

use super::ha::either;
use super::transactions::{self, scanned};
use super::{lock, persist as config_files, Broker};
use crate::clock::{now_millis, sleep_until};

/// How long after a failed step the core tries again.
const RETRY_MS: u64 = 1_000;
/// Timer messages read from the timer topic at a time.
const READ_BATCH: usize = 32;
/// Steps done before the shell lets other tasks run.
const STEPS_PER_YIELD: usize = 256;

/// The timer files this run holds, and what it remembers between actions.
struct Files {
    log: TimerLog,
    wheel: TimerWheelFile,
    checkpoint: TimerCheckpoint,
    /// Puts made after the last checkpoint before this run began (a crash, or a stop that
    /// could not write it): not made again.
    replayed: Replayed,
    /// The commit log's end when the slot being read was read: its puts lie after it.
    slot_started_at: u64,
    /// The slot the write time first moved to after the start: the enqueue pipeline had
    /// placed every message the restart enqueued again, each in a slot up to this one.
    caught_up_slot: Option<i64>,
    /// The moment the next caught-up read will vouch for.
    mark: Option<Mark>,
    /// `config/timermetrics` as last written.
    metrics: TimerMetrics,
    /// The real topics the wheel met, by `realTopicHash`, to name its counts.
    names: BTreeMap<i32, String>,
    /// A follower: its master's checkpoints, as read time and commit-log point, oldest first.
    followed: Option<VecDeque<(i64, i64)>>,
}

/// A master's timer service: it delivers.
pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    serve(broker, stop, false).await;
}

/// A slave's timer service, a follower (RocketMQ's slave `TimerMessageStore`): it builds its
/// own timer log and wheel from the timer topic its master's log brings, and passes over, with
/// no put, the slots its master has read, as the master's checkpoint says (asked for every
/// [`FOLLOW_PERIOD_MS`] with GET_TIMER_CHECK_POINT). Its checkpoint pairs its read position
/// with the commit-log point of a master checkpoint at or before it, so that once promoted
/// it finds the puts its old master made in the slots it reads again, and makes none twice.
pub(super) async fn follow(broker: Arc<Broker>, stop: Flag) {
    serve(broker, stop, true).await;
}

async fn serve(broker: Arc<Broker>, stop: Flag, follower: bool) {
    if !broker.config.timer.settings.enabled {
        return;
    }
    // A slave's log cut back to its master's takes records the wheel may hold: it is opened
    // again, and drops the units of records past the dispatched end.
    while !stop.is_set() {
        // A disk that fails a write or is full may refuse the files for a while.
        let (files, service) = loop {
            match open(&broker, follower) {
                Ok(opened) => break opened,
                Err(e) => failed(&broker, "timer files did not open; will retry", e),
            }
            tokio::select! {
                biased;
                _ = stop.wait() => return,
                () = tokio::time::sleep(std::time::Duration::from_millis(RETRY_MS)) => {}
            }
        };
        *lock(&broker.timer_metrics) = Some(files.metrics.clone());
        serve_files(&broker, &stop, files, service).await;
    }
}

/// Runs the service on the files opened until `stop`, or until the log is cut back.
async fn serve_files(
    broker: &Arc<Broker>,
    stop: &Flag,
    mut files: Files,
    mut service: TimerService,
) {
    let (masters, mut master) = tokio::sync::watch::channel(None);
    let asking = Flag::new();
    if files.followed.is_some() {
        tokio::spawn(ask_master(broker.clone(), either(stop, &asking), masters));
    }
    // The slots' counts, where sends check `timerCongestNumEachSlot`.
    let counting = broker.config.timer.settings.flow_controlled();
    if counting {
        let slots = service.slots().iter().map(|(&time, slot)| (time, i64::from(slot.num)));
        lock(&broker.timer_slots).by_slot = slots.collect();
    }
    let dispatched = broker.store.dispatched();
    let truncations = broker.store().truncations();
    while broker.store().truncations() == truncations {
        let seen = dispatched.get();
        if let Some(checkpoint) = *master.borrow_and_update() {
            followed(&mut files, &mut service, &checkpoint);
        }
        let mut steps = 0;
        while let Some(action) = service.poll_action() {
            let slot = match &action {
                TimerAction::Append(unit) => Some(unit.slot_time()),
                _ => None,
            };
            let event = execute(broker, &mut files, action);
            service.handle(now_millis(), event);
            if let Some(slot) = slot.filter(|_| counting) {
                let num = service.slots().get(&slot).map_or(0, |s| i64::from(s.num));
                lock(&broker.timer_slots).by_slot.insert(slot, num);
            }
            #[cfg(madsim)]
            service.check_invariants();
            steps += 1;
            if steps % STEPS_PER_YIELD == 0 {
                tokio::task::yield_now().await;
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait() => break,
            going = dispatched.wait_for(|now| now != seen) => match going {
                true => service.handle(now_millis(), TimerEvent::Arrived),
                false => {
                    stop.wait().await;
                    break;
                }
            },
            () = sleep_until(service.poll_timeout()) => {}
            Ok(()) = master.changed() => {}
        }
        service.tick(now_millis());
        if counting {
            let slots = &mut lock(&broker.timer_slots).by_slot;
            *slots = slots.split_off(&service.read_time());
        }
        let done = service.read_time().min(service.write_time());
        *lock(&broker.timer_done) = (done, broker.store().written_offset());
    }
    asking.set();
    // Counted again when the wheel opens next.
    lock(&broker.timer_slots).by_slot.clear();
    if !persist(broker, &mut files, &service.progress()) {
        tracing::warn!(
            "timer checkpoint not written at stop; the next start enqueues again from the last one"
        );
    }
    lock(&broker.timer_checkpoints).clear();
}

/// Pages kept for GET_TIMER_CHECK_POINT until the confirm offset passes them: a minute's worth.
const CHECKPOINTS_KEPT: usize = 64;

/// How often a follower asks its master for the master's timer checkpoint (RocketMQ: 3 s).
const FOLLOW_PERIOD_MS: u64 = 3_000;

/// Asks the master its broker follows for its timer checkpoint, every [`FOLLOW_PERIOD_MS`].
async fn ask_master(
    broker: Arc<Broker>,
    stop: Flag,
    masters: tokio::sync::watch::Sender<Option<TimerCheckpoint>>,
) {
    let period = std::time::Duration::from_millis(FOLLOW_PERIOD_MS);
    loop {
        let master = lock(&broker.learned_master_addr).clone();
        if let Some(master) = master {
            match master_checkpoint(&broker, &master).await {
                Ok(checkpoint) => {
                    masters.send_replace(Some(checkpoint));
                }
                Err(why) => tracing::debug!(%master, %why, "no timer checkpoint from the master"),
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// GET_TIMER_CHECK_POINT of `master`: its checkpoint as RocketMQ encodes it, with Petrel's
/// commit-log point after it (a follower needs it; a RocketMQ master's page has none).
async fn master_checkpoint(broker: &Broker, master: &str) -> Result<TimerCheckpoint, String> {
    let ask = RemotingCommand::request(request::GET_TIMER_CHECK_POINT);
    let timeout = std::time::Duration::from_millis(FOLLOW_PERIOD_MS);
    let reply = broker.namesrv.invoke(master, ask, timeout).await.map_err(|e| e.to_string())?;
    if reply.code != response::SUCCESS {
        return Err(format!("answered {} {:?}", reply.code, reply.remark));
    }
    let checkpoint = TimerCheckpoint::decode(&reply.body)
        .ok_or_else(|| format!("a body of {} bytes is no checkpoint", reply.body.len()))?;
    match checkpoint.commit_log_end {
        Some(_) => Ok(checkpoint),
        None => Err("the checkpoint has no commit-log point (not a Petrel master)".into()),
    }
}

/// A master checkpoint read: the follower may pass over the slots before its read time.
fn followed(files: &mut Files, service: &mut TimerService, master: &TimerCheckpoint) {
    let (Some(followed), Some(end)) = (files.followed.as_mut(), master.commit_log_end) else {
        return;
    };
    if followed.back().is_none_or(|(read, _)| *read < master.last_read_time_ms) {
        followed.push_back((master.last_read_time_ms, end));
        service.follow(master.last_read_time_ms);
    }
}

/// Opens the timer files, cut at the checkpoint, and the service resuming from them.
fn open(broker: &Broker, follower: bool) -> std::io::Result<(Files, TimerService)> {
    let root = &broker.config.store.root;
    let disk = broker.disk.clone();
    sync_entries(disk.as_ref(), root)?;
    let checkpoint = read_or_start_checkpoint(broker, follower)?;
    // A page RocketMQ wrote records its flush position from before the flush its queue offset
    // counts (prepareTimerCheckPoint runs first): its log is kept to its last whole unit, and
    // the queue resumes after that unit's message, as RocketMQ's own recovery does.
    let rocketmq_page = checkpoint.commit_log_end.is_none();
    let cut = match rocketmq_page {
        true => u64::MAX,
        false => u64::try_from(checkpoint.last_flush_pos).unwrap_or(0),
    };
    let (mut log, mut units, mut offsets) = open_log(broker, cut)?;
    // Units whose message lies at or past the end of what dispatch handed over (a record a
    // crash left unconfirmed, or cut back when a master came back as a slave) go: the queue
    // resumes below them, and the message gets its unit again if it is confirmed again. Not
    // the dispatched offset: after a round that failed at the index, the timer queue is
    // readable past it, and cutting the units the wheel took from there while the queue
    // resumes after them lost those messages (seed 337704023 of timer_failover).
    let end = broker.store().handed_over_offset();
    if let Some(first) = offsets.iter().position(|offset| *offset >= end as i64) {
        tracing::warn!(end, pos = units[first].pos, "timer units past the dispatched log cut off");
        drop(log);
        (log, units, offsets) = open_log(broker, units[first].pos as u64)?;
    }
    let wheel = TimerWheelFile::open(disk.as_ref(), &wheel_path(root))?;
    let after_last_unit = offsets
        .last()
        .copied()
        .filter(|_| rocketmq_page)
        .and_then(|offset| broker.store().message_at(u64::try_from(offset).ok()?))
        .and_then(|bytes| scanned(&bytes).map(|record| record.queue_offset + 1));
    let (min, max) = broker.store().queue_offsets(TIMER_TOPIC, 0).unwrap_or((0, 0));
    let queue_offset = checkpoint
        .last_queue_offset
        .max(after_last_unit.unwrap_or(0))
        .clamp(min as i64, max as i64);
    let read_time_ms = checkpoint.last_read_time_ms;
    // A follower's position only ever moved to a master's, whose puts were confirmed.
    let delivered_before = checkpoint.follower.then_some(read_time_ms);
    let resume = TimerResume { read_time_ms, queue_offset, delivered_before };
    let config = TimerConfig {
        settings: broker.config.timer.settings,
        retry_ms: RETRY_MS,
        persist_interval_ms: broker.config.timer.flush_interval_ms,
    };
    let mut service = TimerService::new(config, resume, units, now_millis());
    if follower {
        service.follow(read_time_ms);
    }
    let replayed = match follower {
        true => Replayed::default(),
        false => replayed_puts(broker, checkpoint.commit_log_end)?,
    };
    tracing::info!(
        follower,
        read_time = service.read_time(),
        queue_offset,
        log_end = log.end(),
        pending = service.pending(),
        replayed = replayed.len(),
        "timer wheel recovered"
    );
    let metrics = config_files::load_timer_metrics(disk.as_ref(), &broker.config);
    let names = metrics.timing_count.keys().map(|name| (record::java_hash(name), name.clone()));
    let files = Files {
        log,
        wheel,
        checkpoint,
        replayed,
        slot_started_at: broker.store().written_offset(),
        caught_up_slot: None,
        mark: None,
        names: names.collect(),
        metrics,
        followed: follower.then(VecDeque::new),
    };
    Ok((files, service))
}

/// The timer log cut at `cut`, its units in log order and their messages' offsets.
fn open_log(broker: &Broker, cut: u64) -> std::io::Result<(TimerLog, Vec<LoggedUnit>, Vec<i64>)> {
    let (mut units, mut offsets) = (Vec::new(), Vec::new());
    let dir = log_dir(&broker.config.store.root);
    let file_bytes = broker.config.timer.log_file_bytes;
    let log = TimerLog::open(broker.disk.clone(), &dir, file_bytes, cut, |pos, unit| {
        units.push(LoggedUnit {
            pos: pos as i64,
            slot_time: unit.slot_time(),
            magic: unit.magic,
            topic_hash: unit.topic_hash,
        });
        offsets.push(unit.offset_py);
    })?;
    Ok((log, units, offsets))
}

/// `config/timercheck`, or on the first start a new one, written before anything is
/// enqueued so that a crash before the first periodic one knows where the puts it must not
/// make again begin. A new follower starts with no slot read (its read position the oldest
/// the wheel holds): it must never pass over a slot its master has not read.
fn read_or_start_checkpoint(broker: &Broker, follower: bool) -> std::io::Result<TimerCheckpoint> {
    let disk = broker.disk.as_ref();
    let path = checkpoint_path(&broker.config.store.root);
    if let Some(checkpoint) = read_checkpoint(disk, &path)? {
        return Ok(checkpoint);
    }
    let now = now_millis() as i64;
    let fresh = match follower {
        true => {
            TimerCheckpoint { last_read_time_ms: 0, follower: true, ..fresh_checkpoint(now, 0) }
        }
        false => fresh_checkpoint(now, broker.store().written_offset()),
    };
    write_checkpoint(disk, &path, &fresh)?;
    Ok(fresh)
}

/// The puts the wheel made in the commit log from `from` (where the checkpoint says puts it
/// does not count may begin) to its end.
fn replayed_puts(broker: &Broker, from: Option<i64>) -> std::io::Result<Replayed> {
    let mut replayed = Replayed::default();
    let Some(from) = from else { return Ok(replayed) };
    let from = u64::try_from(from).unwrap_or(0);
    transactions::scan_log(broker, from, |record| {
        if let Some(key) = PutKey::of_output(record.topic, record.properties) {
            replayed.note(key);
        }
        Ok(())
    })
    .map_err(|e| {
        std::io::Error::other(format!("cannot read the puts after the timer checkpoint: {e}"))
    })?;
    Ok(replayed)
}

/// The checkpoint of a store that never had one: read from now, nothing enqueued, no put
/// made before `commit_log_end`.
fn fresh_checkpoint(now_ms: i64, commit_log_end: u64) -> TimerCheckpoint {
    TimerCheckpoint {
        last_read_time_ms: now_ms,
        last_flush_pos: 0,
        last_queue_offset: 0,
        master_queue_offset: 0,
        state_version: 0,
        timestamp: now_ms,
        counter: 0,
        commit_log_end: Some(commit_log_end as i64),
        follower: false,
    }
}

fn execute(broker: &Broker, files: &mut Files, action: TimerAction) -> TimerEvent {
    match action {
        TimerAction::Read { offset } => {
            let read = read_queue(broker, files, offset);
            if let TimerEvent::Read { caught_up_at: Some(at), .. } = read {
                let slot = broker.config.timer.settings.slot(at as i64);
                files.caught_up_slot.get_or_insert(slot);
            }
            read
        }
        TimerAction::Append(unit) => match files.log.append(&unit) {
            Ok(pos) => TimerEvent::Appended { pos: pos as i64 },
            Err(e) => {
                failed(broker, "timer unit not written; will retry", e);
                TimerEvent::Failed(Pipe::Enqueue)
            }
        },
        TimerAction::ReadSlot { time_ms, slot } => {
            files.slot_started_at = broker.store().written_offset();
            read_slot(broker, files, time_ms, slot)
        }
        TimerAction::Put { offset_py, roll, enqueue_ms, .. } => {
            put(broker, &mut files.replayed, offset_py, roll, enqueue_ms)
        }
        TimerAction::Persist(progress) => {
            TimerEvent::Persisted { written: persist(broker, files, &progress) }
        }
    }
}

/// A moment the enqueue pipeline will vouch for: every timer message stored before `at` (the
/// commit log then ended at `written`) lies below `queue_end` in the timer queue, known once
/// dispatch passed `written`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: u64,
    written: u64,
    queue_end: Option<u64>,
}

/// Reads timer messages from `offset`. The read is caught up as of the mark's moment once it
/// reached the queue offset every message stored before that moment lies below: a cancel the
/// broker took before then is in its slot before the slot is read. Under steady sends the
/// dispatch point never meets the log's end at one instant; the mark waits for it to pass.
fn read_queue(broker: &Broker, files: &mut Files, offset: i64) -> TimerEvent {
    let store = broker.store();
    let mark = &mut files.mark;
    let pending = mark.get_or_insert_with(|| Mark {
        at: now_millis(),
        written: store.written_offset(),
        queue_end: None,
    });
    if pending.queue_end.is_none() && store.dispatched_offset() >= pending.written {
        pending.queue_end = Some(store.queue_offsets(TIMER_TOPIC, 0).map_or(0, |(_, max)| max));
    }
    let limits = ReadLimits { messages_max: READ_BATCH, ..ReadLimits::default() };
    let got = store.get_messages(TIMER_TOPIC, 0, offset.max(0) as u64, limits, &|_| true);
    if got.status == GetStatus::ReadFailed {
        return TimerEvent::Failed(Pipe::Enqueue);
    }
    let mut arrivals = Vec::with_capacity(got.messages.len());
    for bytes in &got.messages {
        let Some(record) = scanned(bytes) else { return TimerEvent::Failed(Pipe::Enqueue) };
        let properties = record.properties;
        let real_topic = record::property(properties, property::REAL_TOPIC.as_bytes())
            .and_then(|t| std::str::from_utf8(t).ok());
        let topic_hash = timer::topic_hash(real_topic);
        if let Some(topic) = real_topic.filter(|_| !files.names.contains_key(&topic_hash)) {
            files.names.insert(topic_hash, topic.to_owned());
        }
        arrivals.push(Arrival {
            queue_offset: record.queue_offset,
            offset_py: record.physical_offset,
            size_py: bytes.len() as i32,
            out_ms: timer::out_ms(properties),
            delete: record::property(properties, timer::names::DEL_UNIQKEY.as_bytes()).is_some(),
            topic_hash,
            stored_ms: record.store_timestamp,
        });
    }
    let next = (got.next_begin_offset as i64).max(offset);
    let caught_up_at = match *mark {
        Some(Mark { at, queue_end: Some(end), .. }) if next as u64 >= end => {
            *mark = None;
            Some(at)
        }
        _ => None,
    };
    TimerEvent::Read { arrivals, next, caught_up_at }
}

/// Reads the units of a slot, oldest first, and the keys of their messages.
fn read_slot(broker: &Broker, files: &Files, time_ms: i64, slot: SlotRef) -> TimerEvent {
    let mut units = Vec::with_capacity(slot.units as usize);
    let mut pos = slot.last_pos;
    while pos >= 0 && units.len() < slot.units as usize {
        let unit = match files.log.read(pos as u64) {
            Ok(unit) => unit,
            Err(e) => {
                tracing::warn!(time_ms, pos, error = %e, "timer slot unreadable; will retry");
                return TimerEvent::Failed(Pipe::Dequeue);
            }
        };
        let keys = match message_keys(broker, unit.offset_py) {
            Ok(keys) => keys,
            Err(()) => return TimerEvent::Failed(Pipe::Dequeue),
        };
        units.push(SlotUnit {
            pos,
            magic: unit.magic,
            write_time_ms: unit.write_time_ms,
            offset_py: unit.offset_py,
            size_py: unit.size_py,
            topic_hash: unit.topic_hash,
            keys,
        });
        pos = unit.prev_pos;
    }
    units.reverse();
    TimerEvent::SlotRead { units }
}

/// The keys of the message at `offset_py`: `None` when the commit log no longer holds it,
/// `Err` when it could not be read now.
fn message_keys(broker: &Broker, offset_py: i64) -> Result<Option<UnitKeys>, ()> {
    let store = broker.store();
    if offset_py < store.min_physical_offset() as i64 {
        tracing::error!(offset_py, "timer message gone from the commit log; not delivered");
        return Ok(None);
    }
    let Some(bytes) = store.message_at(offset_py as u64) else {
        tracing::warn!(offset_py, "timer message unreadable; will retry");
        return Err(());
    };
    let Some(record) = scanned(&bytes) else { return Err(()) };
    let get = |name: &str| {
        record::property(record.properties, name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let key = match (get(property::REAL_TOPIC), get(property::UNIQ_KEY)) {
        (Some(topic), Some(unique)) => Some(timer::delete_key(topic, unique)),
        _ => None,
    };
    Ok(Some(UnitKeys { delete_key: get(timer::names::DEL_UNIQKEY).map(str::to_owned), key }))
}

/// Appends the timer message at `offset_py` again: to its real topic, or (a roll) to the
/// timer topic; unless the commit log holds that put from before the last restart.
fn put(
    broker: &Broker,
    replayed: &mut Replayed,
    offset_py: i64,
    roll: bool,
    enqueue_ms: i64,
) -> TimerEvent {
    let pipe = Pipe::Dequeue;
    let Some(bytes) = broker.store().message_at(offset_py as u64) else {
        tracing::warn!(offset_py, "timer message unreadable; will retry");
        return TimerEvent::Failed(pipe);
    };
    let Some(record) = scanned(&bytes) else { return TimerEvent::Failed(pipe) };
    let key = PutKey::of_source(record.properties, roll);
    if !replayed.is_empty() && key.as_ref().is_some_and(|key| replayed.take(key)) {
        tracing::debug!(offset_py, roll, "timer put made before the restart; not made again");
        return TimerEvent::Put;
    }
    let now = now_millis() as i64;
    let properties = due_properties(record.properties, roll, enqueue_ms, now);
    let (topic, queue_id) = match roll {
        true => (TIMER_TOPIC, 0),
        false => match real_target(record.properties) {
            Some(target) => target,
            None => {
                tracing::error!(offset_py, "timer message without REAL_TOPIC and REAL_QID dropped");
                return TimerEvent::Dropped;
            }
        },
    };
    if topic == SCHEDULE_TOPIC || (topic == TIMER_TOPIC && !roll) {
        tracing::error!(offset_py, topic, "timer message naming a system topic dropped");
        return TimerEvent::Dropped;
    }
    if !roll {
        broker.ensure_readable(topic, queue_id);
    }
    let input = RecordInput {
        topic,
        queue_id,
        flag: record.flag,
        sys_flag: record.sys_flag,
        born_timestamp: record.born_timestamp,
        born_host: record.born_host,
        store_host: broker.config.store.store_host,
        reconsume_times: record.reconsume_times,
        // A committed transaction message keeps its half message's offset, as a delayed one
        // does: with a commit's flag and offset 0 (RocketMQ's), the repair of lost ops would
        // take it for the commit of the half message at 0.
        prepared_transaction_offset: record.prepared_transaction_offset,
        body: record.body,
        properties: &properties,
    };
    match broker.store.append(&input, now) {
        Ok(appended) => {
            tracing::debug!(offset_py, roll, ?key, at = appended.end_offset, "timer put");
            TimerEvent::Put
        }
        // A message the store can never take as it is (RocketMQ's PUT_NO_RETRY): dropped, or
        // it would hold every later slot back.
        Err(
            e @ (StoreError::MessageTooLarge { .. }
            | StoreError::Record(_)
            | StoreError::InvalidTopic(_)
            | StoreError::InvalidBatch(_)),
        ) => {
            tracing::error!(offset_py, error = %e, "timer message the store refuses dropped");
            TimerEvent::Dropped
        }
        Err(e) => {
            tracing::warn!(offset_py, error = %e, "timer message not put yet; will retry");
            TimerEvent::Failed(pipe)
        }
    }
}

/// Logs a failed write of a timer file; a failed sync stops the store (§9: nothing about the
/// disk is known after it), and the broker with it, to start again from what the disk holds.
fn failed(broker: &Broker, what: &str, error: std::io::Error) {
    tracing::warn!(error = %error, "{what}");
    if is_sync_failure(&error) {
        broker.store().stop_after_failed_sync("a timer file", error);
    }
}

/// Makes the puts, the timer log and the changed slots durable, then writes the checkpoint;
/// whether it is on disk now.
fn persist(broker: &Broker, files: &mut Files, progress: &TimerProgress) -> bool {
    let commit_log_end = match broker.store.persist() {
        Ok(end) => end,
        Err(e) => {
            tracing::warn!(error = %e, "timer checkpoint not written: the commit log did not flush");
            return false;
        }
    };
    let (read_time_ms, puts_from, follower) = match files.followed.as_mut() {
        Some(followed) => {
            // A deposed master's position may lie past its successor's, past puts that were
            // lost with the switch: the page claims no more than the master's.
            let read = followed
                .back()
                .map_or(progress.read_time_ms, |(at, _)| progress.read_time_ms.min(*at));
            let point = paired_point(followed, &files.checkpoint, read, commit_log_end);
            (read, point, files.checkpoint.follower || !followed.is_empty())
        }
        None => (progress.read_time_ms, puts_from(files, progress, commit_log_end), false),
    };
    let next = next_checkpoint(&files.checkpoint, progress, files.log.end(), puts_from);
    let checkpoint = TimerCheckpoint { last_read_time_ms: read_time_ms, follower, ..next };
    match write_files(broker, files, progress, &checkpoint) {
        Ok(()) => {
            files.checkpoint = checkpoint;
            remove_read_files(files, progress);
            write_metrics(broker, files, progress);
            if !follower {
                let mut written = lock(&broker.timer_checkpoints);
                if written.len() >= CHECKPOINTS_KEPT {
                    written.pop_front();
                }
                written.push_back((checkpoint, commit_log_end));
            }
            true
        }
        Err(e) => {
            failed(broker, "timer checkpoint not written; will retry", e);
            false
        }
    }
}

/// A follower's commit-log point: that of the newest master checkpoint whose read position is
/// at or before the follower's (the master's puts in every slot from there on lie after it),
/// else its own last one; never past its own flushed end (the master's log may be ahead).
fn paired_point(
    followed: &mut VecDeque<(i64, i64)>,
    last: &TimerCheckpoint,
    read: i64,
    flushed: u64,
) -> u64 {
    while followed.get(1).is_some_and(|(at, _)| *at <= read) {
        followed.pop_front();
    }
    let point = match followed.front() {
        Some((at, end)) if *at <= read => *end,
        _ => last.commit_log_end.unwrap_or(0),
    };
    u64::try_from(point).unwrap_or(0).min(flushed)
}

/// Where in the commit log the puts the next checkpoint does not count may begin: where the
/// read of a slot read in part began, else the flushed end; and no later than the last
/// checkpoint's until the read position passed every slot the run before the restart may
/// have read. Those slots are read again, and a crash before they are done must find the puts
/// the earlier run made in them once more, even those this run already met: holding the
/// point back only while some were still to be met (seed 1501 of the timer scenario) moved
/// it past the first run's puts of a slot still being read, and a second crash put them twice.
fn puts_from(files: &mut Files, progress: &TimerProgress, commit_log_end: u64) -> u64 {
    let from = match progress.reading_slot {
        true => files.slot_started_at.min(commit_log_end),
        false => commit_log_end,
    };
    // The first caught-up read after the start came after the restart, so after every slot
    // the run before could read: once the read position passed its slot, no put of a message
    // due before the read position is asked for again.
    if files.caught_up_slot.is_some_and(|slot| progress.read_time_ms > slot) {
        files.replayed.forget_before(progress.read_time_ms);
        return from;
    }
    let last = files.checkpoint.commit_log_end.and_then(|last| u64::try_from(last).ok());
    last.map_or(from, |last| from.min(last))
}

/// Writes `config/timermetrics` when a count changed. The wheel's counts are named by the
/// topics met since the start, then by the topic table (units rebuilt from the log carry only
/// their topic's hash). A failed write is tried again at the next persist.
fn write_metrics(broker: &Broker, files: &mut Files, progress: &TimerProgress) {
    if progress.waiting.keys().any(|hash| !files.names.contains_key(hash)) {
        for topic in broker.topics().names() {
            files.names.entry(record::java_hash(topic)).or_insert_with(|| topic.to_owned());
        }
    }
    let mut metrics = files.metrics.clone();
    if metrics.update(&progress.waiting, &files.names, now_millis() as i64)
        && config_files::save(broker, config_files::TIMER_METRICS, &metrics)
    {
        *lock(&broker.timer_metrics) = Some(metrics.clone());
        files.metrics = metrics;
    }
}

/// The timer log, the changed slots, then the checkpoint, each durable before the next.
fn write_files(
    broker: &Broker,
    files: &Files,
    progress: &TimerProgress,
    checkpoint: &TimerCheckpoint,
) -> std::io::Result<()> {
    let precision = broker.config.timer.settings.precision_ms;
    let slots: Vec<Slot> = progress
        .slots
        .iter()
        .map(|(time_ms, slot)| Slot {
            time_ms: *time_ms,
            first_pos: slot.first_pos,
            last_pos: slot.last_pos,
            num: slot.num,
            magic: 0,
        })
        .collect();
    files.log.sync()?;
    files.wheel.write_slots(&slots, precision)?;
    files.wheel.sync()?;
    write_checkpoint(broker.disk.as_ref(), &checkpoint_path(&broker.config.store.root), checkpoint)
}

/// The checkpoint after `last` recording `progress`; `puts_from` is where in the commit log the
/// puts it does not count may begin.
fn next_checkpoint(
    last: &TimerCheckpoint,
    progress: &TimerProgress,
    log_end: u64,
    puts_from: u64,
) -> TimerCheckpoint {
    TimerCheckpoint {
        last_read_time_ms: progress.read_time_ms,
        last_flush_pos: log_end as i64,
        last_queue_offset: progress.queue_offset,
        master_queue_offset: progress.queue_offset,
        state_version: last.state_version,
        timestamp: now_millis() as i64,
        counter: last.counter + 1,
        commit_log_end: Some(puts_from as i64),
        follower: false,
    }
}

/// Removes the timer-log files that hold only units of slots read before the checkpoint.
fn remove_read_files(files: &mut Files, progress: &TimerProgress) {
    let below = progress.oldest_pos.map_or(files.log.end(), |pos| pos as u64);
    if let Err(e) = files.log.remove_files_before(below) {
        tracing::warn!(error = %e, "old timer-log files not removed");
    }
}
