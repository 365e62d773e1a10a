//! Timer messages (RocketMQ 5's `TimerMessageStore`): what a send with `TIMER_DELIVER_MS`,
//! `TIMER_DELAY_SEC` or `TIMER_DELAY_MS` becomes, and the wheel service that delivers it.
//!
//! A timer message is stored in [`TIMER_TOPIC`] with `TIMER_OUT_MS` (its delivery time
//! rounded to a slot), `REAL_TOPIC` and `REAL_QID` ([`plan_timer`], [`wheel_properties`]). The
//! service then moves it through two pipelines, as the delay service does: no I/O and no
//! clock; the shell does what an action says and reports an event.
//!
//! ```text
//!  enqueue:  Read(queue offset) ──▶ per message: Append(unit into its slot, or the first
//!                                               slot not read when its time passed)
//!  dequeue:  slot R due (R < W) ──▶ ReadSlot ──▶ per unit: Put(to REAL_TOPIC, or rolled back
//!                                               to the timer topic) ──▶ R += precision
//!  persist:  Persist { R, queue offset, changed slots } (nothing of enqueue in flight)
//! ```
//!
//! `W`, the write time, is the last second the enqueue pipeline knew itself caught up with
//! every acknowledged timer message; a slot is read only once `W` passed it. So a message is
//! never early (its slot ends at or after its time), and a cancel acknowledged before its
//! message's time is in the slot before the slot is read.
//!
//! The wheel lives here: one [`SlotRef`] per pending second, each the head of a list of
//! timer-log units linked backwards (`prevPos`), as RocketMQ's `timerwheel` file holds them;
//! the shell writes the changed slots to that file when it persists.

use std::collections::BTreeMap;

use crate::broker::{property, Refusal};
use crate::codes::response;
use crate::record;

/// The topic timer messages wait in (`TimerMessageStore.TIMER_TOPIC`), one queue.
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";

/// The timer properties (`MessageConst.PROPERTY_TIMER_*`).
pub mod names {
    pub const DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const OUT_MS: &str = "TIMER_OUT_MS";
    pub const ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
    pub const DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
    pub const ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
    pub const DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
}

/// Slots of the wheel (`TIMER_WHEEL_TTL_DAY × DAY_SECS`), whatever the precision.
pub const WHEEL_SLOTS: i64 = 7 * 86_400;
/// Slots kept clear between the read position and the wheel's far end (`TIMER_BLANK_SLOTS`).
pub const BLANK_SLOTS: i64 = 60;
/// Unit magic: a unit to deliver.
pub const MAGIC_DEFAULT: i32 = 1;
/// Unit magic: a unit whose message goes back to the timer topic (its time is further).
pub const MAGIC_ROLL: i32 = 2;
/// Unit magic: a cancel of the message with its delete key.
pub const MAGIC_DELETE: i32 = 4;

/// The broker's timer settings, as RocketMQ's `MessageStoreConfig` normalises them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerSettings {
    /// `timerWheelEnable`.
    pub enabled: bool,
    /// `timerPrecisionMs`, one of 100, 200, 500, 1000.
    pub precision_ms: i64,
    /// `timerRollWindowSlot`: a time further ahead is rolled.
    pub roll_window_slots: i64,
    /// `timerMaxDelaySec`: a time further ahead is refused.
    pub max_delay_sec: i64,
    /// `timerCongestNumEachSlot`: a slot holding more is under flow control
    /// ([`TimerSettings::flow_control`]); `i32::MAX`, RocketMQ's default, turns it off.
    pub congest_num_each_slot: i64,
}

impl Default for TimerSettings {
    fn default() -> Self {
        TimerSettings::new(true, 1_000, 3_600 * 24 * 2, 3_600 * 24 * 3)
    }
}

