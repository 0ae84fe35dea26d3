//! Large checkpoint files written around the page cache (`O_DIRECT`).
//!
//! A checkpoint's files are written once and not read again unless a job is
//! restored. Written through the page cache, every byte is copied by the
//! kernel into a page of its own, marked dirty and written back later by
//! kernel threads, all on the cores the job runs on. On the 2-core VM of the
//! benchmarks, writing 2 GiB with `dd` in 1 MiB blocks and syncing cost
//! 4.1–4.6 s of CPU (all cores, writeback included) through the page cache
//! and 0.65–0.8 s with `O_DIRECT`, where the device reads the process's
//! buffer. A job whose state grows by a hundred MB a second (a regular join
//! keeps every row it receives) loses a tenth of two cores to the former.
//!
//! [`DirectFile`] gathers what is written into a block-aligned buffer. A
//! file that fits in the buffer is written through the page cache, in one
//! write at [`finish`](DirectFile::finish): small files (manifests, most
//! segments) would otherwise wait for the device. Once the buffer fills, the
//! file switches to `O_DIRECT` (its offset is still 0) and every full buffer
//! is written around the cache; `finish` writes the last part padded to a
//! whole block, then truncates the file to the bytes written. Where the file
//! system refuses `O_DIRECT` (tmpfs and others answer `EINVAL`, when it is
//! set or at the first write), the file goes on through the page cache.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// The alignment `O_DIRECT` asks of buffer addresses, file offsets and
/// lengths: a logical block (512 bytes on most devices; 4096 covers all).
const BLOCK: usize = 4096;
/// Bytes gathered per write (a multiple of [`BLOCK`]); smaller files go
/// through the page cache.
const BUFFER: usize = 1 << 20;

/// A file being written, around the page cache once it outgrows one buffer
/// and where the file system allows it.
///
/// Lifecycle: [`create`](Self::create) truncates or creates the file;
/// `write` gathers bytes and writes every full buffer;
/// [`finish`](Self::finish) writes the rest and gives the file's length.
/// `flush` writes nothing (a partial block cannot be written with
/// `O_DIRECT`): only `finish` makes the file complete, and a `DirectFile`
/// dropped without it leaves a file whose content is undefined (callers
/// write to a temporary name and rename it once finished).
///
/// Invariant: while `direct`, every write starts at a multiple of
/// [`BLOCK`] of the file and of memory, and is a whole number of blocks.
pub(crate) struct DirectFile {
    file: File,
    /// `BUFFER + BLOCK` bytes, of which `BUFFER` from `start` are aligned.
    storage: Vec<u8>,
    start: usize,
    /// Bytes of the buffer gathered.
    filled: usize,
    /// Bytes written to the file.
    written: u64,
    /// Whether the file is written with `O_DIRECT`.
    direct: bool,
}

impl DirectFile {
    /// Creates (or truncates) the file at `path`.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        let storage = vec![0u8; BUFFER + BLOCK];
        let start = storage.as_ptr().align_offset(BLOCK);
        Ok(DirectFile {
            file,
            storage,
            start,
            filled: 0,
            written: 0,
            direct: false,
        })
    }

    /// Writes what is gathered and truncates the file to the bytes written,
    /// which it returns.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        let len = self.written + self.filled as u64;
        if self.filled > 0 {
            let padded = if self.direct {
                self.filled.next_multiple_of(BLOCK)
            } else {
                self.filled
            };
            self.storage[self.start + self.filled..self.start + padded].fill(0);
            self.write_buffer(padded)?;
            if padded != self.filled {
                self.file.set_len(len)?;
            }
        }
        Ok(len)
    }

    /// Writes the first `len` bytes of the buffer and empties it.
    fn write_buffer(&mut self, len: usize) -> io::Result<()> {
        let mut data = &self.storage[self.start..self.start + len];
        while !data.is_empty() {
            match self.file.write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && refuses_direct(&e) => {
                    set_direct(&self.file, false)?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        self.written += len as u64;
        self.filled = 0;
        Ok(())
    }
}

impl Write for DirectFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.filled == BUFFER {
            if self.written == 0 {
                // The file outgrows the buffer: from here on, around the cache.
                self.direct = match set_direct(&self.file, true) {
                    Ok(()) => true,
                    Err(e) if refuses_direct(&e) => false,
                    Err(e) => return Err(e),
                };
            }
            self.write_buffer(BUFFER)?;
        }
        let n = buf.len().min(BUFFER - self.filled);
        let at = self.start + self.filled;
        self.storage[at..at + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        Ok(n)
    }

    /// Writes nothing: see the type's lifecycle.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether `e` is a file system's refusal of `O_DIRECT`.
fn refuses_direct(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput || e.kind() == io::ErrorKind::Unsupported
}

/// Sets or clears `O_DIRECT` on an open file (Linux allows either with
/// `F_SETFL`; setting it fails with `EINVAL` where the file system does not
/// support it).
#[cfg(target_os = "linux")]
fn set_direct(file: &File, direct: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns; no pointers are passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if direct {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere (macOS has `F_NOCACHE` instead), files go through the cache.
#[cfg(not(target_os = "linux"))]
fn set_direct(_: &File, direct: bool) -> io::Result<()> {
    if direct {
        Err(io::ErrorKind::Unsupported.into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` bytes of a pattern that shows misplaced blocks.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// Writes `data` in pieces of `piece` bytes, with `O_DIRECT` cleared
    /// before piece `stop_direct_at` as a file system refusing it would;
    /// returns whether the file went direct, and its bytes.
    fn write_in_pieces(data: &[u8], piece: usize, stop_direct_at: Option<usize>) -> (bool, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = DirectFile::create(&path).unwrap();
        let mut went_direct = false;
        for (i, part) in data.chunks(piece).enumerate() {
            if stop_direct_at == Some(i) && f.direct {
                set_direct(&f.file, false).unwrap();
                f.direct = false;
            }
            f.write_all(part).unwrap();
            went_direct |= f.direct;
        }
        assert_eq!(f.finish().unwrap(), data.len() as u64);
        (went_direct, std::fs::read(&path).unwrap())
    }

    /// Whether this machine's temporary directory takes `O_DIRECT`.
    fn temporary_directory_takes_direct() -> bool {
        let dir = tempfile::tempdir().unwrap();
        set_direct(&File::create(dir.path().join("probe")).unwrap(), true).is_ok()
    }

    #[test]
    fn files_hold_exactly_what_was_written() {
        let direct = temporary_directory_takes_direct();
        for len in [0, 1, BLOCK + 1, BUFFER, BUFFER + 1, BUFFER + 7, 3 * BUFFER + 5000] {
            let data = pattern(len);
            for piece in [1000, BLOCK, 3 * BUFFER] {
                if len > 100_000 && piece == 1000 {
                    continue;
                }
                let (went_direct, written) = write_in_pieces(&data, piece, None);
                assert!(written == data, "len {len}, piece {piece}");
                assert_eq!(went_direct, direct && len > BUFFER, "len {len}, piece {piece}");
            }
        }
    }

    #[test]
    fn a_file_goes_on_through_the_page_cache_where_direct_stops() {
        let data = pattern(3 * BUFFER + 3000);
        let (_, written) = write_in_pieces(&data, 100_000, Some(25));
        assert!(written == data);
    }
}
