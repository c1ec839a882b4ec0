//! Sorting an hour's records by `eventId` in bounded memory: records gather in a buffer;
//! a full buffer is sorted and written to the spool folder as a *run*; the runs are then
//! merged. An hour that fits in the buffer never touches the disk.
//!
//! Blocking: every method does file I/O and is called on a blocking thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Bytes of records held before a run is written: with the merge's read buffers, the
/// Parquet writer's row group and the name sets, a million-record hour stays well inside
/// 256 MiB.
pub const RUN_BYTES: usize = 48 << 20;
/// Read buffer per run during the merge: a 3 GB hour makes ~64 runs, 4 MiB of buffers.
const MERGE_BUFFER: usize = 64 << 10;

/// One record to sort: its key (`eventId`) and its bytes.
pub struct Entry {
    pub key: String,
    pub line: Vec<u8>,
}

/// Collects entries, spilling sorted runs into `dir` (which the caller removes).
pub struct Sorter {
    dir: std::path::PathBuf,
    buffer: Vec<Entry>,
    buffered: usize,
    runs: Vec<std::path::PathBuf>,
    limit: usize,
}

impl Sorter {
    pub fn new(dir: &Path) -> Sorter {
        Sorter::with_limit(dir, RUN_BYTES)
    }

    pub fn with_limit(dir: &Path, limit: usize) -> Sorter {
        Sorter {
            dir: dir.to_path_buf(),
            buffer: Vec::new(),
            buffered: 0,
            runs: Vec::new(),
            limit,
        }
    }

    /// Whether the buffer is full and [`Sorter::spill`] should run before more is pushed.
    pub fn is_full(&self) -> bool {
        self.buffered >= self.limit
    }

    pub fn push(&mut self, entry: Entry) {
        // Capacities, not lengths: what the buffer really holds.
        self.buffered +=
            entry.key.capacity() + entry.line.capacity() + std::mem::size_of::<Entry>();
        self.buffer.push(entry);
    }

    /// Takes the buffer out as the next run to write, so that the writing can happen on
    /// a blocking thread while the sorter stays where it is.
    pub fn take_run(&mut self) -> Run {
        self.buffered = 0;
        Run {
            entries: std::mem::take(&mut self.buffer),
            path: self.dir.join(format!("run-{}", self.runs.len() + 1)),
        }
    }

    /// Records a run written by [`Run::write`].
    pub fn add_run(&mut self, path: std::path::PathBuf) {
        self.runs.push(path);
    }

    /// Writes the buffer as a sorted run, here (blocking).
    pub fn spill(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let path = self.take_run().write()?;
        self.add_run(path);
        Ok(())
    }

    /// Hands every entry to `each` in key order.
    pub fn drain(mut self, mut each: impl FnMut(Entry) -> io::Result<()>) -> io::Result<()> {
        if self.runs.is_empty() {
            self.buffer.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            return self.buffer.into_iter().try_for_each(each);
        }
        self.spill()?;
        let mut readers = self
            .runs
            .iter()
            .map(|path| Ok(BufReader::with_capacity(MERGE_BUFFER, File::open(path)?)))
            .collect::<io::Result<Vec<_>>>()?;
        let mut heads = BinaryHeap::new();
        for (index, reader) in readers.iter_mut().enumerate() {
            if let Some(entry) = read_entry(reader)? {
                heads.push(Reverse(Head { entry, index }));
            }
        }
        while let Some(Reverse(Head { entry, index })) = heads.pop() {
            each(entry)?;
            if let Some(next) = read_entry(&mut readers[index])? {
                heads.push(Reverse(Head { entry: next, index }));
            }
        }
        Ok(())
    }
}

/// A full buffer on its way to disk.
pub struct Run {
    entries: Vec<Entry>,
    path: std::path::PathBuf,
}

impl Run {
    /// Sorts the entries and writes them (blocking); returns the run's file.
    pub fn write(mut self) -> io::Result<std::path::PathBuf> {
        self.entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let mut out = BufWriter::with_capacity(MERGE_BUFFER, File::create(&self.path)?);
        for entry in &self.entries {
            write_chunk(&mut out, entry.key.as_bytes())?;
            write_chunk(&mut out, &entry.line)?;
        }
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(self.path)
    }
}

/// A run's next entry in the merge, ordered by key (then run, for a total order).
struct Head {
    entry: Entry,
    index: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Head) -> std::cmp::Ordering {
        (self.entry.key.as_str(), self.index).cmp(&(other.entry.key.as_str(), other.index))
    }
}

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let length = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a record over 4 GiB"))?;
    out.write_all(&length.to_le_bytes())?;
    out.write_all(bytes)
}

fn read_chunk(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let mut bytes = vec![0; u32::from_le_bytes(length) as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

fn read_entry(input: &mut impl Read) -> io::Result<Option<Entry>> {
    let Some(key) = read_chunk(input)? else {
        return Ok(None);
    };
    let key = String::from_utf8(key)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a run's key is not UTF-8"))?;
    let line = read_chunk(input)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "a run ends mid-entry"))?;
    Ok(Some(Entry { key, line }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted_keys(keys: &[String], limit: usize) -> (Vec<String>, usize) {
        let dir = tempfile::tempdir().expect("dir");
        let mut sorter = Sorter::with_limit(dir.path(), limit);
        for key in keys {
            sorter.push(Entry {
                key: key.clone(),
                line: format!("{{\"eventId\":\"{key}\"}}\n").into_bytes(),
            });
            if sorter.is_full() {
                sorter.spill().expect("spill");
            }
        }
        let runs = sorter.runs.len();
        let mut out = Vec::new();
        sorter
            .drain(|entry| {
                assert_eq!(
                    entry.line,
                    format!("{{\"eventId\":\"{}\"}}\n", entry.key).into_bytes()
                );
                out.push(entry.key);
                Ok(())
            })
            .expect("drain");
        (out, runs)
    }

    proptest! {
        #[test]
        fn merges_runs_into_one_order(keys in proptest::collection::vec("[0-9A-F]{0,12}", 0..300), limit in 1usize..4000) {
            let (out, _) = sorted_keys(&keys, limit);
            let mut expected = keys.clone();
            expected.sort();
            prop_assert_eq!(out, expected);
        }
    }

    #[test]
    fn spills_when_the_buffer_is_full_and_not_otherwise() {
        let keys: Vec<String> = (0..1000).rev().map(|n| format!("{n:08X}")).collect();
        let (out, runs) = sorted_keys(&keys, 10_000);
        assert!(runs > 5, "{runs} runs");
        assert!(out.windows(2).all(|pair| pair[0] < pair[1]));
        let (_, runs) = sorted_keys(&keys, usize::MAX);
        assert_eq!(runs, 0);
    }
}