impl TimerSettings {
    /// Snaps the precision down to 100, 200, 500 or 1000 ms (`setTimerPrecisionMs`) and the
    /// roll window into `2..=WHEEL_SLOTS - BLANK_SLOTS` (out of range: the largest).
    pub fn new(
        enabled: bool,
        precision_ms: i64,
        roll_window_slots: i64,
        max_delay_sec: i64,
    ) -> Self {
        let precision_ms = [100, 200, 500, 1_000]
            .into_iter()
            .rev()
            .find(|&candidate| precision_ms >= candidate)
            .unwrap_or(100);
        let largest = WHEEL_SLOTS - BLANK_SLOTS;
        let roll_window_slots = match (2..=largest).contains(&roll_window_slots) {
            true => roll_window_slots,
            false => largest,
        };
        let congest_num_each_slot = i64::from(i32::MAX);
        TimerSettings {
            enabled,
            precision_ms,
            roll_window_slots,
            max_delay_sec,
            congest_num_each_slot,
        }
    }

    /// Whether slots are under flow control at all (`timerCongestNumEachSlot` set below
    /// `i32::MAX`): only then does the shell keep the slots' counts where sends can see them.
    pub fn flow_controlled(&self) -> bool {
        self.congest_num_each_slot < i64::from(i32::MAX)
    }

    /// Whether a timer message may be taken into a slot that already counts `waiting` messages
    /// (`TimerMessageStore.isReject`): up to `timerCongestNumEachSlot` always, from twice that
    /// never, and in between refused with a chance that grows from 0 to 1 as the count does;
    /// `draw` is the shell's random number in `0..1000`. RocketMQ's formula refuses with the
    /// opposite chance in between (`nextInt(1000) > 1000 * (n - limit) / (limit + 0.1)`: almost
    /// surely just past the limit, hardly ever just short of twice it), which its own remark
    /// belies; Petrel does what the remark says. A refusal is SYSTEM_ERROR with RocketMQ's
    /// remark (`WHEEL_TIMER_FLOW_CONTROL`), which producers retry.
    pub fn flow_control(&self, waiting: i64, draw: u32) -> Result<(), Refusal> {
        let limit = self.congest_num_each_slot;
        let refused = match waiting {
            n if n <= limit => false,
            n if n >= limit.saturating_mul(2) => true,
            n => i128::from(draw) * i128::from(limit) < 1_000 * i128::from(n - limit),
        };
        if !refused {
            return Ok(());
        }
        let twice = limit.saturating_mul(2);
        let why = format!(
            "timer message is under flow control, max num limit is {twice} or the current value \
             is greater than {limit} and less than {twice}, trigger random flow control"
        );
        Err(Refusal::new(response::SYSTEM_ERROR, why))
    }

    /// The start of the slot holding `time_ms`.
    pub fn slot(&self, time_ms: i64) -> i64 {
        time_ms.div_euclid(self.precision_ms) * self.precision_ms
    }
}

