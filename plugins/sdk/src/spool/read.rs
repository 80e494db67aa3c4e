//! Reading the spool: records oldest first from the lowest segment with
//! anything unread, acknowledgements, deleting delivered segments, and
//! the stored reader position.

use super::format::{self, Parsed, SegmentPosition, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::{segment_name, sync_dir, AckToken, ReadBatch, Spool, SpooledRecord, READ_CHUNK};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

impl Spool {
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
            // What the last read fetched beyond the records it returned
            // (segments are append-only: bytes once read stay valid).
            let cached = match self.ahead.take() {
                Some((id, offset, bytes)) if id == cur.id && offset == cur.offset => {
                    matches!(format::parse(&bytes), Parsed::Record { .. }).then_some(bytes)
                }
                _ => None,
            };
            let mut want = avail.min(READ_CHUNK as u64);
            let chunk = if let Some(bytes) = cached {
                bytes
            } else {
                loop {
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
            if !corrupt && at < chunk.len() {
                self.ahead = Some((cur.id, cur.offset + at as u64, chunk.slice(at..)));
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
    pub(super) fn delete_if_delivered(&mut self, id: u64) -> io::Result<()> {
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
        self.ahead = None;
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
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
        }
        fs::rename(&tmp, self.path("position"))?;
        sync_dir(&self.opts.dir)?;
        self.positions_dirty = false;
        Ok(())
    }
}
