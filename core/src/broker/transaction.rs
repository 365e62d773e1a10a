//! Transaction messages' decisions (`docs/transactions.md`): how a prepared send is stored as
//! a half message, what END_TRANSACTION does with one, and the op messages that record each
//! resolution, and the index of resolved half messages rebuilt from them. Pure: the shell
//! reads the half message and asks the index whether it was resolved already, and carries
//! out the plan (`bin/src/broker/end_transaction.rs`).

use crate::broker::send_plan::{plan_wait, SendConfig};
use crate::broker::{timer, Refusal};
use crate::codes::response;
use crate::record::{properties, property, put_property, sys_flag};

/// Where half messages wait, one queue (`TopicValidator.RMQ_SYS_TRANS_HALF_TOPIC`).
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where each commit or rollback is recorded, one queue per half queue.
pub const OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where a half message goes after `transactionCheckMax` checks.
pub const CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The tag of every op message.
pub const REMOVE_TAG: &str = "d";
/// The consumer group whose offsets are the check service's progress (`CID_SYS_RMQ_TRANS`).
pub const SYSTEM_GROUP: &str = "CID_RMQ_SYS_TRANS";

/// The property a check's copy of a half message carries: the queue offset of the first
/// half message of its transaction (RocketMQ's `TRAN_PREPARED_QUEUE_OFFSET`).
pub const ORIGIN_PROPERTY: &str = "TRAN_PREPARED_QUEUE_OFFSET";
/// How many times a half message was checked (RocketMQ's `TRANSACTION_CHECK_TIMES`).
pub const CHECK_TIMES_PROPERTY: &str = "TRANSACTION_CHECK_TIMES";

/// END_TRANSACTION's `commitOrRollback`: the transaction types of `sysFlag`.
pub const COMMIT: i32 = sys_flag::TRANSACTION_COMMIT;
pub const ROLLBACK: i32 = sys_flag::TRANSACTION_ROLLBACK;
pub const UNKNOWN: i32 = 0;

/// Whether a send asks for a transaction: its `TRAN_MSG` reads true (Java's
/// `Boolean.parseBoolean`: "true" in any case).
pub fn is_prepared(sent_properties: &[u8]) -> bool {
    property(sent_properties, b"TRAN_MSG").is_some_and(|v| v.eq_ignore_ascii_case(b"true"))
}

/// The properties a prepared send is stored with (`parseHalfMessageInner`): the sent ones
/// with `__transactionId__` = `UNIQ_KEY` (when set), `REAL_TOPIC` and `REAL_QID` (re)set.
pub fn half_properties(sent: &[u8], real_topic: &str, real_queue_id: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(sent.len() + 96);
    let mut unique_key = None;
    for (name, value) in properties(sent) {
        match name {
            b"REAL_TOPIC" | b"REAL_QID" | b"__transactionId__" => continue,
            b"UNIQ_KEY" => unique_key = Some(value),
            _ => {}
        }
        put_property(&mut out, name, value);
    }
    if let Some(key) = unique_key.filter(|k| !k.is_empty()) {
        put_property(&mut out, "__transactionId__", key);
    }
    put_property(&mut out, "REAL_TOPIC", real_topic);
    put_property(&mut out, "REAL_QID", real_queue_id.to_string());
    out
}

/// A half message's `sysFlag`: the sent one with its transaction type cleared, so that the
/// half queue gives it a unit.
pub fn half_sys_flag(sent: i32) -> i32 {
    sent & !sys_flag::TRANSACTION_MASK
}

/// What END_TRANSACTION asks (`EndTransactionRequestHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequest<'a> {
    pub producer_group: &'a str,
    /// The half message's queue offset.
    pub tran_state_table_offset: i64,
    /// The half message's commit-log offset.
    pub commit_log_offset: i64,
    pub commit_or_rollback: i32,
    pub from_transaction_check: bool,
}

/// The record at the request's commit-log offset, as the store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfView<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub properties: &'a [u8],
}

/// What the broker knows beside the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndContext {
    pub is_slave: bool,
    /// An op message already names the half message: it was committed or rolled back.
    pub resolved: bool,
    pub now: i64,
    /// `transactionTimeOut`, milliseconds.
    pub transaction_timeout_ms: i64,
}

