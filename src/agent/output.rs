//! A command's output log: numbered chunks kept on the sandbox's disk within a
//! byte budget, read by any number of readers that replay and then follow.
//!
//! The log is a few segment files of records `[seq: i64][stream: u8]
//! [len: u32][data]`. When the newest segment passes an eighth of the
//! budget a new one begins; the oldest segment is deleted only when the
//! others still hold the whole budget. So a log keeps at least its budget's
//! newest bytes (records included) and at most an eighth more on disk.
//! Readers that keep a segment open can finish it after deletion.
//!
//! Flow control: a reader that registers as a *follower* holds the writer
//! back while it is more than [`FOLLOW_WINDOW`] chunks behind, so a slow
//! interactive client slows the command instead of losing output.
//!
//! Chunks written but not yet read by every follower also stay in memory
//! (at most the flow-control window of them), so a follower keeping up
//! gets each chunk without reading it back from disk.
//!
//! A log may begin *held*: its chunks kept in memory only, and nothing on
//! disk, not even its directory, until [`OutputLog::write_to_disk`] is called
//! or the held bytes would pass the log's memory bound, which writes every
//! held chunk out and goes on from there as a log on disk. This is how a
//! short command whose caller waits for it leaves no trace on the disk.
//!
//! It is one file, past 500 lines with its tests, because the writer, the
//! segments and the readers share one lock and one numbering: the
//! invariants that no chunk is lost or read twice hold only when they are
//! read together.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, watch};

/// How many segments hold the budget: each new segment begins when the
/// newest passes `budget / SEGMENTS_PER_BUDGET`, which is also how far past
/// the budget the disk use may go.
const SEGMENTS_PER_BUDGET: u64 = 8;

/// How far (in chunks) a follower may fall behind before the writer waits.
pub const FOLLOW_WINDOW: i64 = 32;

const HEADER_BYTES: usize = 8 + 1 + 4;

/// Where a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A terminal.
    Pty,
}

impl Stream {
    fn code(self) -> u8 {
        match self {
            Self::Stdout => 1,
            Self::Stderr => 2,
            Self::Pty => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Stdout,
            2 => Self::Stderr,
            3 => Self::Pty,
            _ => return None,
        })
    }
}

/// What a reader gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A chunk.
    Chunk {
        /// Its number, from 1.
        seq: i64,
        /// Its stream.
        stream: Stream,
        /// Its bytes.
        data: Bytes,
    },
    /// Chunks `first..=last` are no longer retained.
    Lost {
        /// The first missing chunk.
        first: i64,
        /// The last missing chunk.
        last: i64,
    },
}

struct Segment {
    index: u64,
    first_seq: i64,
    bytes: u64,
}

struct Writer {
    segments: VecDeque<Segment>,
    /// The newest segment, open for appending until the log is complete.
    file: Option<File>,
    next_seq: i64,
    /// The newest chunks, in order without gaps, that some follower has not
    /// read yet.
    unsent: VecDeque<(i64, Stream, Bytes)>,
    /// While the log is held in memory: every chunk, in order without gaps.
    /// `None` once the log is on disk.
    held: Option<Held>,
}

/// The chunks of a log held in memory, and their bytes.
#[derive(Default)]
struct Held {
    chunks: VecDeque<(i64, Stream, Bytes)>,
    bytes: u64,
}

/// Chunk `seq` of `chunks`, a run of chunks in order without gaps.
fn chunk_at(chunks: &VecDeque<(i64, Stream, Bytes)>, seq: i64) -> Option<(Stream, Bytes)> {
    let (first, _, _) = chunks.front()?;
    let (_, stream, data) = chunks.get(usize::try_from(seq - first).ok()?)?;
    Some((*stream, data.clone()))
}

impl Writer {
    /// Forgets the in-memory chunks up to `slowest`, the last chunk every
    /// follower has read (all of them when there is no follower).
    fn forget_sent(&mut self, slowest: Option<i64>) {
        let sent = slowest.unwrap_or(i64::MAX);
        while self.unsent.front().is_some_and(|(seq, _, _)| *seq <= sent) {
            self.unsent.pop_front();
        }
    }
}

