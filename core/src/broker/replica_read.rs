//! Which broker of a group a consumer should pull from next (RocketMQ's `slaveReadEnable`,
//! `accessMessageInMemoryMaxRatio` and the pull answer's `suggestWhichBrokerId`).
//!
//! A master serves every pull. A slave serves pulls only with `slaveReadEnable=true`; without
//! it RocketMQ 5 rejects them before reading (SYSTEM_BUSY), and so does Petrel. Each answer
//! suggests the broker id of the consumer's next pull: with slave reads on, a consumer whose
//! read was further behind the end of the commit log than `accessMessageInMemoryMaxRatio`
//! percent of the machine's memory (its records are likely off the page cache) is sent to the
//! group's `whichBrokerWhenConsumeSlowly` (1), any other to the group's `brokerId` (0); with
//! them off, always to the master (0). RocketMQ 5's further rule, a slave sending a consumer
//! back to a live master, acts only with `enableSlaveActingMaster`, which Petrel does not have.
//!
//! A slave also leaves a consumer's out-of-range offset where it was rather than correct it
//! (`offsetCheckInSlave`), and does not store the offsets pulls carry.
//!
//! Pure: the broker's settings, the group's and how far behind the read was in; a decision out.

use crate::broker::subscriptions::SubscriptionGroupConfig;
use crate::broker::Refusal;
use crate::codes::response;

/// `MixAll.MASTER_ID`.
pub const MASTER_ID: i64 = 0;

/// `accessMessageInMemoryMaxRatio`'s default: 40 % of memory.
pub const IN_MEMORY_RATIO_DEFAULT: u8 = 40;

/// A subscription group's say in where its consumers read: `brokerId` while they keep up,
/// `whichBrokerWhenConsumeSlowly` when they fall behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPreference {
    pub broker_id: i64,
    pub when_slow: i64,
}

impl From<&SubscriptionGroupConfig> for GroupPreference {
    fn from(group: &SubscriptionGroupConfig) -> Self {
        GroupPreference {
            broker_id: group.broker_id,
            when_slow: group.which_broker_when_consume_slowly,
        }
    }
}

/// What a broker knows of itself that decides how it serves reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPolicy {
    /// This broker is a slave.
    pub slave: bool,
    /// `slaveReadEnable`.
    pub slave_read_enable: bool,
    /// `accessMessageInMemoryMaxRatio`: percent of `memory_bytes`.
    pub in_memory_ratio: u8,
    /// The machine's physical memory.
    pub memory_bytes: u64,
    /// `offsetCheckInSlave`: a slave corrects out-of-range offsets as a master does.
    pub offset_check_in_slave: bool,
    /// `litePullMessageEnable`: LITE_PULL_MESSAGE is served.
    pub lite_pull_enable: bool,
}

impl ReadPolicy {
    /// A pull this broker refuses before reading: a slave's, with slave reads off.
    pub fn refuse_pull(&self) -> Option<Refusal> {
        (self.slave && !self.slave_read_enable).then(|| {
            Refusal::new(
                response::SYSTEM_BUSY,
                "[REJECTREQUEST] this broker is a SLAVE with slaveReadEnable=false, so it \
                 serves no pulls: pull from the group's master, or set slaveReadEnable=true \
                 in this slave's broker.conf",
            )
        })
    }

    /// Whether a read `behind_bytes` from the end of the commit log is one RocketMQ would
    /// move to a slave: further behind than the in-memory share of the machine's memory.
    pub fn lagging(&self, behind_bytes: u64) -> bool {
        let window = u128::from(self.memory_bytes) * u128::from(self.in_memory_ratio) / 100;
        u128::from(behind_bytes) > window
    }

    /// The broker id a pull's answer suggests for the consumer's next pull.
    pub fn suggest(&self, group: GroupPreference, behind_bytes: u64) -> i64 {
        if !self.slave_read_enable {
            MASTER_ID
        } else if self.lagging(behind_bytes) {
            group.when_slow
        } else {
            group.broker_id
        }
    }

