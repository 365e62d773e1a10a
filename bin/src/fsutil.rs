//! Small file helpers of the services' shells.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use petrel_net::codec::json::from_json;
use petrel_storage::disk::{self, Disk};
use serde::de::DeserializeOwned;

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a mix:
/// write a temporary file, fsync it, rename it over, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = Path::new(&temp);
    let mut file = File::create(temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, path)?;
    File::open(dir)?.sync_all()
}

/// Replaces `path` on `disk` with `bytes`, creating its directory first: a crash leaves the
/// old content or the new one, and the old one stays as `path.bak`
/// (`petrel_storage::disk::write_atomically`).
pub fn save(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        disk.create_dir_all(dir)?;
    }
    disk::write_atomically(disk, path, bytes)
}

/// Reads a JSON file written by [`save`]: `T::default()` when neither it nor its `.bak` exists;
/// its `.bak` when it is missing, empty or does not parse; an error a person can act on when
/// neither parses, so that a service refuses to start rather than serve with forgotten state.
/// At most `bytes_max` bytes are read, checked before anything is allocated.
pub fn load_json<T: DeserializeOwned + Default>(
    disk: &dyn Disk,
    path: &Path,
    bytes_max: u64,
) -> Result<T, String> {
    let shown = path.display();
    let read = disk::read_with_backup(disk, path, bytes_max)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let Some((bytes, from_backup)) = read else { return Ok(T::default()) };
    match from_json(&bytes) {
        Ok(value) => Ok(value),
        Err(e) if from_backup => Err(format!("{shown}.bak is not valid JSON: {e}")),
        Err(e) => {
            tracing::warn!(path = %shown, error = %e, "file unreadable, trying its .bak");
            let backup = disk::read_backup(disk, path, bytes_max)
                .map_err(|e| format!("cannot read {shown}.bak: {e}"))?
                .ok_or_else(|| format!("{shown} is not valid JSON ({e}) and has no .bak"))?;
            from_json(&backup).map_err(|e2| {
                format!(
                    "neither {shown} ({e}) nor its .bak ({e2}) is valid JSON; fix or remove them"
                )
            })
        }
    }
}
