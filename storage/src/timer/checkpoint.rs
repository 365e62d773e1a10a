//! The `config/timercheck` page: where the timer service stood when it last persisted its
//! progress (`docs/storage-format.md` §13). RocketMQ's seven i64 sit at bytes 0..56; Petrel
//! adds the commit log's end at 56..68, in bytes RocketMQ leaves zero and never reads, marked
//! so that a page RocketMQ wrote reads as having none (and marked apart in a follower's page).
//!
//! The page is written in place with one write of 68 bytes, inside one sector, so a crash keeps
//! all of it or none (the media model of §9); a missing or short file is replaced whole.

use std::io;
use std::path::Path;

use super::{ensure_dir, io_context, sync_context};
use crate::disk::{read_stable, Disk};

/// RocketMQ maps one OS page for the timer checkpoint.
pub const CHECKPOINT_FILE_BYTES: u64 = 4096;
/// "PTRL": marks Petrel's `commit_log_end` at byte 56.
pub const COMMIT_LOG_END_MARKER: i32 = 0x5054_524C;
/// "PTRF": marks it too, in a page a follower (a slave's timer service) wrote.
pub const FOLLOWER_MARKER: i32 = 0x5054_5246;
/// The bytes `write_checkpoint` writes: RocketMQ's seven fields and Petrel's two.
pub const CHECKPOINT_WRITE_BYTES: usize = 68;
/// The seven i64 RocketMQ 5 reads.
const ROCKETMQ_BYTES: usize = 56;
/// The four i64 of a page written before the data version was added.
const OLDER_BYTES: usize = 32;
const COMMIT_LOG_END_AT: usize = 56;
const MARKER_AT: usize = 64;

const _: () = assert!(MARKER_AT + 4 == CHECKPOINT_WRITE_BYTES);
// One write inside the first 512-byte sector: torn writes keep all of it or none.
const _: () = assert!(CHECKPOINT_WRITE_BYTES <= 512);

/// The timer service's persisted progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerCheckpoint {
    /// `lastReadTimeMs`: the wheel's read position.
    pub last_read_time_ms: i64,
    /// `lastTimerLogFlushPos`: timer-log bytes below it were flushed.
    pub last_flush_pos: i64,
    /// `lastTimerQueueOffset`: the next offset of the timer topic's queue 0 to enqueue.
    pub last_queue_offset: i64,
    /// `masterTimerQueueOffset`: on a slave, the master's.
    pub master_queue_offset: i64,
    /// The `DataVersion`'s three fields; 0 in a page of the older 32-byte layout.
    pub state_version: i64,
    pub timestamp: i64,
    pub counter: i64,
    /// Petrel: the commit log's end (every byte below it flushed) when the page was written.
    /// `None` in a page RocketMQ wrote.
    pub commit_log_end: Option<i64>,
    /// Petrel: a follower wrote the page (marker "PTRF"); only with a `commit_log_end`.
    pub follower: bool,
}

impl TimerCheckpoint {
    /// The 68 bytes `write_checkpoint` puts at the page's start; with no `commit_log_end`,
    /// bytes 56..68 are zero, as RocketMQ leaves them.
    pub fn encode(&self) -> [u8; CHECKPOINT_WRITE_BYTES] {
        let mut out = [0u8; CHECKPOINT_WRITE_BYTES];
        let fields = [
            self.last_read_time_ms,
            self.last_flush_pos,
            self.last_queue_offset,
            self.master_queue_offset,
            self.state_version,
            self.timestamp,
            self.counter,
        ];
        for (i, field) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&field.to_be_bytes());
        }
        if let Some(end) = self.commit_log_end {
            let marker = if self.follower { FOLLOWER_MARKER } else { COMMIT_LOG_END_MARKER };
            out[COMMIT_LOG_END_AT..COMMIT_LOG_END_AT + 8].copy_from_slice(&end.to_be_bytes());
            out[MARKER_AT..MARKER_AT + 4].copy_from_slice(&marker.to_be_bytes());
        }
        out
    }

    /// Reads the start of a page: `None` under 32 bytes. Under 56 bytes (the older layout)
    /// the data version reads as zeros; `commit_log_end` counts only with its marker.
    pub fn decode(bytes: &[u8]) -> Option<TimerCheckpoint> {
        if bytes.len() < OLDER_BYTES {
            return None;
        }
        let i64_at = |at: usize| {
            let field = bytes.get(at..at + 8)?;
            Some(i64::from_be_bytes(field.try_into().ok()?))
        };
        let version_at =
            |at: usize| if bytes.len() >= ROCKETMQ_BYTES { i64_at(at) } else { Some(0) };
        let marker = bytes
            .get(MARKER_AT..MARKER_AT + 4)
            .and_then(|m| Some(i32::from_be_bytes(m.try_into().ok()?)));
        let follower = marker == Some(FOLLOWER_MARKER);
        let marked = follower || marker == Some(COMMIT_LOG_END_MARKER);
        Some(TimerCheckpoint {
            last_read_time_ms: i64_at(0)?,
            last_flush_pos: i64_at(8)?,
            last_queue_offset: i64_at(16)?,
            master_queue_offset: i64_at(24)?,
            state_version: version_at(32)?,
            timestamp: version_at(40)?,
            counter: version_at(48)?,
            commit_log_end: if marked { i64_at(COMMIT_LOG_END_AT) } else { None },
            follower,
        })
    }
}

