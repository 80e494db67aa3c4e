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
//! - **Private**: records hold messages as received, HEP auth keys
//!   included, so the directory is made 0700 and every file 0600.
//! - **One process per directory**: `lock` is held with an exclusive file
//!   lock for the spool's life; a second hepflow on the same directory is
//!   refused at start.
//!
//! Writes go straight to the file (`write(2)`, no buffer in user space):
//! what [`Spool::append`] returned is in the kernel and survives the
//! process being killed; [`Spool::sync`] (`fdatasync`) makes it survive an
//! operating-system crash too. The caller decides how often to sync.

pub mod config;
pub mod event_record;
pub mod format;
mod read;
mod write;

use format::{Parsed, SegmentPosition, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
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
    /// Bytes the last read fetched past its last record: segment, offset,
    /// bytes (the next read starts from them instead of the file).
    ahead: Option<(u64, u64, bytes::Bytes)>,
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
        // Records hold messages as received, HEP auth keys included: the
        // directory is the owner's alone (files are created 0600 too).
        fs::set_permissions(&opts.dir, fs::Permissions::from_mode(0o700)).map_err(io_err(
            "restricting the directory to its owner (0700)".into(),
        ))?;
        let lock = take_lock(&opts.dir, &dir_s)?;
        let mut spool = Spool {
            opts,
            _lock: lock,
            segments: BTreeMap::new(),
            active: None,
            acked: BTreeMap::new(),
            cursor: None,
            reader: None,
            ahead: None,
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
}

/// Bytes of a trailer.
const TRAILER_LEN: u64 = RECORD_HEADER_LEN as u64;
/// Bytes a read takes from a segment at least.
const READ_CHUNK: usize = 1 << 20;

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
        .mode(0o600)
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
