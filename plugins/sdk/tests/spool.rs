//! The disk spool's promises, tested on real files: order, delivery
//! across reopen, segments deleted once delivered, the cap, the lock,
//! front spills read first, and recovery from a torn tail cut at every
//! byte and from corrupt records.

use hepflow_sdk::spool::{AppendError, OpenError, OpenReport, Spool, SpoolOptions};
use proptest::prelude::*;
use std::path::Path;

/// Open the spool of `o`, waiting (5 s at most) while its lock is held:
/// another test of this binary spawns `mount`, and a child holds a copy of
/// every open descriptor between its fork and its exec, the lock of a
/// spool just dropped included.
fn reopen(o: &SpoolOptions) -> (Spool, OpenReport) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Spool::open(o.clone()) {
            Err(OpenError::Locked { .. }) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r.unwrap(),
        }
    }
}

fn opts(dir: &Path, segment_bytes: u64, max_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
    }
}

/// Payload `i`: its number and a filler, `len` bytes in all.
fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(len.max(8), (i % 251) as u8);
    p
}

fn append_range(spool: &mut Spool, from: u64, n: u64, len: usize) -> usize {
    let (done, err) = spool.append(n as usize, 1000, |i, buf| {
        buf.extend_from_slice(&payload(from + i as u64, len))
    });
    assert!(err.is_none(), "append: {err:?}");
    done
}

/// Read everything (acking each batch), returning the payload numbers.
fn drain(spool: &mut Spool, batch: usize) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        let b = spool.read(batch, 1 << 20).unwrap();
        if b.records.is_empty() {
            break;
        }
        for r in &b.records {
            got.push(u64::from_le_bytes(r.payload[..8].try_into().unwrap()));
        }
        spool.ack(&b.token).unwrap();
    }
    got
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count()
}

#[test]
fn records_come_back_in_order_across_segments_and_delivered_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, report) = Spool::open(opts(dir.path(), 64 * 1024, 1 << 30)).unwrap();
    assert_eq!(report, OpenReport::default());
    // 1000 records of 600 bytes: about ten segments of 64 KiB.
    assert_eq!(append_range(&mut s, 0, 1000, 600), 1000);
    assert_eq!(s.records(), 1000);
    assert!(
        segment_files(dir.path()) >= 9,
        "{}",
        segment_files(dir.path())
    );
    let got = drain(&mut s, 37);
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert_eq!(s.records(), 0);
    // Every sealed segment was deleted; only the one being written stays.
    assert_eq!(segment_files(dir.path()), 1);
    s.close().unwrap();
    let (mut s, report) = Spool::open(opts(dir.path(), 64 * 1024, 1 << 30)).unwrap();
    assert_eq!(report.records, 0);
    assert!(drain(&mut s, 100).is_empty());
}

#[test]
fn what_was_not_acknowledged_is_read_again_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 * 1024, 1 << 30);
    {
        let (mut s, _) = reopen(&o);
        append_range(&mut s, 0, 500, 300);
        // Deliver 120, read 50 more without acknowledging them.
        let b = s.read(120, 1 << 20).unwrap();
        assert_eq!(b.records.len(), 120);
        s.ack(&b.token).unwrap();
        let unacked = s.read(50, 1 << 20).unwrap();
        assert_eq!(unacked.records.len(), 50);
        s.persist_positions().unwrap();
        // Dropped without close: as a crash would leave it (the active
        // segment has no trailer).
    }
    let (mut s, report) = Spool::open(o).unwrap();
    assert_eq!(report.records, 380);
    assert_eq!(report.torn_tails, 0);
    assert_eq!(drain(&mut s, 64), (120..500).collect::<Vec<_>>());
}

#[test]
fn appends_after_reopen_follow_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 * 1024, 1 << 30);
    {
        let (mut s, _) = reopen(&o);
        append_range(&mut s, 0, 100, 100);
        s.close().unwrap();
    }
    let (mut s, _) = reopen(&o);
    append_range(&mut s, 100, 100, 100);
    let (batch_a, batch_b) = {
        let a = s.read(150, 1 << 20).unwrap();
        let b = s.read(150, 1 << 20).unwrap();
        (a, b)
    };
    assert_eq!(batch_a.records.len() + batch_b.records.len(), 200);
    let seqs: Vec<u64> = batch_a
        .records
        .iter()
        .chain(&batch_b.records)
        .map(|r| r.seq)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers grow"
    );
}

