//! A broadcasting consumer's offsets, kept in a file on the consumer's host: in broadcasting
//! every member reads every queue, so the broker's per-group offsets cannot say where each
//! one is (RocketMQ's `LocalFileOffsetStore`, under `~/.rocketmq_offsets`).
//!
//! The file is standard JSON, `{"offsetTable":[{"topic":..,"brokerName":..,"queueId":..,
//! "offset":..}]}`, written to a temporary file, synced and renamed over the old one, so a
//! crash leaves either the old table or the new one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use petrel_core::client::MessageQueue;
use petrel_net::codec::json::{from_json, to_json, JsonStyle};

use crate::ClientError;

/// A larger file is refused rather than read: a table of a million queues is far smaller.
const FILE_MAX: u64 = 64 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    topic: String,
    broker_name: String,
    queue_id: i32,
    offset: i64,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Table {
    offset_table: Vec<Entry>,
}

/// The offsets file of one consumer group on this host.
#[derive(Debug)]
pub struct LocalOffsets {
    path: PathBuf,
    table: Mutex<BTreeMap<MessageQueue, i64>>,
}

impl LocalOffsets {
    /// Reads the file at `path`; a missing file is an empty table.
    pub fn open(path: &Path) -> Result<LocalOffsets, ClientError> {
        let unreadable =
            |e: String| ClientError::Config(format!("offsets file {}: {e}", path.display()));
        let table = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(unreadable(e.to_string())),
            Ok(meta) if meta.len() > FILE_MAX => {
                return Err(unreadable(format!("{} bytes, more than {FILE_MAX}", meta.len())))
            }
            Ok(_) => {
                let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
                let table: Table = from_json(&bytes).map_err(|e| unreadable(e.to_string()))?;
                table
                    .offset_table
                    .into_iter()
                    .map(|e| (MessageQueue::new(&e.topic, &e.broker_name, e.queue_id), e.offset))
                    .collect()
            }
        };
        Ok(LocalOffsets { path: path.to_owned(), table: Mutex::new(table) })
    }

    /// The offset last saved for `queue`.
    pub fn get(&self, queue: &MessageQueue) -> Option<i64> {
        self.lock().get(queue).copied()
    }

    /// Records these offsets and writes the whole table to the file.
    pub fn save(
        &self,
        offsets: impl IntoIterator<Item = (MessageQueue, i64)>,
    ) -> std::io::Result<()> {
        let table = {
            let mut table = self.lock();
            table.extend(offsets);
            Table {
                offset_table: table
                    .iter()
                    .map(|(q, offset)| Entry {
                        topic: q.topic.clone(),
                        broker_name: q.broker_name.clone(),
                        queue_id: q.queue_id,
                        offset: *offset,
                    })
                    .collect(),
            }
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&to_json(&table, JsonStyle::Standard))?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<MessageQueue, i64>> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn offsets_survive_a_reopen_and_bad_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("petrel-local-offsets-{}", std::process::id()));
        let path = dir.join("group").join("offsets.json");
        let offsets = LocalOffsets::open(&path).unwrap();
        let queue = MessageQueue::new("T", "broker-a", 3);
        assert_eq!(offsets.get(&queue), None);
        offsets.save([(queue.clone(), 42)]).unwrap();
        offsets.save([(MessageQueue::new("T", "broker-a", 4), 7)]).unwrap();
        let reopened = LocalOffsets::open(&path).unwrap();
        assert_eq!(reopened.get(&queue), Some(42));
        assert_eq!(reopened.get(&MessageQueue::new("T", "broker-a", 4)), Some(7));
        std::fs::write(&path, b"{\"offsetTable\":[{\"topic\":1}]}").unwrap();
        let refused = LocalOffsets::open(&path).unwrap_err().to_string();
        assert!(refused.contains("offsets.json"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
