//! When expired files are deleted and when writes are refused: RocketMQ's
//! `CleanCommitLogService` rules as a pure function of the hour and the disk's fill.

use crate::config::StoreConfig;

/// What one cleanup pass should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupDecision {
    /// Delete commit-log files older than `fileReservedTime`.
    pub delete_expired: bool,
    /// Delete the oldest files even if they are not expired (`diskSpaceCleanForciblyRatio`).
    pub force: bool,
    /// Refuse appends (`diskSpaceWarningLevelRatio`).
    pub refuse_writes: bool,
}

/// Decides a pass at `hour` (0-23) with the disk `used_percent` full; `manual` is an
/// operator's request (mqadmin deleteExpiredCommitLog).
pub fn decide(config: &StoreConfig, hour: u8, used_percent: u64, manual: bool) -> CleanupDecision {
    let force = used_percent >= config.disk_clean_forcibly_ratio;
    let delete_expired = manual
        || config.delete_when.contains(&hour)
        || used_percent >= config.disk_max_used_ratio
        || force;
    CleanupDecision {
        delete_expired,
        force,
        refuse_writes: used_percent >= config.disk_warning_ratio,
    }
}

/// Parses `deleteWhen` ("04", "01;13"): hours 0-23.
pub fn parse_delete_when(text: &str) -> Result<Vec<u8>, String> {
    text.split(';')
        .map(|hour| match hour.trim().parse::<u8>() {
            Ok(hour) if hour < 24 => Ok(hour),
            _ => Err(format!("deleteWhen={text}: expected hours 0-23 separated by ';'")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocketmq_rules() {
        let config = StoreConfig::new("/s");
        let at = |hour, used| decide(&config, hour, used, false);
        assert_eq!(
            at(3, 10),
            CleanupDecision { delete_expired: false, force: false, refuse_writes: false }
        );
        assert!(at(4, 10).delete_expired, "deleteWhen=04");
        assert!(at(3, 75).delete_expired && !at(3, 75).force, "diskMaxUsedSpaceRatio");
        assert!(at(3, 85).force, "diskSpaceCleanForciblyRatio");
        assert!(at(3, 90).refuse_writes && !at(3, 89).refuse_writes, "diskSpaceWarningLevelRatio");
        assert!(decide(&config, 3, 10, true).delete_expired, "manual");
        assert_eq!(parse_delete_when("01;13"), Ok(vec![1, 13]));
        assert!(parse_delete_when("24").is_err());
    }
}
