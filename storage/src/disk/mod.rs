//! The one door between the store and its media.
//!
//! Every byte the store reads or writes passes through `Disk` and `DiskFile`, so the same store
//! runs on a real file system (`FsDisk`) and on a simulated disk that loses, tears and corrupts
//! writes (`SimDisk`). The contract each implementation keeps is the media model of
//! `docs/storage-format.md` §9: a write is durable only after `sync` of its file returns; a new
//! file, a rename or a removal is durable only after `sync_dir` of its directory; after a failed
//! `sync` nothing about the file is known, so the store stops.

mod fs;
mod sim;

pub use fs::FsDisk;
pub use sim::{SimDisk, SimDiskFaults};

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

/// A file system: where files are found, created and removed.
pub trait Disk: Send + Sync + 'static {
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>>;
    /// Creates a new file of `len` zero bytes; fails if it exists. The directory entry is
    /// durable only after `sync_dir`.
    fn create(&self, path: &Path, len: u64) -> io::Result<Arc<dyn DiskFile>>;
    /// The names of the entries of `dir`, sorted; empty if `dir` does not exist.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Removes a file (durable after `sync_dir`).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;
    /// Renames `from` over `to` atomically (durable after `sync_dir`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether `path` names a file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// Total and free bytes of the file system holding `path`.
    fn space(&self, path: &Path) -> io::Result<Space>;
    /// Takes an exclusive lock on `path` (created if missing) for as long as the returned guard
    /// lives; fails at once if another holder has it.
    fn lock(&self, path: &Path) -> io::Result<DiskLock>;
}

/// Holds a lock taken by `Disk::lock` until dropped.
pub struct DiskLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl DiskLock {
    pub fn new(guard: impl Send + Sync + 'static) -> DiskLock {
        DiskLock(Box::new(guard))
    }
}

/// One open file of fixed length.
pub trait DiskFile: Send + Sync {
    /// The file's length in bytes.
    fn len(&self) -> u64;
    /// Whether the file has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes `data` at `offset`; writing past the end is an error.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// fdatasync: everything written so far is durable when this returns `Ok`.
    fn sync(&self) -> io::Result<()>;
    /// `len` bytes from `offset`, without copying where the file is mapped.
    fn slice(&self, offset: u64, len: usize) -> io::Result<Bytes>;
    /// Makes `[offset, len())` read as zeros (durable after `sync`).
    fn zero_from(&self, offset: u64) -> io::Result<()>;
}

/// Capacity of a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl Space {
    /// The used share of the disk in percent, as RocketMQ's disk ratios are given.
    pub fn used_percent(&self) -> u64 {
        if self.total_bytes == 0 {
            return 0;
        }
        let used = self.total_bytes.saturating_sub(self.free_bytes);
        (u128::from(used) * 100 / u128::from(self.total_bytes)) as u64
    }
}

fn out_of_range(what: &str, offset: u64, len: u64, file_len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} of {len} bytes at {offset} is past the end of a {file_len}-byte file"),
    )
}

/// Checks that `[offset, offset + len)` lies inside a file of `file_len` bytes.
fn check_range(what: &str, offset: u64, len: usize, file_len: u64) -> io::Result<()> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(out_of_range(what, offset, len, file_len)),
    }
}

/// How many reads of one region may be made before the disk is declared unstable.
pub const STABLE_READS_MAX: usize = 12;

/// How many reads must return the same bytes before a stable read takes them. Two are not
/// enough: with one read in fifty flipping a bit, two reads of a 20-byte unit flip the same bit
/// about once in 400 000 reads, and a simulation makes millions.
pub const AGREEING_READS: usize = 3;

