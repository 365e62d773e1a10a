//! Delay levels: when a message sent with `DELAY=n`, or a retry, is due (RocketMQ's
//! `ScheduleMessageService`).
//!
//! A delayed message is stored under `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, with its real
//! topic and queue in the REAL_TOPIC and REAL_QID properties; its consume-queue tag code is the
//! time it is due. One cursor per level walks that queue in order; since every message of a
//! level waits the same delay, the queue is ordered by due time and a cursor only ever waits
//! for its head. Delivery re-appends the message to its real topic and then moves the cursor,
//! so a crash between the two delivers twice and never loses one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{properties, put_property};
use crate::Millis;

/// RocketMQ's `messageDelayLevel` default.
pub const DELAY_LEVELS_DEFAULT: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// The delay of each level, level 1 first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayLevels {
    delays_ms: Vec<Millis>,
}

impl Default for DelayLevels {
    fn default() -> Self {
        DelayLevels::parse(DELAY_LEVELS_DEFAULT).expect("the default levels parse")
    }
}

impl std::str::FromStr for DelayLevels {
    type Err = String;
    fn from_str(text: &str) -> Result<DelayLevels, String> {
        DelayLevels::parse(text)
    }
}

/// The levels as `messageDelayLevel` writes them, each in the largest unit that divides it.
impl std::fmt::Display for DelayLevels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, ms) in self.delays_ms.iter().enumerate() {
            let (number, unit) = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m")]
                .into_iter()
                .find(|(unit_ms, _)| ms % unit_ms == 0 && *ms > 0)
                .map_or((ms / 1_000, "s"), |(unit_ms, unit)| (ms / unit_ms, unit));
            let space = if n == 0 { "" } else { " " };
            write!(f, "{space}{number}{unit}")?;
        }
        Ok(())
    }
}

impl DelayLevels {
    /// Parses `"1s 5s 10m 2h 1d"`: numbers with a unit of s, m, h or d, space-separated.
    pub fn parse(text: &str) -> Result<DelayLevels, String> {
        let mut delays_ms = Vec::new();
        for item in text.split_whitespace() {
            let split = item.len() - item.chars().last().map_or(0, char::len_utf8);
            let (number, unit) = item.split_at(split);
            let unit_ms: Millis = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("delay level {item:?} has no unit of s, m, h or d")),
            };
            let number: Millis =
                number.parse().map_err(|_| format!("delay level {item:?} is not a number"))?;
            delays_ms.push(number.saturating_mul(unit_ms));
        }
        if delays_ms.is_empty() {
            return Err("messageDelayLevel lists no levels".to_owned());
        }
        Ok(DelayLevels { delays_ms })
    }

    /// How many levels there are (18 by default).
    pub fn count(&self) -> i32 {
        self.delays_ms.len() as i32
    }

    /// The delay of `level`; levels past the last take the last (as RocketMQ clamps them).
    pub fn delay_ms(&self, level: i32) -> Millis {
        let index = (level.max(1) as usize - 1).min(self.delays_ms.len() - 1);
        self.delays_ms[index]
    }

    /// The level a DELAY property asks for, clamped to the table; `None` for 0 or junk.
    pub fn clamp(&self, level: i32) -> Option<i32> {
        (level > 0).then(|| level.min(self.count()))
    }

    /// When a message of `level` stored at `store_time` is due: its consume-queue tag code.
    pub fn due_time(&self, level: i32, store_time: i64) -> i64 {
        store_time.saturating_add(self.delay_ms(level) as i64)
    }

    /// The queue of `SCHEDULE_TOPIC_XXXX` that holds `level`.
    pub fn queue_id(level: i32) -> i32 {
        level - 1
    }
}

/// What the cursor of a level does with the message at its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Deliver it now.
    Now,
    /// Wait until this time.
    At(i64),
}

/// Decides for a head message with tag code `due` (`correctDeliverTimestamp`): a due time
/// further away than the level's whole delay (a clock that went back, or a corrupt code) is
/// treated as due now rather than held for ever.
pub fn due(levels: &DelayLevels, level: i32, due: i64, now: i64) -> Due {
    let latest = now.saturating_add(levels.delay_ms(level) as i64);
    if due <= now || due > latest {
        Due::Now
    } else {
        Due::At(due)
    }
}

/// The cursors of every level, as `config/delayOffset.json` keeps them:
/// `{"offsetTable":{1:0,2:17}}` (level → next consume-queue offset; fastjson's bare keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DelayOffsets {
    pub offset_table: BTreeMap<i32, i64>,
}

impl DelayOffsets {
    pub fn get(&self, level: i32) -> i64 {
        self.offset_table.get(&level).copied().unwrap_or(0)
    }