    /// Where a read that found the requested offset out of the queue's range (too small,
    /// past the end, an empty or missing queue) tells the consumer
    /// to read next: the store's corrected offset on a master, the requested one on a slave
    /// (RocketMQ's `nextOffsetCorrection` with `offsetCheckInSlave` false). A slave that is
    /// behind or has not copied a queue yet must not move its consumers' offsets.
    pub fn next_offset(&self, requested: u64, corrected: u64) -> u64 {
        if self.slave && !self.offset_check_in_slave {
            requested
        } else {
            corrected
        }
    }

    /// Whether a pull may store the consumer's committed offset it carries: RocketMQ's
    /// masters do, its slaves do not (they copy the master's offsets instead).
    pub fn stores_pull_offsets(&self) -> bool {
        !self.slave
    }

    /// Its invariants: a percentage is at most 100.
    pub fn check_invariants(&self) {
        assert!(self.in_memory_ratio <= 100, "accessMessageInMemoryMaxRatio is a percentage");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn policy(slave: bool, slave_read_enable: bool) -> ReadPolicy {
        let policy = ReadPolicy {
            slave,
            slave_read_enable,
            in_memory_ratio: IN_MEMORY_RATIO_DEFAULT,
            memory_bytes: 10 * GIB,
            offset_check_in_slave: false,
            lite_pull_enable: true,
        };
        policy.check_invariants();
        policy
    }

    fn group(broker_id: i64, slowly: i64) -> GroupPreference {
        let config = SubscriptionGroupConfig {
            broker_id,
            which_broker_when_consume_slowly: slowly,
            ..SubscriptionGroupConfig::named("G")
        };
        GroupPreference::from(&config)
    }

    #[test]
    fn a_slave_serves_pulls_only_with_slave_reads_on() {
        let refused = policy(true, false).refuse_pull().expect("refused");
        assert_eq!(refused.code, response::SYSTEM_BUSY);
        assert!(refused.remark.contains("slaveReadEnable=true"));
        assert_eq!(policy(true, true).refuse_pull(), None);
        assert_eq!(policy(false, false).refuse_pull(), None);
        assert_eq!(policy(false, true).refuse_pull(), None);
    }

    #[test]
    fn a_lagging_reader_is_one_past_the_in_memory_window() {
        // 40 % of 10 GiB is 4 GiB: exactly that far is still in memory.
        let p = policy(false, true);
        assert!(!p.lagging(4 * GIB));
        assert!(p.lagging(4 * GIB + 1));
        assert!(!p.lagging(0));
        let none = ReadPolicy { in_memory_ratio: 0, ..p };
        assert!(none.lagging(1), "with a 0 % window every read that is behind lags");
        let huge = ReadPolicy { memory_bytes: u64::MAX, in_memory_ratio: 100, ..p };
        assert!(!huge.lagging(u64::MAX), "the window's arithmetic does not overflow");
    }

    #[test]
    fn suggestions_follow_rocketmqs_table() {
        let g = group(0, 1);
        let (near, far) = (GIB, 5 * GIB);
        // Slave reads off: always the master, on a master and a slave alike.
        for slave in [false, true] {
            assert_eq!(policy(slave, false).suggest(g, near), MASTER_ID);
            assert_eq!(policy(slave, false).suggest(g, far), MASTER_ID);
        }
        // On: the group's brokerId when keeping up, whichBrokerWhenConsumeSlowly when not.
        for slave in [false, true] {
            assert_eq!(policy(slave, true).suggest(g, near), 0);
            assert_eq!(policy(slave, true).suggest(g, far), 1);
        }
        let custom = group(2, 3);
        assert_eq!(policy(false, true).suggest(custom, near), 2);
        assert_eq!(policy(false, true).suggest(custom, far), 3);
    }

    #[test]
    fn a_slave_leaves_out_of_range_offsets_alone_unless_told() {
        assert_eq!(policy(false, true).next_offset(50, 20), 20, "a master corrects");
        assert_eq!(policy(true, true).next_offset(50, 20), 50, "a slave does not");
        let checking = ReadPolicy { offset_check_in_slave: true, ..policy(true, true) };
        assert_eq!(checking.next_offset(50, 20), 20, "offsetCheckInSlave: it does");
    }

    #[test]
    fn only_masters_store_the_offsets_pulls_carry() {
        assert!(policy(false, false).stores_pull_offsets());
        assert!(!policy(true, true).stores_pull_offsets());
    }
}