/// Reads with `read` until [`AGREEING_READS`] reads agree by `same`, and answers that value.
pub(crate) fn agreed<T>(
    mut read: impl FnMut() -> io::Result<T>,
    same: impl Fn(&T, &T) -> bool,
    what: impl FnOnce() -> String,
) -> io::Result<T> {
    let mut seen: Vec<(T, usize)> = Vec::new();
    for _ in 0..STABLE_READS_MAX {
        let value = read()?;
        match seen.iter_mut().position(|(other, _)| same(other, &value)) {
            Some(i) if seen[i].1 + 1 >= AGREEING_READS => return Ok(value),
            Some(i) => seen[i].1 += 1,
            None => seen.push((value, 1)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{STABLE_READS_MAX} reads of {} never agreed {AGREEING_READS} times", what()),
    ))
}

/// Fills `buf` from `offset`, reading until [`AGREEING_READS`] reads agree: for bytes without
/// a checksum, whose silent corruption on read would go unnoticed.
pub fn read_stable(file: &dyn DiskFile, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let len = buf.len();
    let read = || {
        let mut bytes = vec![0u8; len];
        file.read_at(offset, &mut bytes).map(|()| bytes)
    };
    let bytes = agreed(read, |a, b| a == b, || format!("{len} bytes at {offset}"))?;
    buf.copy_from_slice(&bytes);
    Ok(())
}

/// Reads `len` bytes at `offset` as [`read_stable`] does, but as a slice: a read error that
/// flips a bit in bytes without a checksum (a consume-queue unit, a record recovery is about to
/// judge) would otherwise be taken for what the disk holds. Two slices of a memory-mapped file
/// are the same pages, which no read can have changed, so on a real disk the check is free.
pub fn slice_stable(file: &dyn DiskFile, offset: u64, len: usize) -> io::Result<Bytes> {
    let first = file.slice(offset, len)?;
    let again = file.slice(offset, len)?;
    if len == 0 || first.as_ptr() == again.as_ptr() {
        return Ok(again);
    }
    let mut reads = [first, again].into_iter();
    let read = || reads.next().map_or_else(|| file.slice(offset, len), Ok);
    agreed(read, |a, b| a == b, || format!("{len} bytes at {offset}"))
}

/// Reads a whole small file (a config file, the checkpoint), or `None` if it does not exist.
/// Files over `bytes_max` are refused before anything is allocated. Config files carry no
/// checksum, so the read is a stable one ([`read_stable`]).
pub fn read_small(disk: &dyn Disk, path: &Path, bytes_max: u64) -> io::Result<Option<Vec<u8>>> {
    if !disk.exists(path) {
        return Ok(None);
    }
    let file = disk.open(path)?;
    if file.len() > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {} bytes; at most {bytes_max} expected", path.display(), file.len()),
        ));
    }
    let mut data = vec![0; file.len() as usize];
    read_stable(file.as_ref(), 0, &mut data)?;
    Ok(Some(data))
}

/// Replaces `path` with `data` so that `path` is complete at every instant and a crash leaves
/// either the old or the new content (`docs/storage-format.md` §8): the old version is copied to
/// `path.bak` (through `path.bak.tmp` and a rename, as RocketMQ keeps one), the new one is written
/// to `path.tmp`, synced and renamed over `path`, then the directory is synced.
pub fn write_atomically(disk: &dyn Disk, path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(old) = read_small(disk, path, u64::MAX)? {
        replace_with(disk, path, &sibling(path, ".bak"), &old)?;
    }
    replace_with(disk, path, path, data)?;
    disk.sync_dir(dir)
}

fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `data` to `target.tmp`, syncs it and renames it over `target`.
fn replace_with(disk: &dyn Disk, path: &Path, target: &Path, data: &[u8]) -> io::Result<()> {
    let temporary = sibling(target, ".tmp");
    if disk.exists(&temporary) {
        disk.remove(&temporary)?;
    }
    let file = disk.create(&temporary, data.len() as u64)?;
    file.write_at(0, data)?;
    file.sync()?;
    debug_assert!(target.parent() == path.parent(), "the backup lives beside the file");
    disk.rename(&temporary, target)
}

/// Reads a file written by `write_atomically`: `path`, or `path.bak` when `path` is missing or
/// empty (a crash of RocketMQ's own writer can leave it so). The flag says the backup was used;
/// a caller that cannot parse `path` should call `read_backup`.
pub fn read_with_backup(
    disk: &dyn Disk,
    path: &Path,
    bytes_max: u64,
) -> io::Result<Option<(Vec<u8>, bool)>> {
    match read_small(disk, path, bytes_max)? {
        Some(data) if !data.is_empty() => Ok(Some((data, false))),
        _ => Ok(read_backup(disk, path, bytes_max)?.map(|data| (data, true))),
    }
}

/// The previous version of a file written by `write_atomically`.
pub fn read_backup(disk: &dyn Disk, path: &Path, bytes_max: u64) -> io::Result<Option<Vec<u8>>> {
    read_small(disk, &sibling(path, ".bak"), bytes_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripted(reads: &[u8]) -> io::Result<u8> {
        let mut reads = reads.iter().copied();
        let read = || reads.next().ok_or_else(|| io::Error::other("script ran out"));
        agreed(read, |a, b| a == b, || "a script".to_owned())
    }

    #[test]
    fn two_alike_misreads_are_not_taken() {
        // 9 is a flipped read of 1 that came twice before the true bytes came three times.
        assert_eq!(scripted(&[9, 9, 1, 1, 1]).unwrap(), 1);
        assert_eq!(scripted(&[1, 9, 1, 9, 1]).unwrap(), 1);
        assert_eq!(scripted(&[1, 1, 1]).unwrap(), 1);
    }

    #[test]
    fn reads_that_never_agree_are_an_error() {
        // Every value comes twice: two alike reads are never enough.
        let reads: Vec<u8> = (0..STABLE_READS_MAX as u8).map(|i| i / 2).collect();
        let error = scripted(&reads).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("never agreed"), "{error}");
    }
}
