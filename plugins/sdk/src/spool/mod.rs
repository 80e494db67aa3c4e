//! The disk spool: an append-only, checksummed, segmented log of one
//! sink's messages, read oldest first and deleted a segment at a time once
//! the sink has delivered it.
//!
//! Why written here: no maintained crate gives a per-consumer FIFO log
//! with a stored reader position, a size cap, checksums and cheap start-up
//! (yaque never fsyncs and panics on a bad header, queue-file cannot be
//! shared across tasks and has no cap, okaywal is not for production, the
//! embedded databases write each record more than once). This is the
//! smallest log with those properties; [`format`] holds its bytes.
//!
//! - **Segments** are files `<id>.seg` of at most `segment_bytes`; a record
//!   never spans two. A segment the writer leaves (full, or at an I/O
//!   error) is sealed with a trailer that states its record count, so
//!   opening a spool reads one trailer per segment, not its records. Only
//!   a segment without a trailer (the one being written when hepflow
//!   died) is scanned; its torn tail is cut and counted.
//! - **Records** carry a length, a CRC32C, a sequence number and a
//!   timestamp. A record that fails its checksum ends the segment for the
//!   reader: the records after it are counted as lost (`corrupt`) and the
//!   reader goes on with the next segment. Never a panic, never a stuck
//!   reader.
//! - **The reader position** (per segment: offset and records delivered)
//!   lives in memory and is written to `position` (temporary file, fsync,
//!   rename, directory fsync) on [`Spool::persist_positions`] and always
//!   before a delivered segment is deleted. After a crash, records
//!   delivered since the last persist are delivered again: at-least-once.
//! - **Front segments**: [`Spool::spill_front`] writes records that are
//!   older than everything in the log (what a sink still held in memory
//!   at shutdown) into a segment with a lower id, so they are read first.
//! - **Bounds**: `max_bytes` counts every segment file; an append that
//!   would pass it is refused ([`AppendError::Full`]) and the caller
//!   applies its when-full policy. A write error (disk full) cuts the
//!   segment back to its last whole record, seals it and is reported
//!   ([`AppendError::Io`]): never a half record that a reader trusts.
//! - **One process per directory**: `lock` is held with an exclusive file
//!   lock for the spool's life; a second hepflow on the same directory is
//!   refused at start.
//!
//! Writes go straight to the file (`write(2)`, no buffer in user space):
//! what [`Spool::append`] returned is in the kernel and survives the
//! process being killed; [`Spool::sync`] (`fdatasync`) makes it survive an
//! operating-system crash too. The caller decides how often to sync.

pub mod format;

use format::{Parsed, SegmentPosition, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where and how big a spool is.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Its directory (created if missing).
    pub dir: PathBuf,
    /// Bytes of segment files at most.
    pub max_bytes: u64,
    /// Bytes of one segment at most (a record never spans two).
    pub segment_bytes: u64,
}

/// Smallest segment size accepted.
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

/// Why a spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A file operation failed.
    #[error("spool {dir}: {what}: {source}; check that the directory exists, is writable by hepflow and its disk is not full")]
    Io {
        /// The spool directory.
        dir: String,
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// Another process holds the directory's lock.
    #[error("spool {dir} is in use by another hepflow process ({holder}); give every hepflow process and every sink its own spool directory (node.data_dir or sinks.NAME.spool.dir)")]
    Locked {
        /// The spool directory.
        dir: String,
        /// What the lock file says of its holder.
        holder: String,
    },
    /// Options that cannot work.
    #[error("spool {dir}: {what}")]
    Options {
        /// The spool directory.
        dir: String,
        /// What is wrong and what to do.
        what: String,
    },
}

/// Why an append stopped before its last record.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The spool holds `max_bytes`.
    #[error("the spool is full (max_bytes)")]
    Full,
    /// A record longer than [`format::MAX_PAYLOAD`] or than a segment.
    #[error("a record of {0} bytes is larger than the spool takes")]
    TooLarge(usize),
    /// Writing failed (for example the disk is full): the segment was cut
    /// back to its last whole record and sealed.
    #[error("writing the spool failed: {0}")]
    Io(#[from] io::Error),
}