/// What END_TRANSACTION does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndPlan {
    /// `commitOrRollback` 0 (unknown): nothing, and no answer; a check will ask again.
    Nothing,
    /// Append `Committed` in the real topic and the op for the half message, as one append.
    Commit(Committed),
    /// Append the op for the half message.
    Rollback,
}

/// The message a commit stores in its real topic (`endMessageTransaction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub topic: String,
    pub queue_id: i32,
    /// The half message's flags with transaction type COMMIT.
    pub sys_flag: i32,
    /// The record's PREPARED_TRANSACTION_OFFSET field: the half message's commit-log offset.
    pub prepared_transaction_offset: i64,
    /// The half message's properties less `REAL_TOPIC`, `REAL_QID` and `TRAN_MSG`.
    pub properties: Vec<u8>,
}

impl Committed {
    /// The slot a commit bound for the timer topic waits for (`TIMER_OUT_MS`): where
    /// `timerCongestNumEachSlot` is checked, as [`SendPlan::timer_slot`] for a send.
    ///
    /// [`SendPlan::timer_slot`]: crate::broker::send_plan::SendPlan::timer_slot
    pub fn timer_slot(&self) -> Option<i64> {
        (self.topic == timer::TIMER_TOPIC).then(|| timer::out_ms(&self.properties)).flatten()
    }

    /// The commit as it is stored: in its topic, or first in the schedule or timer topic
    /// when it has a delay level or a timer ask, measured from `now_ms`, the commit
    /// (RocketMQ's put hook treats a commit as a send).
    pub fn waiting(mut self, config: &SendConfig, now_ms: i64) -> Result<Committed, Refusal> {
        let wait = plan_wait(config, &self.properties, now_ms)?;
        if let Some((topic, queue_id)) = wait.queue() {
            self.properties = wait.properties(&self.properties, &self.topic, self.queue_id);
            self.topic = topic;
            self.queue_id = queue_id;
        }
        Ok(self)
    }
}

