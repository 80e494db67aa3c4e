//! Writing the spool: appends in one write per segment touched, segment
//! roll-over with trailers, front spills, sync and close.

use super::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::{segment_name, sync_dir, AppendError, Segment, Spool, FIRST_SEGMENT_ID, TRAILER_LEN};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

impl Spool {
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
            let max_size = self.opts.segment_bytes - SEGMENT_HEADER_LEN - TRAILER_LEN;
            let size = match encode_unsealed(&mut buf, i, &mut encode, max_size) {
                Ok(size) => size,
                Err(e) => {
                    stop = Some(e);
                    break;
                }
            };
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
                // What is buffered goes to the segment it fits in; only
                // then a new segment. A failure of either stops here, with
                // what was written counted as written.
                let flushed = self.write_active(&buf, pending);
                buf.clear();
                if let Err(e) = flushed {
                    stop = Some(e);
                    pending = 0;
                    break;
                }
                written += pending as usize;
                pending = 0;
                if let Err(e) = self.roll() {
                    stop = Some(AppendError::Io(e));
                    break;
                }
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
            .mode(0o600)
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
    pub(super) fn seal_active(&mut self) -> io::Result<()> {
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
        match self.take_sync_handle()? {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }

    /// What [`Self::sync`] does, in two steps so that the caller can fsync
    /// without holding its lock on the spool: a handle of the active
    /// segment when anything was appended since the last call (fsync it
    /// with `sync_data`), else `None`. A segment sealed meanwhile was
    /// synced when it was sealed.
    pub fn take_sync_handle(&mut self) -> io::Result<Option<File>> {
        if !self.dirty {
            return Ok(None);
        }
        self.dirty = false;
        match &self.active {
            Some((_, file)) => file.try_clone().map(Some),
            None => Ok(None),
        }
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
        // The id may be one a deleted segment had: nothing read of that
        // one may be served for this.
        self.ahead = None;
        let mut buf = format::segment_header(id).to_vec();
        let mut records = 0u64;
        let mut stop = None;
        for i in 0..n {
            let start = buf.len();
            if let Err(e) = encode_unsealed(&mut buf, i, &mut encode, u64::MAX) {
                stop = Some(e);
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
            .mode(0o600)
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

    /// Seal the active segment, sync, and persist the position: what a
    /// clean shutdown does (the next open then reads no segment whole).
    pub fn close(mut self) -> io::Result<()> {
        self.seal_active()?;
        self.persist_positions()
    }
}

/// Append record `i` to `buf` with its header reserved (to be filled by
/// [`format::seal_record`]) and its payload written by `encode`; its whole
/// size, or `TooLarge` (and `buf` as it was) when the payload passes
/// [`format::MAX_PAYLOAD`] or the record `max_size`.
fn encode_unsealed(
    buf: &mut Vec<u8>,
    i: usize,
    encode: &mut impl FnMut(usize, &mut Vec<u8>),
    max_size: u64,
) -> Result<u64, AppendError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    encode(i, buf);
    let payload_len = buf.len() - start - RECORD_HEADER_LEN;
    let size = (buf.len() - start) as u64;
    if payload_len > format::MAX_PAYLOAD || size > max_size {
        buf.truncate(start);
        return Err(AppendError::TooLarge(payload_len));
    }
    Ok(size)
}