impl AppendError {
    /// Low-cardinality reason label (`spool_full`, `disk_full`,
    /// `io_error`, `too_large`).
    pub fn reason(&self) -> &'static str {
        match self {
            AppendError::Full => "spool_full",
            AppendError::TooLarge(_) => "too_large",
            AppendError::Io(e) if is_out_of_space(e) => "disk_full",
            AppendError::Io(_) => "io_error",
        }
    }
}

/// ENOSPC or EDQUOT.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28) | Some(122)) || e.kind() == io::ErrorKind::StorageFull
}

/// What opening found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Records waiting to be delivered.
    pub records: u64,
    /// Segment files.
    pub segments: usize,
    /// Torn tails cut (a crash while writing).
    pub torn_tails: u64,
    /// Segment files that were not spool segments, or had a damaged
    /// header: renamed to `<name>.corrupt` and left out.
    pub bad_segments: u64,
    /// True when the position file was missing or damaged while segments
    /// were there: they are read from their start (delivered again).
    pub position_lost: bool,
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct SpooledRecord {
    /// Its sequence number.
    pub seq: u64,
    /// When it was spooled (ms since the Unix epoch).
    pub ts_ms: u64,
    /// Its payload (a slice of one shared read buffer).
    pub payload: bytes::Bytes,
}

/// What a read returned: the records, and the token that acknowledges
/// them once delivered.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Records, oldest first.
    pub records: Vec<SpooledRecord>,
    /// Records found corrupt on the way and skipped (with the rest of
    /// their segment): lost, to be counted by the caller.
    pub corrupt: u64,
    /// Pass to [`Spool::ack`] once the records are delivered.
    pub token: AckToken,
}

/// Which records a [`ReadBatch`] covered: per segment, the offset after
/// the last one and how many.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AckToken(Vec<(u64, u64, u64)>);