/// Decides END_TRANSACTION for the record `half` read at the request's commit-log offset (or
/// none there), in RocketMQ's order of checks and with its codes and remarks. Unlike
/// RocketMQ, a half message already committed or rolled back is refused, so that no message
/// is delivered twice and none after its rollback.
pub fn plan_end(
    request: &EndRequest<'_>,
    half: Option<&HalfView<'_>>,
    context: &EndContext,
) -> Result<EndPlan, Refusal> {
    if context.is_slave {
        let why = "this broker is a slave: end the transaction on its master";
        return Err(Refusal::new(response::SLAVE_NOT_AVAILABLE, why));
    }
    match request.commit_or_rollback {
        UNKNOWN => return Ok(EndPlan::Nothing),
        COMMIT | ROLLBACK => {}
        other => {
            let why =
                format!("commitOrRollback field wrong: {other} (8 commit, 12 rollback, 0 unknown)");
            return Err(Refusal::new(response::SYSTEM_ERROR, why));
        }
    }
    let Some(half) = half.filter(|h| h.topic == HALF_TOPIC) else {
        return Err(Refusal::new(
            response::SYSTEM_ERROR,
            "Find prepared transaction message failed",
        ));
    };
    if !request.from_transaction_check && past_immunity(half, context) {
        let why = "the transaction was checked already: its check-immunity time has passed";
        return Err(Refusal::new(response::ILLEGAL_OPERATION, why));
    }
    let group = property(half.properties, b"PGROUP").unwrap_or_default();
    if group != request.producer_group.as_bytes() {
        return Err(Refusal::new(response::SYSTEM_ERROR, "The producer group wrong"));
    }
    if half.queue_offset != request.tran_state_table_offset {
        let why = "The transaction state table offset wrong";
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    if half.physical_offset != request.commit_log_offset {
        return Err(Refusal::new(response::SYSTEM_ERROR, "The commit log offset wrong"));
    }
    if context.resolved {
        let why = format!(
            "the transaction of the half message at queue offset {} was committed or rolled \
             back already; nothing done",
            half.queue_offset
        );
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    if request.commit_or_rollback == ROLLBACK {
        return Ok(EndPlan::Rollback);
    }
    committed(half).map(EndPlan::Commit)
}

/// A producer's answer (not one to a check) after the message's check-immunity time, when it
/// has one: max(its seconds, `transactionTimeOut`) since it was born.
fn past_immunity(half: &HalfView<'_>, context: &EndContext) -> bool {
    if property(half.properties, b"CHECK_IMMUNITY_TIME_IN_SECONDS").is_none() {
        return false;
    }
    let immunity = immunity_ms(half.properties).unwrap_or(context.transaction_timeout_ms);
    let age = context.now.saturating_sub(half.born_timestamp);
    age > immunity.max(context.transaction_timeout_ms)
}

/// A half message's `CHECK_IMMUNITY_TIME_IN_SECONDS`, in milliseconds, when it reads.
pub fn immunity_ms(properties: &[u8]) -> Option<i64> {
    let seconds = property(properties, b"CHECK_IMMUNITY_TIME_IN_SECONDS")?;
    let seconds = std::str::from_utf8(seconds).ok()?.trim().parse::<i64>().ok()?;
    Some(seconds.saturating_mul(1000))
}

/// A half message's `REAL_TOPIC`, when set.
pub fn real_topic(properties: &[u8]) -> Option<&str> {
    property(properties, b"REAL_TOPIC")
        .and_then(|t| std::str::from_utf8(t).ok())
        .filter(|t| !t.is_empty())
}

/// A half message's `REAL_QID`, when it reads as a queue id.
pub fn real_queue_id(properties: &[u8]) -> Option<i32> {
    property(properties, b"REAL_QID")
        .and_then(|q| std::str::from_utf8(q).ok()?.parse::<i32>().ok())
        .filter(|q| *q >= 0)
}

fn committed(half: &HalfView<'_>) -> Result<Committed, Refusal> {
    let illegal = |why: &str| Refusal::new(response::SYSTEM_ERROR, why.to_owned());
    let topic = real_topic(half.properties)
        .ok_or_else(|| illegal("the half message has no REAL_TOPIC: it cannot be committed"))?;
    let queue_id = real_queue_id(half.properties)
        .ok_or_else(|| illegal("the half message has no REAL_QID: it cannot be committed"))?;
    let mut properties_out = Vec::with_capacity(half.properties.len());
    for (name, value) in properties(half.properties) {
        if !matches!(name, b"REAL_TOPIC" | b"REAL_QID" | b"TRAN_MSG") {
            put_property(&mut properties_out, name, value);
        }
    }
    Ok(Committed {
        topic: topic.to_owned(),
        queue_id,
        sys_flag: (half.sys_flag & !sys_flag::TRANSACTION_MASK) | COMMIT,
        prepared_transaction_offset: half.physical_offset,
        properties: properties_out,
    })
}

/// An op message's body naming half-queue `offsets`: each in decimal followed by ",".
pub fn op_body(offsets: &[i64]) -> String {
    offsets.iter().map(|o| format!("{o},")).collect()
}

/// The half-queue offsets an op body names: its comma-separated decimal pieces (RocketMQ 4.9
/// and 5.0 wrote one offset without the comma); a piece that is not a number is skipped.
pub fn op_offsets(body: &[u8]) -> Vec<i64> {
    body.split(|b| *b == b',')
        .filter_map(|piece| std::str::from_utf8(piece).ok()?.trim().parse::<i64>().ok())
        .collect()
}

/// The queue offset of the first half message of the transaction whose half message at
/// `queue_offset` has `properties`: its own, unless it is a check's copy.
pub fn origin(properties: &[u8], queue_offset: i64) -> i64 {
    property(properties, ORIGIN_PROPERTY.as_bytes())
        .and_then(|o| std::str::from_utf8(o).ok()?.parse::<i64>().ok())
        .filter(|o| *o >= 0)
        .unwrap_or(queue_offset)
}

/// A half message's `TRANSACTION_CHECK_TIMES` (0 when absent or unreadable).
pub fn check_times(properties: &[u8]) -> i32 {
    property(properties, CHECK_TIMES_PROPERTY.as_bytes())
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<i64>().ok())
        .map_or(0, |times| times.clamp(0, i64::from(i32::MAX)) as i32)
}

/// The properties of a check's copy of the half message at `queue_offset`: its own, with
/// `TRANSACTION_CHECK_TIMES` = `check_times` and its transaction's first offset.
pub fn copy_properties(properties: &[u8], queue_offset: i64, check_times: i32) -> Vec<u8> {
    let first = origin(properties, queue_offset);
    let mut out = Vec::with_capacity(properties.len() + 64);
    for (name, value) in self::properties(properties) {
        if name != CHECK_TIMES_PROPERTY.as_bytes() && name != ORIGIN_PROPERTY.as_bytes() {
            put_property(&mut out, name, value);
        }
    }
    put_property(&mut out, CHECK_TIMES_PROPERTY, check_times.to_string());
    put_property(&mut out, ORIGIN_PROPERTY, first.to_string());
    out
}

/// The half-queue offsets the op resolving the half message at `queue_offset` names: its
/// own and, for a check's copy, its transaction's first, so that no other copy of the
/// transaction is checked or resolved again.
pub fn resolved_offsets(queue_offset: i64, origin: i64) -> Vec<i64> {
    match origin == queue_offset {
        true => vec![queue_offset],
        false => vec![queue_offset, origin],
    }
}

/// An op message's properties (`makeOpMessageInner`: a `Message` with tag "d").
pub fn op_properties() -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    put_property(&mut out, "TAGS", REMOVE_TAG);
    put_property(&mut out, "WAIT", "true");
    out
}