/// The published position of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The last chunk written (0 before any).
    pub last_seq: i64,
    /// Whether the log is complete: no chunk will follow.
    pub complete: bool,
}

/// One command's output log.
pub struct OutputLog {
    dir: PathBuf,
    budget: u64,
    /// The most bytes of chunks held in memory before the log goes to disk.
    memory_bound: u64,
    /// Whether the log is on disk (it may begin held in memory).
    on_disk: watch::Sender<bool>,
    writer: Mutex<Writer>,
    position: watch::Sender<Position>,
    followers: Mutex<HashMap<u64, i64>>,
    follower_moved: Notify,
    next_follower: AtomicU64,
}

impl OutputLog {
    /// A new, empty log in `dir` (created) keeping at least the newest
    /// `budget` bytes of records, and at most an eighth more.
    pub fn create(dir: &Path, budget: u64) -> std::io::Result<Arc<Self>> {
        let log = Self::held(dir, budget, 0);
        log.write_to_disk()?;
        Ok(log)
    }

    /// A new, empty log held in memory: nothing is written until
    /// [`OutputLog::write_to_disk`], or until its chunks would hold more than
    /// `memory_bound` bytes, when it goes to `dir` as [`OutputLog::create`]
    /// would have made it.
    pub fn held(dir: &Path, budget: u64, memory_bound: u64) -> Arc<Self> {
        Arc::new(Self {
            dir: dir.to_path_buf(),
            budget,
            memory_bound: memory_bound.min(budget),
            on_disk: watch::channel(false).0,
            writer: Mutex::new(Writer {
                segments: VecDeque::from([Segment {
                    index: 0,
                    first_seq: 1,
                    bytes: 0,
                }]),
                file: None,
                next_seq: 1,
                unsent: VecDeque::new(),
                held: Some(Held::default()),
            }),
            position: watch::channel(Position::default()).0,
            followers: Mutex::new(HashMap::new()),
            follower_moved: Notify::new(),
            next_follower: AtomicU64::new(1),
        })
    }

    /// Writes a held log's chunks to disk, in `dir`, and every later chunk
    /// after them; does nothing to a log already on disk. A complete log's
    /// file is closed again once written.
    pub fn write_to_disk(&self) -> std::io::Result<()> {
        let mut writer = self.writer.lock().expect("log writer");
        self.move_to_disk(&mut writer)
    }

