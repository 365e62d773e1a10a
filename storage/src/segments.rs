//! A directory of fixed-size files that together hold one long byte sequence: the commit log,
//! or one consume queue (RocketMQ's `MappedFileQueue`). Each file is named by the 20-digit
//! offset of its first byte. This type only finds, creates and removes files; what is written
//! in them is the caller's business.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::{Disk, DiskFile};
use crate::error::{IoContext, StoreError};

/// One file of the sequence.
#[derive(Clone)]
pub struct Segment {
    /// Offset of the file's first byte in the sequence.
    pub base: u64,
    pub file: Arc<dyn DiskFile>,
}

/// The files of one sequence, in offset order, without gaps.
pub struct Segments {
    dir: PathBuf,
    file_bytes: u64,
    files: Vec<Segment>,
}

/// A file name: the 20-digit zero-padded offset.
pub fn file_name(base: u64) -> String {
    format!("{base:020}")
}

impl Segments {
    /// Opens the files in `dir`, checking that each has the configured size, starts at a
    /// multiple of it, and follows the previous one. Names that are not 20 digits are ignored.
    pub fn load(disk: &dyn Disk, dir: &Path, file_bytes: u64) -> Result<Segments, StoreError> {
        let names = disk.list(dir).context(|| format!("cannot list {}", dir.display()))?;
        let mut files: Vec<Segment> = Vec::new();
        let names: Vec<(u64, String)> =
            names.into_iter().filter_map(|n| Some((parse_name(&n)?, n))).collect();
        for (index, (base, name)) in names.iter().enumerate() {
            let base = *base;
            let path = dir.join(name);
            let file = disk.open(&path).context(|| format!("cannot open {}", path.display()))?;
            let last = index + 1 == names.len();
            if last && file.len() < file_bytes && base.is_multiple_of(file_bytes) {
                // Created but not yet extended when the process died: nothing in it was ever
                // acknowledged, because a new file is synced at full size before its first write.
                tracing::warn!(file = %path.display(), "removing a file whose creation was interrupted");
                drop(file);
                disk.remove(&path).context(|| format!("cannot remove {}", path.display()))?;
                disk.sync_dir(dir).sync_context(|| format!("cannot sync {}", dir.display()))?;
                break;
            }
            if file.len() != file_bytes || !base.is_multiple_of(file_bytes) {
                return Err(StoreError::Layout(format!(
                    "{} is {} bytes at offset {base}; the configured file size is {file_bytes} \
                     (mappedFileSize* must match the one the store was written with)",
                    path.display(),
                    file.len()
                )));
            }
            if let Some(last) = files.last() {
                if last.base + file_bytes != base {
                    return Err(StoreError::Layout(format!(
                        "{}: files between offsets {} and {base} are missing",
                        dir.display(),
                        last.base + file_bytes
                    )));
                }
            }
            files.push(Segment { base, file });
        }
        Ok(Segments { dir: dir.to_path_buf(), file_bytes, files })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }
    pub fn files(&self) -> &[Segment] {
        &self.files
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The offset of the first byte held.
    pub fn min_offset(&self) -> u64 {
        self.files.first().map_or(0, |s| s.base)
    }

    /// The file holding `offset`.
    pub fn find(&self, offset: u64) -> Option<&Segment> {
        let first = self.files.first()?.base;
        let index = offset.checked_sub(first)? / self.file_bytes;
        self.files.get(usize::try_from(index).ok()?)
    }

    /// The file holding `offset`, created (and its directory entry synced) if it is the next
    /// one. Asking for a file beyond the next is a bug.
    pub fn find_or_create(&mut self, disk: &dyn Disk, offset: u64) -> Result<Segment, StoreError> {
        if let Some(segment) = self.find(offset) {
            return Ok(segment.clone());
        }
        let base = offset - offset % self.file_bytes;
        let expected = self.files.last().map(|s| s.base + self.file_bytes);
        assert!(
            expected.is_none_or(|next| next == base),
            "segments of {} skip from {expected:?} to {base}",
            self.dir.display()
        );
        if self.files.is_empty() {
            disk.create_dir_all(&self.dir)
                .context(|| format!("cannot create {}", self.dir.display()))?;
            // The new directory's own entry, and for a queue its topic's, must be durable too,
            // or a crash could lose the whole queue. Syncing an old directory costs little.
            for ancestor in self.dir.ancestors().skip(1).take(2) {
                // A relative root's parent is the empty path: the current directory.
                let ancestor =
                    if ancestor.as_os_str().is_empty() { Path::new(".") } else { ancestor };
                disk.sync_dir(ancestor)
                    .sync_context(|| format!("cannot sync {}", ancestor.display()))?;
            }
        }
        let path = self.dir.join(file_name(base));
        let file = disk
            .create(&path, self.file_bytes)
            .context(|| format!("cannot create {}", path.display()))?;
        file.sync().sync_context(|| format!("cannot sync {}", path.display()))?;
        disk.sync_dir(&self.dir).sync_context(|| format!("cannot sync {}", self.dir.display()))?;
        let segment = Segment { base, file };
        self.files.push(segment.clone());
        Ok(segment)
    }

    /// Removes every file that starts at or after `offset`, then syncs the directory.
    pub fn remove_from(&mut self, disk: &dyn Disk, offset: u64) -> Result<(), StoreError> {
        let keep = self.files.iter().take_while(|s| s.base < offset).count();
        if keep == self.files.len() {
            return Ok(());
        }
        for segment in self.files.drain(keep..).rev() {
            let path = self.dir.join(file_name(segment.base));
            disk.remove(&path).context(|| format!("cannot remove {}", path.display()))?;
        }
        disk.sync_dir(&self.dir).sync_context(|| format!("cannot sync {}", self.dir.display()))
    }

    /// Removes the first `count` files (expired data), then syncs the directory.
    pub fn remove_first(&mut self, disk: &dyn Disk, count: usize) -> Result<(), StoreError> {
        let count = count.min(self.files.len());
        for segment in self.files.drain(..count) {
            let path = self.dir.join(file_name(segment.base));
            disk.remove(&path).context(|| format!("cannot remove {}", path.display()))?;
        }
        disk.sync_dir(&self.dir).sync_context(|| format!("cannot sync {}", self.dir.display()))
    }
}

fn parse_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}