/// Reads the checkpoint at `path` (RocketMQ's is `storePathRootDir/config/timercheck`, see
/// [`checkpoint_path`](super::checkpoint_path)). `None` when the file does not exist, or is
/// empty: a file whose creation was interrupted before its page was written. A file of 1 to
/// 31 bytes is an error. Only the first 68 bytes are read, whatever the file's length.
pub fn read_checkpoint(disk: &dyn Disk, path: &Path) -> io::Result<Option<TimerCheckpoint>> {
    if !disk.exists(path) {
        return Ok(None);
    }
    let file = disk.open(path).map_err(io_context(|| format!("cannot open {}", path.display())))?;
    if file.is_empty() {
        tracing::warn!(file = %path.display(), "an empty timer checkpoint: starting without one");
        return Ok(None);
    }
    let len = file.len().min(CHECKPOINT_WRITE_BYTES as u64) as usize;
    let mut bytes = [0u8; CHECKPOINT_WRITE_BYTES];
    read_stable(file.as_ref(), 0, &mut bytes[..len])
        .map_err(io_context(|| format!("cannot read {}", path.display())))?;
    let checkpoint = TimerCheckpoint::decode(&bytes[..len]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {len} bytes; a timer checkpoint holds at least {OLDER_BYTES} \
                 (RocketMQ writes {CHECKPOINT_FILE_BYTES})",
                path.display()
            ),
        )
    })?;
    Ok(Some(checkpoint))
}

/// Writes `checkpoint` at the start of the page at `path`, in place, then syncs the file. A
/// missing file, or one shorter than a page, is replaced whole: a new page is written to
/// `timercheck.tmp`, synced, renamed over `path`, and the directory synced (created first if
/// missing), so the file is complete whenever it exists.
pub fn write_checkpoint(
    disk: &dyn Disk,
    path: &Path,
    checkpoint: &TimerCheckpoint,
) -> io::Result<()> {
    let bytes = checkpoint.encode();
    debug_assert_eq!(TimerCheckpoint::decode(&bytes).as_ref(), Some(checkpoint));
    if disk.exists(path) {
        let file =
            disk.open(path).map_err(io_context(|| format!("cannot open {}", path.display())))?;
        if file.len() >= CHECKPOINT_FILE_BYTES {
            file.write_at(0, &bytes)
                .map_err(io_context(|| format!("cannot write {}", path.display())))?;
            return file.sync().map_err(sync_context(|| format!("cannot sync {}", path.display())));
        }
    }
    replace(disk, path, &bytes)
}

