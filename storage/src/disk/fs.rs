//! `FsDisk`: the real file system.
//!
//! Writes are `pwrite`s into preallocated files; reads come from one read-only memory map per
//! file, handed out as `Bytes` that keep the mapping alive, so a pull response points straight
//! into the page cache. On Linux a `pwrite` and a shared mapping of the same file see the same
//! page cache, so a read through the map sees every completed write.

#![allow(unsafe_code)] // Mapping a file is unsafe in memmap2; the one call below says why it holds.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::Mmap;
use rustix::fs::FallocateFlags;

use super::{check_range, Disk, DiskFile, DiskLock, Space};

/// The host file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsDisk;

struct FsFile {
    file: File,
    len: u64,
    /// The whole file, mapped read-only; empty for an empty file, which cannot be mapped.
    map: Bytes,
}

impl FsFile {
    fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let map = if len == 0 {
            Bytes::new()
        } else {
            // SAFETY: the mapping is read-only and the store never shrinks a mapped file (tails
            // are zeroed by punching holes, which keeps the length); files are removed only after
            // the store drops its handle, and removal of a mapped file keeps the pages valid.
            // Only another process truncating the file under a running store could fault a read.
            let map = unsafe { Mmap::map(&file)? };
            Bytes::from_owner(map)
        };
        Ok(FsFile { file, len, map })
    }
}

impl DiskFile for FsFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range("read", offset, buf.len(), self.len)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_range("write", offset, data.len(), self.len)?;
        self.file.write_all_at(data, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn slice(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        check_range("slice", offset, len, self.len)?;
        let start = offset as usize;
        Ok(self.map.slice(start..start + len))
    }

    fn zero_from(&self, offset: u64) -> io::Result<()> {
        if offset >= self.len {
            return Ok(());
        }
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, flags, offset, self.len - offset) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP) => self.write_zeros(offset),
            Err(error) => Err(error.into()),
        }
    }
}

impl FsFile {
    /// For file systems that cannot punch holes: write the zeros.
    fn write_zeros(&self, mut offset: u64) -> io::Result<()> {
        let zeros = vec![0u8; 1 << 20];
        while offset < self.len {
            let n = (self.len - offset).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }
}

impl Disk for FsDisk {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(FsFile::new(file)?))
    }

    fn create(&self, path: &Path, len: u64) -> io::Result<Arc<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        file.set_len(len)?;
        Ok(Arc::new(FsFile::new(file)?))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut names = Vec::new();
        for entry in entries {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    /// A POSIX record lock (`fcntl(F_SETLK)`), the kind Java's `FileChannel.tryLock` takes, so a
    /// Petrel and a RocketMQ broker exclude each other on one store directory.
    fn lock(&self, path: &Path) -> io::Result<DiskLock> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        match rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DiskLock::new(file)),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::ACCESS) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", path.display()),
            )),
            Err(error) => Err(error.into()),
        }
    }

    fn space(&self, path: &Path) -> io::Result<Space> {
        let stat = rustix::fs::statvfs(path)?;
        Ok(Space {
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        })
    }
}