    /// Moves the cursor of `level` forward; a cursor never goes back.
    pub fn advance(&mut self, level: i32, next: i64) -> bool {
        let entry = self.offset_table.entry(level).or_insert(0);
        if next > *entry {
            *entry = next;
            true
        } else {
            false
        }
    }
}

/// The message going to its real topic again: `(topic, queue_id, properties)` with DELAY
/// removed (REAL_TOPIC and REAL_QID stay, as RocketMQ leaves them), or `None` when the stored
/// message lacks its real topic.
pub fn restore(encoded: &[u8]) -> Option<(String, i32, Vec<u8>)> {
    let mut topic = None;
    let mut queue_id = None;
    let mut out = Vec::with_capacity(encoded.len());
    for (name, value) in properties(encoded) {
        match name {
            b"DELAY" => continue,
            b"REAL_TOPIC" => topic = Some(String::from_utf8_lossy(value).into_owned()),
            b"REAL_QID" => queue_id = std::str::from_utf8(value).ok()?.parse::<i32>().ok(),
            _ => {}
        }
        put_property(&mut out, name, value);
    }
    Some((topic?, queue_id.unwrap_or(0), out))
}

/// The properties of a message redirected to the schedule topic: the original ones with
/// REAL_TOPIC, REAL_QID and DELAY (re)set.
pub fn redirect(encoded: &[u8], real_topic: &str, real_queue_id: i32, level: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + 64);
    for (name, value) in properties(encoded) {
        if !matches!(name, b"REAL_TOPIC" | b"REAL_QID" | b"DELAY") {
            put_property(&mut out, name, value);
        }
    }
    put_property(&mut out, "REAL_TOPIC", real_topic);
    put_property(&mut out, "REAL_QID", real_queue_id.to_string());
    put_property(&mut out, "DELAY", level.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::property;

    #[test]
    fn default_levels_are_rocketmqs() {
        let levels = DelayLevels::default();
        assert_eq!(levels.count(), 18);
        assert_eq!(levels.delay_ms(1), 1_000);
        assert_eq!(levels.delay_ms(2), 5_000);
        assert_eq!(levels.delay_ms(18), 7_200_000);
        assert_eq!(levels.delay_ms(99), 7_200_000);
        assert_eq!(levels.clamp(40), Some(18));
        assert_eq!(levels.clamp(0), None);
        assert_eq!(levels.to_string(), DELAY_LEVELS_DEFAULT, "written back as given");
        assert_eq!(DelayLevels::parse("1d 90s 120m 0s").unwrap().to_string(), "1d 90s 2h 0s");
    }

    #[test]
    fn bad_levels_say_why() {
        assert!(DelayLevels::parse("1s 5x").unwrap_err().contains("5x"));
        assert!(DelayLevels::parse("").is_err());
        assert_eq!(DelayLevels::parse("2d").unwrap().delay_ms(1), 172_800_000);
    }

    #[test]
    fn nothing_is_due_early() {
        let levels = DelayLevels::default();
        let due_at = levels.due_time(2, 10_000);
        assert_eq!(due_at, 15_000);
        assert_eq!(due(&levels, 2, due_at, 14_999), Due::At(15_000));
        assert_eq!(due(&levels, 2, due_at, 15_000), Due::Now);
        // A due time beyond a whole delay from now cannot be right: deliver rather than hold.
        assert_eq!(due(&levels, 2, 1_000_000, 15_000), Due::Now);
    }

    #[test]
    fn redirect_then_restore_gives_the_original_back() {
        let mut props = Vec::new();
        put_property(&mut props, "KEYS", "k1");
        put_property(&mut props, "DELAY", "3");
        let stored = redirect(&props, "Orders", 5, 3);
        assert_eq!(property(&stored, b"REAL_TOPIC"), Some(&b"Orders"[..]));
        assert_eq!(property(&stored, b"DELAY"), Some(&b"3"[..]));
        let (topic, queue, restored) = restore(&stored).unwrap();
        assert_eq!((topic.as_str(), queue), ("Orders", 5));
        assert_eq!(property(&restored, b"KEYS"), Some(&b"k1"[..]));
        assert_eq!(property(&restored, b"DELAY"), None);
        assert_eq!(property(&restored, b"REAL_TOPIC"), Some(&b"Orders"[..]));
        assert!(restore(&props).is_none());
    }

    #[test]
    fn cursors_never_go_back() {
        let mut offsets = DelayOffsets::default();
        assert!(offsets.advance(2, 5));
        assert!(!offsets.advance(2, 3));
        assert_eq!(offsets.get(2), 5);
        assert_eq!(offsets.get(1), 0);
    }
}
