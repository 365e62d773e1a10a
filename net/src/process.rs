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

/// A number telling apart the clients this process starts: a count of them, so that two
/// started in one millisecond differ. Under the simulator it is drawn from the run's seeded
/// generator instead: a count kept by the process would carry over from one run to the next
/// and between runs on other threads, and two runs of a seed would differ.
pub fn instance() -> u32 {
    #[cfg(not(madsim))]
    {
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(madsim)]
    {
        tokio::madsim::rand::random::<u32>()
    }
}
