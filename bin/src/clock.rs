//! The services' one clock: wall-clock milliseconds, as RocketMQ stamps everything. Under madsim
//! `SystemTime` is the simulator's, so simulated runs stay deterministic.

use petrel_core::Millis;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