/// Whether a producer's message is a timer message, and its `TIMER_OUT_MS` if so
/// (`HookUtils.transformTimerMessage`). Asked only of a single message that is neither a half
/// message nor delayed by level. `Ok(None)`: stored as sent (no timer property, its time
/// already passed, or it came back from the wheel with `TIMER_OUT_MS`).
pub fn plan_timer(
    properties: &[u8],
    now_ms: i64,
    settings: &TimerSettings,
) -> Result<Option<i64>, Refusal> {
    let get = |name: &str| record::property(properties, name.as_bytes());
    if get(names::OUT_MS).is_some() {
        return Ok(None);
    }
    let asked = [(names::DELAY_SEC, 1_000), (names::DELAY_MS, 1), (names::DELIVER_MS, 0)]
        .into_iter()
        .find_map(|(name, unit)| get(name).map(|value| (name, unit, value)));
    let Some((name, unit, value)) = asked else { return Ok(None) };
    if !settings.enabled {
        let why = "accurate timer message is not enabled, timerWheelEnable is false";
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    let max_ms = settings.max_delay_sec.saturating_mul(1_000);
    let illegal = |what: String| {
        let why = format!(
            "timer message illegal: {what}; the delay time should not be bigger than the max \
             delay {max_ms}ms, and a cancel (TIMER_DEL_UNIQKEY) must name a time after now"
        );
        Refusal::new(response::MESSAGE_ILLEGAL, why)
    };
    let shown = String::from_utf8_lossy(value);
    let number = std::str::from_utf8(value).ok().and_then(|v| v.parse::<i64>().ok());
    let deliver_ms = match (number, unit) {
        (Some(ms), 0) => Some(ms),
        (Some(n), unit) => n.checked_mul(unit).and_then(|delay| now_ms.checked_add(delay)),
        (None, _) => None,
    };
    let Some(deliver_ms) = deliver_ms else {
        return Err(illegal(format!("{name}={shown} is not a whole number in range")));
    };
    if deliver_ms <= now_ms {
        return match get(names::DEL_UNIQKEY) {
            Some(_) => Err(illegal(format!("the cancel's time {deliver_ms} is not after now"))),
            None => Ok(None),
        };
    }
    if deliver_ms - now_ms > max_ms {
        return Err(illegal(format!("{name}={shown} is {}ms ahead", deliver_ms - now_ms)));
    }
    // The slot before a time that starts one: the message is read once its slot ended.
    let p = settings.precision_ms;
    Ok(Some(if deliver_ms % p == 0 { deliver_ms - p } else { deliver_ms / p * p }))
}

/// The stored properties of a timer message: `TIMER_OUT_MS`, `REAL_TOPIC` and `REAL_QID`
/// set.
pub fn wheel_properties(
    properties: &[u8],
    real_topic: &str,
    real_queue_id: i32,
    out_ms: i64,
) -> Vec<u8> {
    let (out, queue) = (out_ms.to_string(), real_queue_id.to_string());
    let set =
        [(names::OUT_MS, &*out), (property::REAL_TOPIC, real_topic), (property::REAL_QID, &*queue)];
    record::replaced(properties, &set, &[])
}

/// A message delayed by level keeps no timer property (RocketMQ clears them: the level wins).
pub fn without_timer_asks(properties: &[u8]) -> Vec<u8> {
    record::replaced(properties, &[], &[names::DELIVER_MS, names::DELAY_SEC, names::DELAY_MS])
}

/// The properties of a message leaving the wheel (`TimerMessageStore.convert`):
/// `TIMER_ENQUEUE_MS` (when its unit was written) and `TIMER_DEQUEUE_MS` set; a roll raises `TIMER_ROLL_TIMES` and stays in the timer topic, a
/// delivery drops `REAL_TOPIC` and `REAL_QID`.
pub fn due_properties(properties: &[u8], roll: bool, enqueue_ms: i64, dequeue_ms: i64) -> Vec<u8> {
    let (enqueued, dequeued) = (enqueue_ms.to_string(), dequeue_ms.to_string());
    let rolls = (roll_times(properties) + 1).to_string();
    let mut set = vec![(names::ENQUEUE_MS, &*enqueued), (names::DEQUEUE_MS, &*dequeued)];
    if roll {
        set.push((names::ROLL_TIMES, &*rolls));
        return record::replaced(properties, &set, &[]);
    }
    record::replaced(properties, &set, &[property::REAL_TOPIC, property::REAL_QID])
}

/// How often a message was rolled (`TIMER_ROLL_TIMES`, 0 when absent or not a number).
pub fn roll_times(properties: &[u8]) -> i32 {
    record::property(properties, names::ROLL_TIMES.as_bytes())
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The real topic and queue a timer message goes to, when its properties name them.
pub fn real_target(properties: &[u8]) -> Option<(&str, i32)> {
    let topic =
        std::str::from_utf8(record::property(properties, property::REAL_TOPIC.as_bytes())?).ok()?;
    let queue =
        std::str::from_utf8(record::property(properties, property::REAL_QID.as_bytes())?).ok()?;
    Some((topic, queue.parse().ok()?))
}

/// A timer message's `TIMER_OUT_MS`, when it holds a number.
pub fn out_ms(properties: &[u8]) -> Option<i64> {
    std::str::from_utf8(record::property(properties, names::OUT_MS.as_bytes())?).ok()?.parse().ok()
}

/// What identifies a message to a cancel (`buildDeleteKey`): `REAL_TOPIC+UNIQ_KEY`.
pub fn delete_key(real_topic: &str, unique_key: &str) -> String {
    format!("{real_topic}+{unique_key}")
}

/// Java's `String.hashCode` of a topic, the unit's `realTopicHash` (0 for none).
pub fn topic_hash(topic: Option<&str>) -> i32 {
    topic.map_or(0, record::java_hash)
}

/// What identifies one put of the wheel: the message's `UNIQ_KEY` and `TIMER_OUT_MS`, and the
/// `TIMER_ROLL_TIMES` of the copy a roll writes (-1 for a delivery to the real topic).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PutKey {
    pub unique_key: String,
    pub out_ms: i64,
    pub roll_times: i32,
}

impl PutKey {
    /// The put a timer message in the wheel makes: a delivery, or (`roll`) its next roll.
    pub fn of_source(properties: &[u8], roll: bool) -> Option<PutKey> {
        let unique = record::property(properties, property::UNIQ_KEY.as_bytes())?;
        Some(PutKey {
            unique_key: std::str::from_utf8(unique).ok()?.to_owned(),
            out_ms: out_ms(properties)?,
            roll_times: if roll { roll_times(properties) + 1 } else { -1 },
        })
    }

    /// The put a stored record is, when the wheel wrote it (it carries `TIMER_DEQUEUE_MS`).
    pub fn of_output(topic: &[u8], properties: &[u8]) -> Option<PutKey> {
        record::property(properties, names::DEQUEUE_MS.as_bytes())?;
        PutKey::of_source(properties, false).map(|key| match topic == TIMER_TOPIC.as_bytes() {
            true => PutKey { roll_times: roll_times(properties), ..key },
            false => key,
        })
    }
}

/// The puts found in the commit log after the last timer checkpoint: a restart reads again
/// the slots read since, and each put already made is not made twice. A count per key, so two
/// messages a producer sent with one key and one time each go once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    puts: BTreeMap<PutKey, u32>,
}