#[test]
fn the_cap_refuses_appends_and_drop_oldest_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(opts(dir.path(), 64 * 1024, 256 * 1024)).unwrap();
    let (done, err) = s.append(10_000, 1, |i, buf| {
        buf.extend_from_slice(&payload(i as u64, 1000))
    });
    assert!(matches!(err, Some(AppendError::Full)), "{err:?}");
    assert_eq!(err.unwrap().reason(), "spool_full");
    assert!(done > 200 && done < 260, "{done}");
    assert!(s.bytes() <= 256 * 1024, "{}", s.bytes());
    assert_eq!(s.records(), done as u64);
    let lost = s.drop_oldest().unwrap();
    assert!(lost > 50, "{lost}");
    assert_eq!(s.records(), done as u64 - lost);
    let more = append_range(&mut s, 100_000, 20, 1000);
    assert_eq!(more, 20);
    let got = drain(&mut s, 100);
    assert_eq!(got.len() as u64, done as u64 - lost + 20);
    // What is left starts where the dropped segment ended, in order.
    assert_eq!(got[0], lost);
    assert_eq!(*got.last().unwrap(), 100_019);
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 * 1024, 1 << 20);
    let (_s, _) = reopen(&o);
    match Spool::open(o) {
        Err(OpenError::Locked { holder, .. }) => {
            assert_eq!(holder, format!("pid {}", std::process::id()))
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second open of a locked spool must fail"),
    }
}

#[test]
fn a_front_spill_is_read_before_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 * 1024, 1 << 30);
    {
        let (mut s, _) = reopen(&o);
        append_range(&mut s, 1000, 300, 400);
        // 100 of them delivered: the first segment is half read.
        let b = s.read(100, 1 << 20).unwrap();
        s.ack(&b.token).unwrap();
        // What memory still held at shutdown, older than all of it.
        let (n, err) = s.spill_front(50, 1, |i, buf| {
            buf.extend_from_slice(&payload(i as u64, 400))
        });
        assert_eq!((n, err.is_none()), (50, true));
        s.close().unwrap();
    }
    let (mut s, report) = Spool::open(o).unwrap();
    assert_eq!(report.records, 250);
    let got = drain(&mut s, 64);
    let want: Vec<u64> = (0..50).chain(1100..1300).collect();
    assert_eq!(got, want);
}

#[test]
fn a_corrupt_record_ends_its_segment_for_the_reader_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 * 1024, 1 << 30);
    {
        let (mut s, _) = reopen(&o);
        append_range(&mut s, 0, 400, 600);
        s.close().unwrap();
    }
    // Flip a byte in the middle of the first segment.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let first_len = std::fs::metadata(&segs[0]).unwrap().len();
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&segs[0], &bytes).unwrap();
    let per_segment = (first_len - 16 - 24) / (600 + 24);

    let (mut s, report) = Spool::open(o).unwrap();
    assert_eq!(report.records, 400);
    let mut got = Vec::new();
    let mut corrupt = 0;
    loop {
        let b = s.read(50, 1 << 20).unwrap();
        corrupt += b.corrupt;
        if b.records.is_empty() && b.corrupt == 0 {
            break;
        }
        got.extend(
            b.records
                .iter()
                .map(|r| u64::from_le_bytes(r.payload[..8].try_into().unwrap())),
        );
        s.ack(&b.token).unwrap();
    }
    // What precedes the damage, then every later segment whole.
    let kept_first = got.iter().take_while(|&&i| i < per_segment).count() as u64;
    assert!(kept_first < per_segment);
    assert_eq!(corrupt, per_segment - kept_first);
    assert_eq!(got.len() as u64 + corrupt, 400);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(s.records(), 0);
}