impl AckToken {
    /// True when it covers nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug)]
struct Segment {
    /// Bytes of valid data (header and records; not the trailer).
    len: u64,
    /// Bytes of the file (what counts against `max_bytes`).
    file_len: u64,
    /// Records it holds.
    records: u64,
    /// No more appends (trailer written, or cut at an error).
    sealed: bool,
}

/// One sink's disk log. Not thread-safe by itself: the caller wraps it in
/// a lock (one writer path and one reader share it).
pub struct Spool {
    opts: SpoolOptions,
    _lock: File,
    segments: BTreeMap<u64, Segment>,
    /// The segment being appended to.
    active: Option<(u64, File)>,
    /// Acknowledged position per segment (absent: nothing acknowledged).
    acked: BTreeMap<u64, SegmentPosition>,
    /// Where the next read starts: segment, offset, records read in it.
    cursor: Option<SegmentPosition>,
    /// The file the reader has open.
    reader: Option<(u64, File)>,
    next_seq: u64,
    /// Sum of segments' `file_len`.
    bytes: u64,
    /// Records not yet acknowledged.
    unacked: u64,
    /// Appended since the last sync.
    dirty: bool,
    /// Acknowledged since the last persist.
    positions_dirty: bool,
    buf: Vec<u8>,
}

const FIRST_SEGMENT_ID: u64 = 1 << 40;

fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

fn segment_id_of(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

impl Spool {
    /// Open (or create) the spool in `opts.dir`, take its lock, and
    /// recover what a previous run left: the stored reader position, each
    /// segment's record count from its trailer, and a torn tail cut.
    pub fn open(opts: SpoolOptions) -> Result<(Spool, OpenReport), OpenError> {
        let dir_s = opts.dir.display().to_string();
        let io_err = |what: String| {
            let dir = dir_s.clone();
            move |source| OpenError::Io { dir, what, source }
        };
        if opts.segment_bytes < MIN_SEGMENT_BYTES || opts.max_bytes < 2 * opts.segment_bytes {
            return Err(OpenError::Options {
                dir: dir_s,
                what: format!(
                    "segment_bytes ({}) must be at least {MIN_SEGMENT_BYTES} and max_bytes ({}) at least twice segment_bytes",
                    opts.segment_bytes, opts.max_bytes
                ),
            });
        }
        fs::create_dir_all(&opts.dir).map_err(io_err("creating the directory".into()))?;
        let lock = take_lock(&opts.dir, &dir_s)?;
        let mut spool = Spool {
            opts,
            _lock: lock,
            segments: BTreeMap::new(),
            active: None,
            acked: BTreeMap::new(),
            cursor: None,
            reader: None,
            next_seq: 0,
            bytes: 0,
            unacked: 0,
            dirty: false,
            positions_dirty: false,
            buf: Vec::with_capacity(256 * 1024),
        };
        let report = spool.recover().map_err(io_err("recovering".into()))?;
        Ok((spool, report))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.opts.dir.join(name)
    }

    fn recover(&mut self) -> io::Result<OpenReport> {
        let mut report = OpenReport::default();
        let _ = fs::remove_file(self.path("position.tmp"));
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.opts.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(segment_id_of) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let positions = match fs::read(self.path("position")) {
            Ok(bytes) => format::decode_positions(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(Vec::new()),
            Err(e) => return Err(e),
        };
        report.position_lost = positions.is_none() && !ids.is_empty();
        let positions: BTreeMap<u64, SegmentPosition> = positions
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        for id in ids {
            match self.recover_segment(id)? {
                Some((seg, next_seq, torn)) => {
                    report.torn_tails += u64::from(torn);
                    self.next_seq = self.next_seq.max(next_seq);
                    if let Some(p) = positions.get(&id) {
                        if p.offset >= seg.len || p.acked >= seg.records {
                            // Delivered whole; the delete did not happen.
                            fs::remove_file(self.path(&segment_name(id)))?;
                            continue;
                        }
                        self.acked.insert(id, *p);
                        self.unacked += seg.records - p.acked;
                    } else {
                        self.unacked += seg.records;
                    }
                    self.bytes += seg.file_len;
                    self.segments.insert(id, seg);
                }
                None => {
                    report.bad_segments += 1;
                    let name = segment_name(id);
                    fs::rename(self.path(&name), self.path(&format!("{name}.corrupt")))?;
                }
            }
        }
        report.records = self.unacked;
        report.segments = self.segments.len();
        Ok(report)
    }

    /// Read one segment's header and trailer (or scan it when it has no
    /// trailer, cutting a torn tail and sealing it). `None` when it is not
    /// a spool segment of this id.
    fn recover_segment(&self, id: u64) -> io::Result<Option<(Segment, u64, bool)>> {
        let path = self.path(&segment_name(id));
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        if file_len < SEGMENT_HEADER_LEN
            || file.read_exact_at(&mut header, 0).is_err()
            || format::parse_segment_header(&header) != Some(id)
        {
            return Ok(None);
        }
        if file_len >= SEGMENT_HEADER_LEN + TRAILER_LEN {
            let mut tail = [0u8; RECORD_HEADER_LEN];
            file.read_exact_at(&mut tail, file_len - TRAILER_LEN)?;
            if let Parsed::Trailer { records, next_seq } = format::parse(&tail) {
                let seg = Segment {
                    len: file_len - TRAILER_LEN,
                    file_len,
                    records,
                    sealed: true,
                };
                return Ok(Some((seg, next_seq, false)));
            }
        }
        // No trailer: the segment being written when the last run ended.
        let mut bytes = Vec::with_capacity(file_len as usize);
        file.read_to_end(&mut bytes)?;
        let mut at = SEGMENT_HEADER_LEN as usize;
        let mut records = 0;
        let mut next_seq = 0;
        while let Parsed::Record { seq, size, .. } = format::parse(&bytes[at..]) {
            at += size;
            records += 1;
            next_seq = seq + 1;
        }
        let torn = at < bytes.len();
        file.set_len(at as u64)?;
        let mut trailer = Vec::with_capacity(RECORD_HEADER_LEN);
        format::encode_trailer(&mut trailer, records, next_seq);
        file.write_all_at(&trailer, at as u64)?;
        file.sync_data()?;
        let seg = Segment {
            len: at as u64,
            file_len: at as u64 + TRAILER_LEN,
            records,
            sealed: true,
        };
        Ok(Some((seg, next_seq, torn)))
    }

    /// Records not yet acknowledged.
    pub fn records(&self) -> u64 {
        self.unacked
    }

    /// True when every record was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.unacked == 0
    }

    /// Bytes of segment files (what counts against `max_bytes`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The options it was opened with.
    pub fn options(&self) -> &SpoolOptions {
        &self.opts
    }

    /// Append `n` records stamped `ts_ms`; `encode(i, buf)` appends the
    /// payload of record `i` to `buf`. Records go to the file in one write
    /// per segment touched. Returns how many were appended (always a
    /// prefix of the `n`) and, when fewer than `n`, why.
    pub fn append(
        &mut self,
        n: usize,
        ts_ms: u64,
        mut encode: impl FnMut(usize, &mut Vec<u8>),
    ) -> (usize, Option<AppendError>) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut written = 0;
        let mut pending = 0u64;
        let mut stop = None;
        for i in 0..n {
            let start = buf.len();
            buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
            encode(i, &mut buf);
            let payload_len = buf.len() - start - RECORD_HEADER_LEN;
            let size = (buf.len() - start) as u64;
            if payload_len > format::MAX_PAYLOAD
                || SEGMENT_HEADER_LEN + size + TRAILER_LEN > self.opts.segment_bytes
            {
                buf.truncate(start);
                stop = Some(AppendError::TooLarge(payload_len));
                break;
            }
            let fits_active = self.active_len().is_some_and(|len| {
                len + start as u64 + size + TRAILER_LEN <= self.opts.segment_bytes
            });
            let new_segment = if fits_active {
                0
            } else {
                SEGMENT_HEADER_LEN + TRAILER_LEN
            };
            if self.bytes + start as u64 + size + new_segment > self.opts.max_bytes {
                buf.truncate(start);
                stop = Some(AppendError::Full);
                break;
            }
            if !fits_active {
                let record = buf.split_off(start);
                let result = self
                    .write_active(&buf, pending)
                    .and_then(|()| self.roll().map_err(AppendError::Io));
                if let Err(e) = result {
                    stop = Some(e);
                    buf.clear();
                    pending = 0;
                    break;
                }
                written += pending as usize;
                pending = 0;
                buf = record;
            }
            let start = buf.len() - size as usize;
            format::seal_record(&mut buf, start, self.next_seq, ts_ms);
            self.next_seq += 1;
            pending += 1;
        }
        if pending > 0 {
            match self.write_active(&buf, pending) {
                Ok(()) => written += pending as usize,
                Err(e) => stop = Some(e),
            }
        }
        buf.clear();
        self.buf = buf;
        (written, stop)
    }

    fn active_len(&self) -> Option<u64> {
        let (id, _) = self.active.as_ref()?;
        self.segments.get(id).map(|s| s.len)
    }

    /// Write `bytes` (`records` whole records) at the end of the active
    /// segment. On an error the segment is cut back to its last whole
    /// record and sealed; the next append starts a new one.
    fn write_active(&mut self, bytes: &[u8], records: u64) -> Result<(), AppendError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let Some((id, file)) = self.active.as_ref() else {
            return Err(AppendError::Io(io::Error::other("no active segment")));
        };
        let id = *id;
        let seg = self
            .segments
            .get_mut(&id)
            .expect("the active segment is listed");
        match file.write_all_at(bytes, seg.len) {
            Ok(()) => {
                seg.len += bytes.len() as u64;
                seg.file_len = seg.len;
                seg.records += records;
                self.bytes += bytes.len() as u64;
                self.unacked += records;
                self.dirty = true;
                Ok(())
            }
            Err(e) => {
                // Cut what part of the write landed; if even that fails,
                // the reader still stops at `len` and the next open cuts
                // the tail.
                if file.set_len(seg.len).is_err() {
                    if let Ok(m) = file.metadata() {
                        self.bytes += m.len().saturating_sub(seg.file_len);
                        seg.file_len = m.len();
                    }
                }
                seg.sealed = true;
                self.active = None;
                Err(AppendError::Io(e))
            }
        }
    }