    fn move_to_disk(&self, writer: &mut Writer) -> std::io::Result<()> {
        let Some(held) = writer.held.as_ref() else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir)?;
        let first_seq = held.chunks.front().map_or(writer.next_seq, |c| c.0);
        writer.file = Some(open_segment(&self.dir, 0)?);
        writer.segments = VecDeque::from([Segment {
            index: 0,
            first_seq,
            bytes: 0,
        }]);
        let held = writer.held.take().expect("held chunks");
        for (seq, stream, data) in &held.chunks {
            self.store_on_disk(writer, *seq, *stream, data)?;
        }
        if self.position().complete {
            writer.file = None;
        }
        self.on_disk.send_replace(true);
        Ok(())
    }

    /// Resolves once the log is on disk.
    pub async fn went_to_disk(&self) {
        let mut on_disk = self.on_disk.subscribe();
        let _ = on_disk.wait_for(|on_disk| *on_disk).await;
    }

    /// The bytes of chunks held in memory (0 once the log is on disk).
    pub fn held_bytes(&self) -> u64 {
        let writer = self.writer.lock().expect("log writer");
        writer.held.as_ref().map_or(0, |held| held.bytes)
    }

    /// Reopens a log written by an earlier agent, complete: its chunks can be
    /// replayed, and nothing more will be written.
    pub fn reopen(dir: &Path) -> std::io::Result<Arc<Self>> {
        let mut indexes: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("out.")?.parse().ok())
            .collect();
        indexes.sort_unstable();
        let mut segments = VecDeque::new();
        let mut last_seq = 0;
        for index in indexes {
            let mut reader = BufReader::new(File::open(segment_path(dir, index))?);
            let mut first_seq = None;
            let mut bytes = 0;
            while let Some((seq, _, data)) = read_record(&mut reader)? {
                first_seq.get_or_insert(seq);
                last_seq = seq;
                bytes += (HEADER_BYTES + data.len()) as u64;
            }
            segments.push_back(Segment {
                index,
                first_seq: first_seq.unwrap_or(last_seq + 1),
                bytes,
            });
        }
        let log = Arc::new(Self {
            dir: dir.to_path_buf(),
            budget: u64::MAX,
            memory_bound: 0,
            on_disk: watch::channel(true).0,
            writer: Mutex::new(Writer {
                segments,
                file: None,
                next_seq: last_seq + 1,
                unsent: VecDeque::new(),
                held: None,
            }),
            position: watch::channel(Position {
                last_seq,
                complete: true,
            })
            .0,
            followers: Mutex::new(HashMap::new()),
            follower_moved: Notify::new(),
            next_follower: AtomicU64::new(1),
        });
        Ok(log)
    }

    /// The current position.
    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    /// The first chunk still retained (0 when none is).
    pub fn first_retained_seq(&self) -> i64 {
        let writer = self.writer.lock().expect("log writer");
        let first = writer.segments.front().map_or(0, |s| s.first_seq);
        if first >= writer.next_seq { 0 } else { first }
    }

    /// Appends a chunk, first waiting while a follower lags too far behind.
    pub async fn append(&self, stream: Stream, data: Bytes) -> std::io::Result<i64> {
        let slowest = loop {
            let moved = self.follower_moved.notified();
            let last = self.position().last_seq;
            let slowest = self
                .followers
                .lock()
                .expect("followers")
                .values()
                .min()
                .copied();
            match slowest {
                Some(delivered) if last - delivered >= FOLLOW_WINDOW => moved.await,
                _ => break slowest,
            }
        };
        let seq = self.write_record(stream, data, slowest)?;
        self.publish(seq);
        Ok(seq)
    }

    /// Forgets the in-memory chunks every follower has read (all of them
    /// when there is no follower).
    fn forget_sent(&self, slowest: Option<i64>) {
        self.writer.lock().expect("log writer").forget_sent(slowest);
    }

    /// Chunk `seq`, if it is in memory: held, or not yet read by a
    /// follower.
    fn in_memory(&self, seq: i64) -> Option<(Stream, Bytes)> {
        let writer = self.writer.lock().expect("log writer");
        chunk_at(&writer.unsent, seq).or_else(|| chunk_at(&writer.held.as_ref()?.chunks, seq))
    }

    /// Tells readers that chunk `seq` is written. Pumps of stdout and
    /// stderr append concurrently, so a later chunk's number may be published
    /// first; it must not be taken back (every chunk below it is already
    /// written, under the writer's lock).
    fn publish(&self, seq: i64) {
        self.position
            .send_modify(|p| p.last_seq = p.last_seq.max(seq));
    }

    /// Writes chunk `data` as the next record (or holds it) and keeps it in
    /// memory for followers that have not read it, `slowest` being the last
    /// chunk every follower has read (`None`: no follower).
    fn write_record(
        &self,
        stream: Stream,
        data: Bytes,
        slowest: Option<i64>,
    ) -> std::io::Result<i64> {
        let mut writer = self.writer.lock().expect("log writer");
        if self.position().complete {
            return Err(std::io::Error::other("the output log is complete"));
        }
        let seq = writer.next_seq;
        let record_bytes = (HEADER_BYTES + data.len()) as u64;
        if writer
            .held
            .as_ref()
            .is_some_and(|held| held.bytes + record_bytes > self.memory_bound)
        {
            self.move_to_disk(&mut writer)?;
        }
        match writer.held.as_mut() {
            Some(held) => {
                held.bytes += record_bytes;
                held.chunks.push_back((seq, stream, data.clone()));
                writer.segments.back_mut().expect("a segment").bytes += record_bytes;
            }
            None => self.store_on_disk(&mut writer, seq, stream, &data)?,
        }
        writer.next_seq += 1;
        if slowest.is_some() {
            writer.unsent.push_back((seq, stream, data));
        }
        writer.forget_sent(slowest);
        Ok(seq)
    }

    /// Appends record `seq` to the newest segment file, begins a new segment
    /// when it is full and deletes the oldest when the rest hold the budget.
    fn store_on_disk(
        &self,
        writer: &mut Writer,
        seq: i64,
        stream: Stream,
        data: &[u8],
    ) -> std::io::Result<()> {
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(&seq.to_le_bytes());
        header[8] = stream.code();
        header[9..].copy_from_slice(&(data.len() as u32).to_le_bytes());
        let file = writer
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the output log is complete"))?;
        write_all_vectored(file, &mut [IoSlice::new(&header), IoSlice::new(data)])?;
        let record_bytes = (HEADER_BYTES + data.len()) as u64;
        let current = writer.segments.back_mut().expect("a current segment");
        current.bytes += record_bytes;
        if current.bytes >= self.budget / SEGMENTS_PER_BUDGET {
            let index = current.index + 1;
            writer.file = Some(open_segment(&self.dir, index)?);
            writer.segments.push_back(Segment {
                index,
                first_seq: seq + 1,
                bytes: 0,
            });
        }
        // The oldest segment goes only when the rest still hold the budget.
        let mut total: u64 = writer.segments.iter().map(|s| s.bytes).sum();
        while writer.segments.len() > 1 && total - writer.segments[0].bytes >= self.budget {
            let oldest = writer.segments.pop_front().expect("a segment");
            total -= oldest.bytes;
            let _ = std::fs::remove_file(segment_path(&self.dir, oldest.index));
        }
        Ok(())
    }

    /// Marks the log complete: readers end after the last chunk. Its file
    /// is closed, so that ended commands hold no descriptors.
    pub fn complete(&self) {
        let mut writer = self.writer.lock().expect("log writer");
        writer.file = None;
        self.position.send_modify(|p| p.complete = true);
    }

    /// A reader of every retained chunk after `after_seq`. A follower holds
    /// the writer back when it lags (see the module docs).
    pub fn reader(self: &Arc<Self>, after_seq: i64, follow: bool) -> LogReader {
        let follower = follow.then(|| {
            let id = self.next_follower.fetch_add(1, Ordering::Relaxed);
            self.followers
                .lock()
                .expect("followers")
                .insert(id, after_seq.max(0));
            id
        });
        LogReader {
            log: self.clone(),
            next_seq: after_seq.max(0) + 1,
            open: None,
            position: self.position.subscribe(),
            follower,
        }
    }

    fn segment_for(&self, seq: i64) -> Result<u64, i64> {
        let writer = self.writer.lock().expect("log writer");
        let first = writer.segments.front().map_or(1, |s| s.first_seq);
        if seq < first {
            return Err(first);
        }
        Ok(writer
            .segments
            .iter()
            .rev()
            .find(|s| s.first_seq <= seq)
            .map_or(0, |s| s.index))
    }
}