/// The half-queue offsets the op messages name: which transactions were committed or
/// rolled back. Rebuilt at start from the op queue; each entry is kept while the op that
/// names it is stored, so that the index forgets with the op queue's deleted files what a
/// restart would not find either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedIndex {
    /// Half-queue offset to the op-queue offset of the (first) op naming it.
    by_half: std::collections::HashMap<i64, i64>,
    /// Op-queue offset to the half-queue offsets it named first.
    by_op: std::collections::BTreeMap<i64, Vec<i64>>,
}

impl ResolvedIndex {
    /// Notes the op at `op_offset` naming `halves`.
    pub fn record(&mut self, op_offset: i64, halves: &[i64]) {
        for half in halves {
            if let std::collections::hash_map::Entry::Vacant(entry) = self.by_half.entry(*half) {
                entry.insert(op_offset);
                self.by_op.entry(op_offset).or_default().push(*half);
            }
        }
    }

    /// Whether the transaction of the half message at `queue_offset`, first stored at
    /// `origin`, was committed or rolled back.
    pub fn is_resolved(&self, queue_offset: i64, origin: i64) -> bool {
        self.by_half.contains_key(&queue_offset) || self.by_half.contains_key(&origin)
    }

    /// Forgets what the ops before `op_min_offset` (deleted with their files) named.
    pub fn forget_before(&mut self, op_min_offset: i64) {
        let kept = self.by_op.split_off(&op_min_offset);
        for halves in std::mem::replace(&mut self.by_op, kept).into_values() {
            for half in halves {
                self.by_half.remove(&half);
            }
        }
    }

    /// How many half-queue offsets the index holds.
    pub fn len(&self) -> usize {
        self.by_half.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_half.is_empty()
    }

