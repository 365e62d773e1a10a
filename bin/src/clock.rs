//! The services' one clock: wall-clock milliseconds, as RocketMQ stamps everything. Under madsim
//! `SystemTime` is the simulator's, so simulated runs stay deterministic.

use petrel_core::Millis;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A sleep until `deadline` (a core's `poll_timeout`; none: a minute), at least 1 ms and at
/// most a minute, so that a service loop wakes its core when asked.
pub fn sleep_until(deadline: Option<Millis>) -> tokio::time::Sleep {
    let wait = deadline.unwrap_or(u64::MAX).saturating_sub(now_millis());
    tokio::time::sleep(std::time::Duration::from_millis(wait.clamp(1, 60_000)))
}