/// Writes every byte of `slices`, as [`Write::write_all`] does for one.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("out.{index}"))
}

fn open_segment(dir: &Path, index: u64) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, index))
}

fn read_record(reader: &mut impl Read) -> std::io::Result<Option<(i64, Stream, Bytes)>> {
    let mut header = [0u8; HEADER_BYTES];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let seq = i64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    let stream = Stream::from_code(header[8])
        .ok_or_else(|| std::io::Error::other("corrupt output log: unknown stream"))?;
    let len = u32::from_le_bytes(header[9..].try_into().expect("4 bytes")) as usize;
    let mut data = vec![0; len];
    reader.read_exact(&mut data)?;
    Ok(Some((seq, stream, data.into())))
}

struct OpenSegment {
    index: u64,
    reader: BufReader<File>,
}

/// Reads a log from a chunk number on, then follows it live.
pub struct LogReader {
    log: Arc<OutputLog>,
    next_seq: i64,
    open: Option<OpenSegment>,
    position: watch::Receiver<Position>,
    follower: Option<u64>,
}

impl LogReader {
    /// The next item, waiting for new output; `None` once the log is
    /// complete and read to its end.
    pub async fn next(&mut self) -> std::io::Result<Option<Item>> {
        loop {
            let position = *self.position.borrow_and_update();
            if self.next_seq <= position.last_seq {
                return self.read_next().map(Some);
            }
            if position.complete {
                return Ok(None);
            }
            if self.position.changed().await.is_err() {
                return Ok(None);
            }
        }
    }