    /// Seal the active segment (trailer) and start the next one.
    fn roll(&mut self) -> io::Result<()> {
        self.seal_active()?;
        let id = self
            .segments
            .keys()
            .next_back()
            .map_or(FIRST_SEGMENT_ID, |last| last + 1);
        let file = self.create_segment(id)?;
        self.active = Some((id, file));
        Ok(())
    }

    /// Create segment `id` with its header (and the directory entry made
    /// durable).
    fn create_segment(&mut self, id: u64) -> io::Result<File> {
        let path = self.path(&segment_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        if let Err(e) = file
            .write_all_at(&format::segment_header(id), 0)
            .and_then(|()| sync_dir(&self.opts.dir))
        {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.segments.insert(
            id,
            Segment {
                len: SEGMENT_HEADER_LEN,
                file_len: SEGMENT_HEADER_LEN,
                records: 0,
                sealed: false,
            },
        );
        self.bytes += SEGMENT_HEADER_LEN;
        Ok(file)
    }

    /// Write the active segment's trailer and fsync it; no active segment
    /// after this.
    fn seal_active(&mut self) -> io::Result<()> {
        let Some((id, file)) = self.active.take() else {
            return Ok(());
        };
        let seg = self
            .segments
            .get_mut(&id)
            .expect("the active segment is listed");
        let mut trailer = Vec::with_capacity(RECORD_HEADER_LEN);
        format::encode_trailer(&mut trailer, seg.records, self.next_seq);
        seg.sealed = true;
        file.write_all_at(&trailer, seg.len)?;
        seg.file_len = seg.len + TRAILER_LEN;
        self.bytes += TRAILER_LEN;
        file.sync_data()?;
        self.dirty = false;
        self.delete_if_delivered(id)
    }

    /// Make what was appended survive an operating-system crash
    /// (`fdatasync` of the active segment), if anything was appended
    /// since the last call.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            if let Some((_, file)) = &self.active {
                file.sync_data()?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Where unread records start: the lowest segment with records not
    /// yet acknowledged.
    fn first_unread(&self) -> Option<SegmentPosition> {
        self.segments
            .iter()
            .map(|(&id, seg)| (self.acked_position(id), seg))
            .find(|(p, seg)| p.offset < seg.len)
            .map(|(p, _)| p)
    }

    fn acked_position(&self, id: u64) -> SegmentPosition {
        self.acked.get(&id).copied().unwrap_or(SegmentPosition {
            id,
            offset: SEGMENT_HEADER_LEN,
            acked: 0,
        })
    }

    /// Read up to `max_records` records (and about `max_bytes` of them,
    /// at least one), oldest first, from where the last read ended. They
    /// stay in the spool until [`Self::ack`] is called with the batch's
    /// token; [`Self::rewind`] reads them again.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> io::Result<ReadBatch> {
        let mut out = ReadBatch::default();
        let mut bytes_read = 0usize;
        while out.records.len() < max_records && bytes_read < max_bytes.max(1) {
            let Some(mut cur) = self.cursor.or_else(|| self.first_unread()) else {
                break;
            };
            let Some(seg) = self.segments.get(&cur.id) else {
                self.cursor = None;
                continue;
            };
            if cur.offset >= seg.len {
                if !seg.sealed {
                    self.cursor = Some(cur);
                    break;
                }
                // On to the next segment with something unread.
                let next = self
                    .segments
                    .range(cur.id + 1..)
                    .map(|(&id, s)| (self.acked_position(id), s))
                    .find(|(p, s)| p.offset < s.len || !s.sealed)
                    .map(|(p, _)| p);
                self.cursor = next;
                if next.is_none() {
                    break;
                }
                continue;
            }
            let (seg_len, seg_records) = (seg.len, seg.records);
            if self.reader.as_ref().map(|(id, _)| *id) != Some(cur.id) {
                let f = File::open(self.path(&segment_name(cur.id)))?;
                self.reader = Some((cur.id, f));
            }
            let file = &self.reader.as_ref().expect("just opened").1;
            let avail = seg_len - cur.offset;
            let mut want = avail.min((max_bytes.saturating_sub(bytes_read)).max(READ_CHUNK) as u64);
            let chunk = loop {
                let mut chunk = vec![0u8; want as usize];
                file.read_exact_at(&mut chunk, cur.offset)?;
                match format::parse(&chunk) {
                    Parsed::Incomplete { need: Some(need) }
                        if (need as u64) <= avail && need as u64 > want =>
                    {
                        want = need as u64;
                    }
                    _ => break bytes::Bytes::from(chunk),
                }
            };
            let mut at = 0usize;
            let mut n = 0u64;
            let mut corrupt = false;
            while out.records.len() < max_records {
                match format::parse(&chunk[at..]) {
                    Parsed::Record {
                        seq, ts_ms, size, ..
                    } => {
                        out.records.push(SpooledRecord {
                            seq,
                            ts_ms,
                            payload: chunk.slice(at + RECORD_HEADER_LEN..at + size),
                        });
                        at += size;
                        n += 1;
                        bytes_read += size;
                    }
                    Parsed::Incomplete { .. } if (at as u64) < avail => {
                        // The chunk ended inside a record: read on.
                        if at == 0 {
                            corrupt = true;
                        }
                        break;
                    }
                    Parsed::Incomplete { .. } => break,
                    Parsed::Trailer { .. } | Parsed::Corrupt => {
                        corrupt = true;
                        break;
                    }
                }
            }
            cur.offset += at as u64;
            cur.acked += n;
            if n > 0 {
                match out.token.0.last_mut() {
                    Some(last) if last.0 == cur.id => {
                        last.1 = cur.offset;
                        last.2 += n;
                    }
                    _ => out.token.0.push((cur.id, cur.offset, n)),
                }
            }
            if corrupt {
                // The rest of this segment cannot be trusted: it ends here.
                let lost = seg_records.saturating_sub(cur.acked);
                out.corrupt += lost.max(1);
                self.unacked = self.unacked.saturating_sub(lost);
                let seg = self.segments.get_mut(&cur.id).expect("listed");
                seg.len = cur.offset;
                seg.records = cur.acked;
                if !seg.sealed {
                    seg.sealed = true;
                    if self.active.as_ref().map(|(id, _)| *id) == Some(cur.id) {
                        self.active = None;
                    }
                }
            }
            self.cursor = Some(cur);
            if n == 0 && !corrupt {
                break;
            }
        }
        Ok(out)
    }

    /// Forget how far reads got: the next read starts at the first record
    /// not acknowledged.
    pub fn rewind(&mut self) {
        self.cursor = None;
    }

    /// The records of a read are delivered: they will not be read again,
    /// and a segment delivered whole is deleted (its position persisted
    /// first).
    pub fn ack(&mut self, token: &AckToken) -> io::Result<()> {
        for &(id, offset, n) in &token.0 {
            if !self.segments.contains_key(&id) {
                continue; // dropped meanwhile (drop_oldest)
            }
            let mut p = self.acked_position(id);
            p.offset = p.offset.max(offset);
            p.acked += n;
            self.acked.insert(id, p);
            self.unacked = self.unacked.saturating_sub(n);
            self.positions_dirty = true;
            self.delete_if_delivered(id)?;
        }
        Ok(())
    }

    /// Delete segment `id` if it is sealed and wholly acknowledged,
    /// persisting the position first.
    fn delete_if_delivered(&mut self, id: u64) -> io::Result<()> {
        let Some(seg) = self.segments.get(&id) else {
            return Ok(());
        };
        if !seg.sealed || self.acked_position(id).offset < seg.len {
            return Ok(());
        }
        self.persist_positions()?;
        self.remove_segment(id)
    }

    fn remove_segment(&mut self, id: u64) -> io::Result<()> {
        if let Some(seg) = self.segments.remove(&id) {
            self.bytes -= seg.file_len;
        }
        self.acked.remove(&id);
        if self.reader.as_ref().map(|(r, _)| *r) == Some(id) {
            self.reader = None;
        }
        if self.cursor.map(|c| c.id) == Some(id) {
            self.cursor = None;
        }
        match fs::remove_file(self.path(&segment_name(id))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Delete the oldest segment to make room (`when_full = "drop_oldest"`),
    /// returning how many records not yet delivered went with it; 0 when
    /// there is nothing to drop.
    pub fn drop_oldest(&mut self) -> io::Result<u64> {
        let Some(&id) = self.segments.keys().next() else {
            return Ok(0);
        };
        if self.active.as_ref().map(|(a, _)| *a) == Some(id) {
            self.seal_active()?;
            if !self.segments.contains_key(&id) {
                return Ok(0);
            }
        }
        let seg = &self.segments[&id];
        let lost = seg.records.saturating_sub(self.acked_position(id).acked);
        self.unacked = self.unacked.saturating_sub(lost);
        self.acked.remove(&id);
        self.positions_dirty = true;
        self.persist_positions()?;
        self.remove_segment(id)?;
        Ok(lost)
    }

    /// Write records that are older than everything in the spool (what a
    /// sink still held in memory at shutdown) so that they are read
    /// first: a new segment with an id below every other, sealed and
    /// synced. The segment may pass `segment_bytes` (it holds one memory
    /// queue); `max_bytes` still holds, as in [`Self::append`].
    pub fn spill_front(
        &mut self,
        n: usize,
        ts_ms: u64,
        mut encode: impl FnMut(usize, &mut Vec<u8>),
    ) -> (usize, Option<AppendError>) {
        if n == 0 {
            return (0, None);
        }
        let Some(&lowest) = self.segments.keys().next() else {
            // Nothing on disk: the front is the end.
            let out = self.append(n, ts_ms, encode);
            return match self.sync() {
                Ok(()) => out,
                Err(e) => (out.0, Some(AppendError::Io(e))),
            };
        };
        let id = lowest - 1;
        let mut buf = format::segment_header(id).to_vec();
        let mut records = 0u64;
        let mut stop = None;
        for i in 0..n {
            let start = buf.len();
            buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
            encode(i, &mut buf);
            let payload_len = buf.len() - start - RECORD_HEADER_LEN;
            if payload_len > format::MAX_PAYLOAD {
                buf.truncate(start);
                stop = Some(AppendError::TooLarge(payload_len));
                break;
            }
            if self.bytes + (buf.len() as u64) + TRAILER_LEN > self.opts.max_bytes {
                buf.truncate(start);
                stop = Some(AppendError::Full);
                break;
            }
            format::seal_record(&mut buf, start, self.next_seq, ts_ms);
            self.next_seq += 1;
            records += 1;
        }
        if records == 0 {
            return (0, stop);
        }
        let len = buf.len() as u64;
        format::encode_trailer(&mut buf, records, self.next_seq);
        let path = self.path(&segment_name(id));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&buf)?;
                f.sync_data()
            })
            .and_then(|()| sync_dir(&self.opts.dir));
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return (0, Some(AppendError::Io(e)));
        }
        self.segments.insert(
            id,
            Segment {
                len,
                file_len: buf.len() as u64,
                records,
                sealed: true,
            },
        );
        self.bytes += buf.len() as u64;
        self.unacked += records;
        self.rewind();
        (records as usize, stop)
    }

    /// Write the reader position to disk (atomically: a temporary file,
    /// fsynced, renamed over the old one, the directory fsynced), if
    /// anything was acknowledged since the last time.
    pub fn persist_positions(&mut self) -> io::Result<()> {
        if !self.positions_dirty {
            return Ok(());
        }
        let positions: Vec<SegmentPosition> = self
            .acked
            .values()
            .filter(|p| self.segments.contains_key(&p.id))
            .copied()
            .collect();
        let bytes = format::encode_positions(&positions);
        let tmp = self.path("position.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
        }
        fs::rename(&tmp, self.path("position"))?;
        sync_dir(&self.opts.dir)?;
        self.positions_dirty = false;
        Ok(())
    }

    /// Seal the active segment, sync, and persist the position: what a
    /// clean shutdown does (the next open then reads no segment whole).
    pub fn close(mut self) -> io::Result<()> {
        self.seal_active()?;
        self.persist_positions()
    }
}

/// Bytes of a trailer.
const TRAILER_LEN: u64 = RECORD_HEADER_LEN as u64;
/// Bytes a read takes from a segment at least.
const READ_CHUNK: usize = 256 * 1024;

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn take_lock(dir: &Path, dir_s: &str) -> Result<File, OpenError> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| OpenError::Io {
            dir: dir_s.into(),
            what: "opening the lock file".into(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(OpenError::Locked {
                dir: dir_s.into(),
                holder: if holder.is_empty() {
                    "unknown pid".into()
                } else {
                    format!("pid {holder}")
                },
            });
        }
        Err(fs::TryLockError::Error(source)) => {
            return Err(OpenError::Io {
                dir: dir_s.into(),
                what: "locking".into(),
                source,
            })
        }
    }
    let _ = file.set_len(0);
    let _ = file.write_all_at(std::process::id().to_string().as_bytes(), 0);
    Ok(file)
}