/// Puts a new page holding `bytes` at `path` through a temporary file and a rename.
fn replace(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    ensure_dir(disk, dir)?;
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let at = |what: &'static str, path: &Path| {
        let path = path.display().to_string();
        io_context(move || format!("cannot {what} {path}"))
    };
    if disk.exists(&temporary) {
        disk.remove(&temporary).map_err(at("remove", &temporary))?;
    }
    let file = disk.create(&temporary, CHECKPOINT_FILE_BYTES).map_err(at("create", &temporary))?;
    file.write_at(0, bytes).map_err(at("write", &temporary))?;
    let synced = |path: &Path| {
        let path = path.display().to_string();
        sync_context(move || format!("cannot sync {path}"))
    };
    file.sync().map_err(synced(&temporary))?;
    disk.rename(&temporary, path).map_err(at("rename", &temporary))?;
    disk.sync_dir(dir).map_err(synced(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{FsDisk, SimDisk, SimDiskFaults};
    use crate::timer::hex;

    const PATH: &str = "/store/config/timercheck";

    fn vector() -> TimerCheckpoint {
        TimerCheckpoint {
            last_read_time_ms: 1_700_000_000_000,
            last_flush_pos: 104_857_600,
            last_queue_offset: 41,
            master_queue_offset: 0,
            state_version: 0,
            timestamp: 1_700_000_000_123,
            counter: 7,
            commit_log_end: None,
            follower: false,
        }
    }

    #[test]
    fn page_matches_the_format_document() {
        let expected = hex("0000018bcfe56800 0000000006400000 0000000000000029 0000000000000000 \
                            0000000000000000 0000018bcfe5687b 0000000000000007");
        let bytes = vector().encode();
        assert_eq!(bytes[..56].to_vec(), expected);
        assert_eq!(bytes[56..], [0u8; 12], "RocketMQ's zeros without Petrel's field");
        assert_eq!(TimerCheckpoint::decode(&expected), Some(vector()));

        let disk = SimDisk::new(1, 1 << 30, SimDiskFaults::default());
        let path = Path::new(PATH);
        assert_eq!(read_checkpoint(&disk, path).unwrap(), None);
        write_checkpoint(&disk, path, &vector()).unwrap();
        let image = disk.image(path).unwrap();
        assert_eq!(image.len() as u64, CHECKPOINT_FILE_BYTES);
        assert_eq!(image[..56].to_vec(), expected);
        assert!(!disk.exists(Path::new("/store/config/timercheck.tmp")));
        disk.crash();
        assert_eq!(read_checkpoint(&disk, path).unwrap(), Some(vector()), "durable once written");
    }

    #[test]
    fn commit_log_end_counts_only_with_its_marker() {
        let disk = SimDisk::new(1, 1 << 30, SimDiskFaults::default());
        let path = Path::new(PATH);
        let extended = TimerCheckpoint { commit_log_end: Some(1 << 33), ..vector() };
        write_checkpoint(&disk, path, &extended).unwrap();
        let image = disk.image(path).unwrap();
        assert_eq!(image[56..68].to_vec(), hex("0000000200000000 5054524c"));
        assert_eq!(read_checkpoint(&disk, path).unwrap(), Some(extended));
        let mut unmarked = extended.encode();
        unmarked[MARKER_AT + 3] ^= 1;
        assert_eq!(TimerCheckpoint::decode(&unmarked).unwrap().commit_log_end, None);
        let followed = TimerCheckpoint { follower: true, ..extended };
        assert_eq!(followed.encode()[56..68].to_vec(), hex("0000000200000000 50545246"));
        assert_eq!(TimerCheckpoint::decode(&followed.encode()), Some(followed), "PTRF");
        write_checkpoint(&disk, path, &vector()).unwrap();
        assert_eq!(read_checkpoint(&disk, path).unwrap(), Some(vector()), "an update clears it");
    }

    #[test]
    fn short_and_empty_files() {
        let disk = SimDisk::new(1, 1 << 30, SimDiskFaults::default());
        let path = Path::new(PATH);
        disk.create_dir_all(Path::new("/store/config")).unwrap();
        disk.create(path, 0).unwrap();
        assert_eq!(read_checkpoint(&disk, path).unwrap(), None, "creation interrupted");
        disk.remove(path).unwrap();
        disk.create(path, 31).unwrap();
        let error = read_checkpoint(&disk, path).unwrap_err();
        assert!(error.to_string().contains("31 bytes"), "{error}");
        disk.remove(path).unwrap();
        let older = disk.create(path, 40).unwrap();
        older.write_at(0, &vector().encode()[..40]).unwrap();
        let read = read_checkpoint(&disk, path).unwrap().unwrap();
        let four = TimerCheckpoint { timestamp: 0, counter: 0, ..vector() };
        assert_eq!(read, four, "the older layout: no data version");
        write_checkpoint(&disk, path, &vector()).unwrap();
        assert_eq!(disk.image(path).unwrap().len() as u64, CHECKPOINT_FILE_BYTES, "replaced");
        assert_eq!(read_checkpoint(&disk, path).unwrap(), Some(vector()));
    }

    #[test]
    fn works_on_the_real_file_system() {
        let root = tempfile::tempdir().unwrap();
        let path = crate::timer::checkpoint_path(root.path());
        let extended = TimerCheckpoint { commit_log_end: Some(99), ..vector() };
        write_checkpoint(&FsDisk, &path, &extended).unwrap();
        write_checkpoint(&FsDisk, &path, &vector()).unwrap();
        assert_eq!(read_checkpoint(&FsDisk, &path).unwrap(), Some(vector()));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), CHECKPOINT_FILE_BYTES);
    }
}