    fn read_next(&mut self) -> std::io::Result<Item> {
        if let Some((stream, data)) = self.log.in_memory(self.next_seq) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.acknowledge(seq);
            return Ok(Item::Chunk { seq, stream, data });
        }
        let index = match self.log.segment_for(self.next_seq) {
            Ok(index) => index,
            Err(first_retained) => {
                let lost = Item::Lost {
                    first: self.next_seq,
                    last: first_retained - 1,
                };
                self.next_seq = first_retained;
                self.open = None;
                return Ok(lost);
            }
        };
        if self.open.as_ref().is_none_or(|o| o.index < index) {
            let file = File::open(segment_path(&self.log.dir, index))?;
            self.open = Some(OpenSegment {
                index,
                reader: BufReader::with_capacity(128 * 1024, file),
            });
        }
        let open = self.open.as_mut().expect("an open segment");
        loop {
            let Some((seq, stream, data)) = read_record(&mut open.reader)? else {
                return Err(std::io::Error::other(format!(
                    "output log {} lacks chunk {}",
                    self.log.dir.display(),
                    self.next_seq
                )));
            };
            if seq < self.next_seq {
                continue;
            }
            self.next_seq = seq + 1;
            self.acknowledge(seq);
            return Ok(Item::Chunk { seq, stream, data });
        }
    }

    fn acknowledge(&self, seq: i64) {
        if let Some(id) = self.follower {
            let slowest = {
                let mut followers = self.log.followers.lock().expect("followers");
                followers.insert(id, seq);
                followers.values().min().copied()
            };
            self.log.follower_moved.notify_waiters();
            self.log.forget_sent(slowest);
        }
    }
}