#[test]
fn unrelated_and_damaged_files_are_set_aside_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 * 1024, 1 << 30);
    std::fs::write(dir.path().join("00000000000000000001.seg"), b"not a spool").unwrap();
    std::fs::write(dir.path().join("position"), b"garbage").unwrap();
    let (mut s, report) = Spool::open(o).unwrap();
    assert_eq!(report.bad_segments, 1);
    assert!(dir.path().join("00000000000000000001.seg.corrupt").exists());
    append_range(&mut s, 0, 5, 10);
    assert_eq!(drain(&mut s, 10), vec![0, 1, 2, 3, 4]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// A crash can leave the segment being written cut anywhere. Cut it at
    /// every byte of its last records: reopening yields exactly the whole
    /// records before the cut, in order, and counts the torn tail.
    #[test]
    fn a_torn_tail_cut_at_any_byte_loses_only_the_cut_record(
        n in 1u64..12,
        len in 8usize..200,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path(), 64 * 1024, 1 << 30);
        {
            let (mut s, _) = reopen(&o);
            append_range(&mut s, 0, n, len);
            // No close: the segment has no trailer, as after a crash.
        }
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let whole = std::fs::read(&seg).unwrap();
        let record = (24 + len.max(8)) as u64;
        for cut in 16..=whole.len() {
            std::fs::write(&seg, &whole[..cut]).unwrap();
            let _ = std::fs::remove_file(dir.path().join("position"));
            let (mut s, report) = reopen(&o);
            let kept = (cut as u64 - 16) / record;
            let torn = !(cut as u64 - 16).is_multiple_of(record);
            prop_assert_eq!(report.records, kept, "cut {}", cut);
            prop_assert_eq!(report.torn_tails, u64::from(torn), "cut {}", cut);
            let got = drain(&mut s, 5);
            prop_assert_eq!(got, (0..kept).collect::<Vec<_>>(), "cut {}", cut);
            // Appends after recovery go on cleanly.
            append_range(&mut s, 500, 2, len);
            prop_assert_eq!(drain(&mut s, 5), vec![500, 501]);
            drop(s);
            // Start the next cut from the same whole segment, no others.
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "seg") {
                    std::fs::remove_file(p).unwrap();
                }
            }
            std::fs::write(&seg, &whole).unwrap();
        }
    }
}

/// A small tmpfs, mounted for one test and unmounted when dropped. Needs
/// root (CI and the development machines run as root).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs failed (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_disk_refuses_appends_cleanly_and_what_was_written_stays_readable() {
    let fs = Tmpfs::mount("3m");
    let (mut s, _) = Spool::open(opts(fs.0.path(), 1 << 20, 1 << 30)).unwrap();
    let mut appended = 0u64;
    let err = loop {
        let (n, err) = s.append(100, 1, |i, buf| {
            buf.extend_from_slice(&payload(appended + i as u64, 1000))
        });
        appended += n as u64;
        if let Some(e) = err {
            break e;
        }
        assert!(appended < 10_000, "a 3 MiB disk never filled");
    };
    assert_eq!(err.reason(), "disk_full", "{err}");
    assert!(appended > 1000, "{appended}");
    assert_eq!(s.records(), appended);
    // Everything appended before the error reads back whole, in order.
    let got = drain(&mut s, 128);
    assert_eq!(got, (0..appended).collect::<Vec<_>>());
    // Delivered segments were deleted: there is room again.
    let (n, err) = s.append(50, 1, |i, buf| {
        buf.extend_from_slice(&payload(i as u64, 1000))
    });
    assert_eq!((n, err.map(|e| e.reason())), (50, None));
    drop(s);
    // And a reopen finds a consistent spool (the cut segment sealed).
    let (mut s, report) = Spool::open(opts(fs.0.path(), 1 << 20, 1 << 30)).unwrap();
    assert_eq!(report.records, 50);
    assert_eq!(drain(&mut s, 64), (0..50).collect::<Vec<_>>());
}

#[test]
fn the_spool_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("spool");
    let (mut s, _) = Spool::open(opts(&sub, 64 * 1024, 1 << 20)).unwrap();
    append_range(&mut s, 0, 3, 10);
    let b = s.read(1, 1 << 20).unwrap();
    s.ack(&b.token).unwrap();
    s.persist_positions().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sub), 0o700);
    for e in std::fs::read_dir(&sub).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}
