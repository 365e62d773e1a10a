//! The process id that client ids, message ids and attempt ids carry, as RocketMQ's do.

/// This process's id. Under the simulator it is the simulated node's id instead: a real pid
/// differs between two runs of one seed, and ids that carry it would order group members
/// (consistent hashing hashes their client ids) and message keys differently in each.
pub fn id() -> u32 {
    #[cfg(not(madsim))]
    {
        std::process::id()
    }
    #[cfg(madsim)]
    {
        tokio::madsim::plugin::node().to_string().parse().unwrap_or(0)
    }
}