impl Drop for LogReader {
    fn drop(&mut self) {
        if let Some(id) = self.follower {
            let slowest = {
                let mut followers = self.log.followers.lock().expect("followers");
                followers.remove(&id);
                followers.values().min().copied()
            };
            self.log.follower_moved.notify_waiters();
            self.log.forget_sent(slowest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chunk_number_published_late_hides_no_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let log = OutputLog::create(dir.path(), 64 << 20).unwrap();
        log.append(Stream::Stdout, Bytes::from_static(b"first"))
            .await
            .unwrap();
        log.append(Stream::Stderr, Bytes::from_static(b"second"))
            .await
            .unwrap();
        // The stdout pump publishing chunk 1 after the stderr pump published
        // chunk 2, as a race between them can order it.
        log.publish(1);
        log.complete();
        let mut reader = log.reader(0, false);
        let mut chunks = 0;
        while let Some(item) = reader.next().await.unwrap() {
            assert!(matches!(item, Item::Chunk { .. }));
            chunks += 1;
        }
        assert_eq!(chunks, 2, "the second chunk stays visible");
    }

    #[tokio::test]
    async fn replays_then_follows_and_reports_lost_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = OutputLog::create(dir.path(), 256 * 1024).unwrap();
        let chunk = vec![7u8; 32 * 1024];
        for _ in 0..20 {
            log.append(Stream::Stdout, Bytes::from(chunk.clone()))
                .await
                .unwrap();
        }
        log.append(Stream::Stderr, Bytes::from_static(b"tail"))
            .await
            .unwrap();
        log.complete();
        let first = log.first_retained_seq();
        assert!(first > 1, "old segments were dropped within the budget");

        let mut reader = log.reader(0, false);
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Item::Lost {
                first: 1,
                last: first - 1
            })
        );
        let mut seqs = Vec::new();
        while let Some(item) = reader.next().await.unwrap() {
            let Item::Chunk { seq, .. } = item else {
                panic!("only chunks follow")
            };
            seqs.push(seq);
        }
        assert_eq!(seqs, (first..=21).collect::<Vec<_>>());
        let total: usize = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len() as usize)
            .sum();
        assert!(total <= 256 * 1024 + 64 * 1024, "{total} bytes on disk");

        let reopened = OutputLog::reopen(dir.path()).unwrap();
        assert_eq!(reopened.position().last_seq, 21);
        let mut reader = reopened.reader(20, false);
        assert!(matches!(
            reader.next().await.unwrap(),
            Some(Item::Chunk {
                seq: 21,
                stream: Stream::Stderr,
                ..
            })
        ));
        assert_eq!(reader.next().await.unwrap(), None);
    }

    /// At the default budget (64 MiB, `paddock agent --output-budget`), a
    /// command that printed 80 MB keeps at least its newest 64 MiB, and the
    /// disk holds at most an eighth more.
    #[tokio::test]
    async fn a_log_keeps_its_whole_budget_at_the_default_size() {
        let budget: u64 = 64 << 20;
        let dir = tempfile::tempdir().unwrap();
        let log = OutputLog::create(dir.path(), budget).unwrap();
        let chunk = Bytes::from(vec![b'x'; 64 << 10]);
        let chunks = 80_000_000 / chunk.len();
        for _ in 0..chunks {
            log.append(Stream::Stdout, chunk.clone()).await.unwrap();
        }
        log.complete();

        let mut reader = log.reader(0, false);
        let mut kept = 0u64;
        while let Some(item) = reader.next().await.unwrap() {
            if let Item::Chunk { data, .. } = item {
                kept += data.len() as u64;
            }
        }
        assert!(
            kept >= budget - chunk.len() as u64,
            "kept {kept} bytes of a {budget} budget"
        );
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk >= budget, "{on_disk} bytes on disk");
        assert!(
            on_disk <= budget + budget / 8 + (64 << 10) + 64,
            "{on_disk} bytes on disk"
        );
    }

    #[tokio::test]
    async fn followers_read_unsent_chunks_from_memory_and_nothing_is_kept_for_no_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = OutputLog::create(dir.path(), 1 << 20).unwrap();
        let unsent = |log: &OutputLog| log.writer.lock().unwrap().unsent.len();
        log.append(Stream::Stdout, Bytes::from_static(b"nobody follows"))
            .await
            .unwrap();
        assert_eq!(unsent(&log), 0, "no follower: nothing kept in memory");

        let mut slow = log.reader(1, true);
        let mut fast = log.reader(1, true);
        for word in [&b"one"[..], b"two", b"three"] {
            log.append(Stream::Stdout, Bytes::from_static(word))
                .await
                .unwrap();
        }
        assert_eq!(unsent(&log), 3);
        // From here on the disk cannot answer: what the followers get comes
        // from memory.
        std::fs::remove_file(segment_path(dir.path(), 0)).unwrap();
        for expected in [&b"one"[..], b"two", b"three"] {
            let Some(Item::Chunk { data, .. }) = fast.next().await.unwrap() else {
                panic!("a chunk")
            };
            assert_eq!(&data[..], expected);
        }
        assert_eq!(unsent(&log), 3, "kept until the slowest follower reads");
        let Some(Item::Chunk { seq: 2, data, .. }) = slow.next().await.unwrap() else {
            panic!("chunk 2")
        };
        assert_eq!(&data[..], b"one");
        assert_eq!(unsent(&log), 2);
        drop(slow);
        assert_eq!(unsent(&log), 0, "every remaining follower has read them");
    }

    /// Every chunk of `log` from the start, as (stream, bytes).
    async fn read_all(log: &Arc<OutputLog>) -> Vec<(Stream, Bytes)> {
        let mut reader = log.reader(0, false);
        let mut chunks = Vec::new();
        while let Some(item) = reader.next().await.unwrap() {
            let Item::Chunk { stream, data, .. } = item else {
                panic!("nothing is lost: {item:?}")
            };
            chunks.push((stream, data));
        }
        chunks
    }

    #[tokio::test]
    async fn a_held_log_touches_no_disk_until_written_out_and_then_reads_the_same() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cmd");
        let log = OutputLog::held(&dir, 1 << 20, 1024);
        log.append(Stream::Stdout, Bytes::from_static(b"out"))
            .await
            .unwrap();
        log.append(Stream::Stderr, Bytes::from_static(b"err"))
            .await
            .unwrap();
        assert!(!dir.exists(), "held: not even the directory exists");
        assert_eq!(log.held_bytes(), 2 * (HEADER_BYTES as u64 + 3));
        let mut follower = log.reader(0, true);
        assert!(matches!(
            follower.next().await.unwrap(),
            Some(Item::Chunk { seq: 1, .. })
        ));

        log.write_to_disk().unwrap();
        assert!(segment_path(&dir, 0).exists());
        assert_eq!(log.held_bytes(), 0);
        log.append(Stream::Stdout, Bytes::from_static(b"later"))
            .await
            .unwrap();
        log.complete();
        let expected = vec![
            (Stream::Stdout, Bytes::from_static(b"out")),
            (Stream::Stderr, Bytes::from_static(b"err")),
            (Stream::Stdout, Bytes::from_static(b"later")),
        ];
        assert_eq!(read_all(&log).await, expected);
        assert_eq!(read_all(&OutputLog::reopen(&dir).unwrap()).await, expected);
        let Some(Item::Chunk { seq: 2, .. }) = follower.next().await.unwrap() else {
            panic!("the follower goes on where it was")
        };
    }

    #[tokio::test]
    async fn a_held_log_goes_to_disk_by_itself_past_its_memory_bound() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cmd");
        let log = OutputLog::held(&dir, 1 << 20, 1000);
        let chunk = Bytes::from(vec![b'x'; 400]);
        log.append(Stream::Stdout, chunk.clone()).await.unwrap();
        log.append(Stream::Stdout, chunk.clone()).await.unwrap();
        assert!(!dir.exists());
        let on_disk = log.went_to_disk();
        tokio::pin!(on_disk);
        assert!(futures::poll!(on_disk.as_mut()).is_pending());
        log.append(Stream::Stdout, chunk.clone()).await.unwrap();
        on_disk.await;
        log.complete();
        let reopened = OutputLog::reopen(&dir).unwrap();
        assert_eq!(read_all(&reopened).await.len(), 3, "all three on disk");
    }

    #[tokio::test]
    async fn a_complete_held_log_written_out_later_is_whole_and_closed() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cmd");
        let log = OutputLog::held(&dir, 1 << 20, 1 << 20);
        log.append(Stream::Pty, Bytes::from_static(b"done"))
            .await
            .unwrap();
        log.complete();
        log.write_to_disk().unwrap();
        assert!(
            log.writer.lock().unwrap().file.is_none(),
            "no descriptor kept"
        );
        assert_eq!(
            read_all(&OutputLog::reopen(&dir).unwrap()).await,
            vec![(Stream::Pty, Bytes::from_static(b"done"))]
        );
        assert!(
            log.append(Stream::Pty, Bytes::from_static(b"x"))
                .await
                .is_err(),
            "a complete log takes nothing more"
        );
    }

    #[tokio::test]
    async fn a_lagging_follower_holds_the_writer_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = OutputLog::create(dir.path(), 1 << 20).unwrap();
        let mut follower = log.reader(0, true);
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                for _ in 0..(FOLLOW_WINDOW * 3) {
                    log.append(Stream::Stdout, Bytes::from_static(b"x"))
                        .await
                        .unwrap();
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(log.position().last_seq, FOLLOW_WINDOW, "the writer waits");
        for _ in 0..(FOLLOW_WINDOW * 3) {
            follower.next().await.unwrap().unwrap();
        }
        writer.await.unwrap();
        assert_eq!(log.position().last_seq, FOLLOW_WINDOW * 3);
    }
}