    /// The two maps agree: every half offset is listed under the op it points at, once.
    pub fn check_invariants(&self) {
        let listed: usize = self.by_op.values().map(Vec::len).sum();
        assert_eq!(listed, self.by_half.len(), "half offsets listed under ops");
        for (op, halves) in &self.by_op {
            assert!(!halves.is_empty(), "op {op} kept with nothing");
            for half in halves {
                assert_eq!(self.by_half.get(half), Some(op), "half {half} under op {op}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::encode_properties as props;

    #[test]
    fn a_prepared_send_is_stored_as_a_half_message() {
        let sent =
            props(&[("TRAN_MSG", "TRUE"), ("PGROUP", "PG"), ("UNIQ_KEY", "K1"), ("TAGS", "a")]);
        assert!(is_prepared(&sent));
        assert!(!is_prepared(&props(&[("TRAN_MSG", "yes")])));
        let half = half_properties(&sent, "Orders", 3);
        let expected = props(&[
            ("TRAN_MSG", "TRUE"),
            ("PGROUP", "PG"),
            ("UNIQ_KEY", "K1"),
            ("TAGS", "a"),
            ("__transactionId__", "K1"),
            ("REAL_TOPIC", "Orders"),
            ("REAL_QID", "3"),
        ]);
        assert_eq!(half, expected);
        let flags = sys_flag::MULTI_TAGS | sys_flag::TRANSACTION_PREPARED;
        assert_eq!(half_sys_flag(flags), sys_flag::MULTI_TAGS);
        assert!(sys_flag::is_dispatched(half_sys_flag(flags)), "the half queue has a unit");
    }

    fn half(properties: &[u8]) -> HalfView<'_> {
        HalfView {
            topic: HALF_TOPIC,
            queue_id: 0,
            queue_offset: 7,
            physical_offset: 4096,
            sys_flag: sys_flag::MULTI_TAGS,
            born_timestamp: 1_000,
            properties,
        }
    }

    fn request(commit_or_rollback: i32) -> EndRequest<'static> {
        EndRequest {
            producer_group: "PG",
            tran_state_table_offset: 7,
            commit_log_offset: 4096,
            commit_or_rollback,
            from_transaction_check: false,
        }
    }

    const CONTEXT: EndContext =
        EndContext { is_slave: false, resolved: false, now: 2_000, transaction_timeout_ms: 6_000 };

    #[test]
    fn a_commit_stores_the_message_in_its_real_topic_and_a_rollback_only_the_op() {
        let stored = half_properties(&props(&[("TRAN_MSG", "true"), ("PGROUP", "PG")]), "T", 2);
        let plan = plan_end(&request(COMMIT), Some(&half(&stored)), &CONTEXT).unwrap();
        let expected = Committed {
            topic: "T".into(),
            queue_id: 2,
            sys_flag: sys_flag::MULTI_TAGS | COMMIT,
            prepared_transaction_offset: 4096,
            properties: props(&[("PGROUP", "PG")]),
        };
        assert_eq!(plan, EndPlan::Commit(expected));
        assert!(sys_flag::is_dispatched(sys_flag::MULTI_TAGS | COMMIT));
        let plan = plan_end(&request(ROLLBACK), Some(&half(&stored)), &CONTEXT).unwrap();
        assert_eq!(plan, EndPlan::Rollback);
        assert_eq!(plan_end(&request(UNKNOWN), None, &CONTEXT), Ok(EndPlan::Nothing));
    }

    /// A commit with a timer ask or a delay level waits in the timer or schedule topic, its
    /// delay counted from the commit; one without waits nowhere.
    #[test]
    fn a_commit_waits_as_a_send_would() {
        let config = SendConfig {
            broker_permission: 6,
            broker_addr: "10.0.0.1:10911".into(),
            cluster_name: "DefaultCluster".into(),
            message_bytes_max: 4 << 20,
            delay_levels: crate::broker::schedule::DelayLevels::default(),
            timer: crate::broker::timer::TimerSettings::new(true, 1_000, 172_800, 259_200),
            auto_create_group: true,
            slave: false,
            reject_transaction_message: false,
        };
        let committed = |asks: &[(&str, &str)]| {
            let stored = half_properties(&props(&[&[("PGROUP", "PG")], asks].concat()), "T", 2);
            let Ok(EndPlan::Commit(committed)) =
                plan_end(&request(COMMIT), Some(&half(&stored)), &CONTEXT)
            else {
                panic!("a commit")
            };
            committed.waiting(&config, 1_700_000_000_250)
        };
        let plain = committed(&[]).unwrap();
        assert_eq!((plain.topic.as_str(), plain.queue_id), ("T", 2));
        let timed = committed(&[("TIMER_DELAY_SEC", "30")]).unwrap();
        assert_eq!((timed.topic.as_str(), timed.queue_id), ("rmq_sys_wheel_timer", 0));
        let expected = props(&[
            ("PGROUP", "PG"),
            ("TIMER_DELAY_SEC", "30"),
            ("TIMER_OUT_MS", "1700000030000"),
            ("REAL_TOPIC", "T"),
            ("REAL_QID", "2"),
        ]);
        assert_eq!(timed.properties, expected);
        assert_eq!(timed.sys_flag, sys_flag::MULTI_TAGS | COMMIT, "still a commit");
        assert_eq!(timed.prepared_transaction_offset, 4096);
        let delayed = committed(&[("DELAY", "3"), ("TIMER_DELAY_SEC", "30")]).unwrap();
        assert_eq!((delayed.topic.as_str(), delayed.queue_id), ("SCHEDULE_TOPIC_XXXX", 2));
        let expected =
            props(&[("PGROUP", "PG"), ("REAL_TOPIC", "T"), ("REAL_QID", "2"), ("DELAY", "3")]);
        assert_eq!(delayed.properties, expected, "the level wins; the timer ask is dropped");
        let late = committed(&[("TIMER_DELIVER_MS", "1700000000000")]).unwrap();
        assert_eq!((late.topic.as_str(), late.queue_id), ("T", 2), "its time passed");
        let refused = committed(&[("TIMER_DELAY_SEC", "x")]).unwrap_err();
        assert_eq!(refused.code, response::MESSAGE_ILLEGAL);
    }

    /// Every refusal, in RocketMQ's order, with its code and remark.
    #[test]
    fn bad_requests_are_refused_with_rocketmqs_codes() {
        let stored = half_properties(
            &props(&[("PGROUP", "PG"), ("CHECK_IMMUNITY_TIME_IN_SECONDS", "10")]),
            "T",
            0,
        );
        let refused = |request: &EndRequest<'_>, half: Option<&HalfView<'_>>, context| {
            let refusal = plan_end(request, half, context).unwrap_err();
            (refusal.code, refusal.remark)
        };
        let slave = EndContext { is_slave: true, ..CONTEXT };
        assert_eq!(refused(&request(COMMIT), Some(&half(&stored)), &slave).0, 11);
        let (code, why) = refused(&request(5), Some(&half(&stored)), &CONTEXT);
        assert_eq!(code, response::SYSTEM_ERROR);
        assert!(why.starts_with("commitOrRollback field wrong"), "{why}");
        let missing = (response::SYSTEM_ERROR, "Find prepared transaction message failed".into());
        assert_eq!(refused(&request(COMMIT), None, &CONTEXT), missing);
        let elsewhere = HalfView { topic: "T", ..half(&stored) };
        assert_eq!(refused(&request(COMMIT), Some(&elsewhere), &CONTEXT), missing);
        let late = EndContext { now: 1_000 + 10_001, ..CONTEXT };
        assert_eq!(refused(&request(COMMIT), Some(&half(&stored)), &late).0, 604);
        let checked = EndRequest { from_transaction_check: true, ..request(COMMIT) };
        assert!(plan_end(&checked, Some(&half(&stored)), &late).is_ok(), "a check's answer");
        let group = EndRequest { producer_group: "Other", ..request(COMMIT) };
        let wrong = |why: &str| (response::SYSTEM_ERROR, why.to_owned());
        assert_eq!(
            refused(&group, Some(&half(&stored)), &CONTEXT),
            wrong("The producer group wrong")
        );
        let table = EndRequest { tran_state_table_offset: 8, ..request(COMMIT) };
        let want = wrong("The transaction state table offset wrong");
        assert_eq!(refused(&table, Some(&half(&stored)), &CONTEXT), want);
        let log = EndRequest { commit_log_offset: 1, ..request(COMMIT) };
        assert_eq!(
            refused(&log, Some(&half(&stored)), &CONTEXT),
            wrong("The commit log offset wrong")
        );
        let resolved = EndContext { resolved: true, ..CONTEXT };
        for kind in [COMMIT, ROLLBACK] {
            let (code, why) = refused(&request(kind), Some(&half(&stored)), &resolved);
            assert_eq!(code, response::SYSTEM_ERROR);
            assert!(why.contains("committed or rolled back already"), "{why}");
        }
        let bare = props(&[("PGROUP", "PG")]);
        let (_, why) = refused(&request(COMMIT), Some(&half(&bare)), &CONTEXT);
        assert!(why.contains("no REAL_TOPIC"), "{why}");
    }

    /// RocketMQ's op body: offsets 5, 6 and 9 are the bytes `35 2C 36 2C 39 2C`; a 4.9 or 5.0
    /// body of one offset without the comma reads too.
    #[test]
    fn op_bodies_match_rocketmqs() {
        assert_eq!(op_body(&[5, 6, 9]).as_bytes(), [0x35, 0x2C, 0x36, 0x2C, 0x39, 0x2C]);
        assert_eq!(op_offsets(b"5,6,9,"), [5, 6, 9]);
        assert_eq!(op_offsets(b"17"), [17]);
        assert_eq!(op_offsets(b"x,3,,"), [3], "a piece that is not a number is skipped");
        assert!(op_offsets(b"").is_empty());
    }

    #[test]
    fn a_copy_names_its_origin_and_the_index_resolves_every_copy() {
        assert_eq!(origin(&props(&[("TAGS", "a")]), 7), 7);
        assert_eq!(origin(&props(&[(ORIGIN_PROPERTY, "3")]), 7), 3);
        assert_eq!(origin(&props(&[(ORIGIN_PROPERTY, "-1")]), 7), 7);
        assert_eq!(resolved_offsets(7, 7), [7]);
        assert_eq!(resolved_offsets(9, 3), [9, 3]);
        let mut index = ResolvedIndex::default();
        index.record(0, &resolved_offsets(9, 3));
        index.record(1, &[4]);
        index.record(2, &[4, 5]);
        index.check_invariants();
        assert!(index.is_resolved(3, 3), "the first half message of a resolved copy");
        assert!(index.is_resolved(12, 3), "a later copy of the same transaction");
        assert!(!index.is_resolved(6, 6));
        assert_eq!(index.len(), 4);
        index.forget_before(2);
        index.check_invariants();
        assert!(!index.is_resolved(3, 3) && !index.is_resolved(4, 4));
        assert!(index.is_resolved(5, 5));
        assert_eq!(
            op_properties(),
            b"TAGS\x01d\x02WAIT\x01true\x02".to_vec(),
            "RocketMQ's property encoding"
        );
    }

    proptest::proptest! {
        #[test]
        fn an_op_body_reads_back_its_offsets(offsets in proptest::collection::vec(0..i64::MAX, 0..50)) {
            proptest::prop_assert_eq!(op_offsets(op_body(&offsets).as_bytes()), offsets);
        }

        /// Whatever the request and the record, the core answers without a panic, and a
        /// commit goes to a topic that is not the half topic, with type COMMIT.
        #[test]
        fn any_request_is_planned_or_refused(
            kind in proptest::prop_oneof![proptest::strategy::Just(COMMIT), proptest::strategy::Just(ROLLBACK), -20..20i32],
            real_topic in "[A-Za-z%_-]{0,8}",
            queue in "-?[0-9]{0,3}",
            offsets in (0..10i64, 0..10i64),
            resolved: bool,
        ) {
            let mut stored = props(&[("PGROUP", "PG"), ("REAL_TOPIC", &real_topic), ("REAL_QID", &queue)]);
            stored.extend_from_slice(b"junk");
            let request = EndRequest { tran_state_table_offset: offsets.0, commit_log_offset: offsets.1 * 4096, ..request(kind) };
            let context = EndContext { resolved, ..CONTEXT };
            let view = HalfView { queue_offset: 7, ..half(&stored) };
            if let Ok(EndPlan::Commit(committed)) = plan_end(&request, Some(&view), &context) {
                proptest::prop_assert!(committed.topic != HALF_TOPIC && !committed.topic.is_empty());
                proptest::prop_assert_eq!(committed.sys_flag & sys_flag::TRANSACTION_MASK, COMMIT);
                proptest::prop_assert!(!resolved);
            }
        }
    }
}