impl Replayed {
    /// Notes a put found in the log.
    pub fn note(&mut self, key: PutKey) {
        *self.puts.entry(key).or_insert(0) += 1;
    }

    /// Whether the put `key` was made already (and counts it off).
    pub fn take(&mut self, key: &PutKey) -> bool {
        match self.puts.get_mut(key) {
            Some(left) if *left > 1 => {
                *left -= 1;
                true
            }
            Some(_) => {
                self.puts.remove(key);
                true
            }
            None => false,
        }
    }

    /// Forgets the puts of messages due before `read_time`: nothing asks for them again once
    /// the read position passed their time and every slot holding a message the restart
    /// enqueued again (a late one waits in the first slot not read), which the caller makes
    /// sure of.
    pub fn forget_before(&mut self, read_time: i64) {
        self.puts.retain(|key, _| key.out_ms >= read_time);
    }

    /// Puts noted and not yet taken.
    pub fn len(&self) -> usize {
        self.puts.values().map(|n| *n as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_past_its_congestion_limit_refuses_more_the_fuller_it_is() {
        let off = TimerSettings::default();
        assert!(!off.flow_controlled());
        assert_eq!(off.flow_control(i64::from(i32::MAX), 0), Ok(()));
        let on = TimerSettings { congest_num_each_slot: 100, ..TimerSettings::default() };
        assert!(on.flow_controlled());
        let refused_of_1000 =
            |waiting| (0..1_000).filter(|&draw| on.flow_control(waiting, draw).is_err()).count();
        assert_eq!(refused_of_1000(0), 0);
        assert_eq!(refused_of_1000(100), 0, "up to the limit: always taken");
        assert_eq!(refused_of_1000(101), 10, "just past it: one in a hundred refused");
        assert_eq!(refused_of_1000(150), 500);
        assert_eq!(refused_of_1000(199), 990);
        assert_eq!(refused_of_1000(200), 1_000, "from twice the limit: never taken");
        assert_eq!(refused_of_1000(i64::MAX), 1_000);
        let Err(refusal) = on.flow_control(200, 999) else { panic!("taken at twice the limit") };
        assert_eq!(refusal.code, response::SYSTEM_ERROR);
        assert_eq!(
            refusal.remark,
            "timer message is under flow control, max num limit is 200 or the current value is \
             greater than 100 and less than 200, trigger random flow control"
        );
        let zero = TimerSettings { congest_num_each_slot: 0, ..TimerSettings::default() };
        assert_eq!(zero.flow_control(0, 0), Ok(()), "an empty slot takes one");
        assert!(zero.flow_control(1, 999).is_err());
    }

    use crate::record::encode_properties as props;

    #[test]
    fn a_put_found_in_the_log_matches_the_put_its_source_would_make_once() {
        let source = props(&[
            ("UNIQ_KEY", "U1"),
            (names::OUT_MS, "5000"),
            ("REAL_TOPIC", "T"),
            ("REAL_QID", "0"),
        ]);
        let delivered = due_properties(&source, false, 1_000, 6_000);
        let rolled = due_properties(&source, true, 1_000, 6_000);
        let mut replayed = Replayed::default();
        replayed.note(PutKey::of_output(b"T", &delivered).unwrap());
        replayed.note(PutKey::of_output(TIMER_TOPIC.as_bytes(), &rolled).unwrap());
        assert_eq!(replayed.len(), 2);
        assert!(PutKey::of_output(b"T", &source).is_none(), "a producer's message is no put");
        assert!(replayed.take(&PutKey::of_source(&source, true).unwrap()));
        assert!(replayed.take(&PutKey::of_source(&source, false).unwrap()));
        assert!(!replayed.take(&PutKey::of_source(&source, false).unwrap()), "once");
        assert!(replayed.is_empty());
        // The rolled copy, rolled again, is another put.
        let again = PutKey::of_source(&rolled, true).unwrap();
        assert_eq!(again.roll_times, 2);
    }

    #[test]
    fn leaving_the_wheel_drops_the_real_target_and_a_roll_counts() {
        let source = props(&[
            ("UNIQ_KEY", "U1"),
            (names::OUT_MS, "5000"),
            ("REAL_TOPIC", "T"),
            ("REAL_QID", "3"),
        ]);
        assert_eq!(real_target(&source), Some(("T", 3)));
        let delivered = due_properties(&source, false, 1_000, 6_000);
        assert_eq!(real_target(&delivered), None);
        assert_eq!(record::property(&delivered, b"TIMER_ENQUEUE_MS"), Some(&b"1000"[..]));
        let rolled = due_properties(&due_properties(&source, true, 1, 2), true, 3, 4);
        assert_eq!(roll_times(&rolled), 2);
        assert_eq!(real_target(&rolled), Some(("T", 3)), "a roll keeps where it goes");
    }

    #[test]
    fn settings_snap_as_rocketmq_does() {
        let s = TimerSettings::new(true, 999, 1, 10);
        assert_eq!((s.precision_ms, s.roll_window_slots), (500, WHEEL_SLOTS - BLANK_SLOTS));
        assert_eq!(TimerSettings::new(true, 50, 5, 10).precision_ms, 100);
        assert_eq!(TimerSettings::new(true, 5_000, 5, 10).precision_ms, 1_000);
        assert_eq!(s.slot(1_499), 1_000);
    }
}
