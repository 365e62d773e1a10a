//! The event log of a run, hashed: every `tracing` event at DEBUG and above that the cluster's
//! code emits, in order, with its target, its level and every field. Two runs of one seed
//! must give the same hash; a difference means something outside the seed (a real clock,
//! the host's randomness, a static left over from an earlier run) steered the run.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The hash of the events seen so far, and their count. A subscriber of its own rather than a
/// `tracing_subscriber` registry: it makes no hash maps (whose keys madsim seeds only if the
/// runtime comes first) and accepts spans opened before it was installed.
#[derive(Clone, Default)]
pub struct EventLog {
    state: Arc<Mutex<(DefaultHasher, u64)>>,
    spans: Arc<AtomicU64>,
}

impl EventLog {
    /// (hash, number of events).
    pub fn digest(&self) -> (u64, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.0.finish(), state.1)
    }

    /// Runs `f` with this log recording every event emitted on this thread.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        tracing::subscriber::with_default(self.clone(), f)
    }
}

struct Fields<'a>(&'a mut DefaultHasher);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        field.name().hash(self.0);
        format!("{value:?}").hash(self.0);
    }
}

impl Subscriber for EventLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::DEBUG
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.spans.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (hasher, count) = &mut *state;
        let metadata = event.metadata();
        metadata.target().hash(hasher);
        metadata.level().as_str().hash(hasher);
        event.record(&mut Fields(hasher));
        *count += 1;
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}
