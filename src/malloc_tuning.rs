//! glibc malloc settings for the receive path, and what the heap holds
//! ([`heap_stats`], exported on `/metrics`).
//!
//! Every receive batch allocates its event storage and every TCP read
//! buffer is replaced once its frames are handed on; the sinks free them
//! later on other threads. With glibc's defaults (a 128 KiB trim
//! threshold, an mmap threshold that adapts at run time) that memory goes
//! back to the kernel and comes back as fresh zeroed pages: in a profile of
//! TCP ingest at ~1.7 M msg/s, page faults and page clearing were ~17 % of
//! hepflow's CPU time. Keeping up to [`TRIM_THRESHOLD`] of free memory per
//! arena and serving allocations below [`MMAP_THRESHOLD`] from the heap
//! measured +15 % TCP throughput (mean of 5 alternating runs each,
//! BENCHMARKS.md) for ~15 MiB more peak RSS.
//!
//! glibc also gives threads that contend for the heap arenas of their own,
//! up to 8 per core, and each arena keeps its own free memory (up to the
//! trim threshold) and its own fragmentation. hepflow's threads (receive
//! loops, runtime workers, sink threads, librdkafka's) allocate in one
//! place and free in another, so with every sink configured the memory
//! freed after a burst stayed with the arenas: up to 147 MiB free in the
//! heap, peak RSS 273-340 MiB in the every-sink run of `benches/load.py`.
//! Capping the arenas at one per core bounded that (158-170 MiB) but made
//! the receive threads and the file sink's threads wait for each other's
//! arena locks (the file sink lost 15-22 % at 200 k msg/s where it had
//! lost 0.4-3 %). Instead, [`reclaim_loop`] checks the heap once a second
//! and, when more than [`HEAP_FREE_LIMIT`] was freed since its last look
//! ([`Reclaimer`]), gives the free pages of every arena back to the kernel
//! (`malloc_trim`): peak RSS 182 and 189 MiB in two every-sink runs.
//!
//! An operator's own `MALLOC_TRIM_THRESHOLD_` / `MALLOC_MMAP_THRESHOLD_`
//! environment variables win: the setting each names is left alone.

/// Free memory an arena keeps instead of returning it to the kernel.
pub const TRIM_THRESHOLD: usize = 32 * 1024 * 1024;
/// Allocations at least this large get their own mapping.
pub const MMAP_THRESHOLD: usize = 4 * 1024 * 1024;

/// Free heap memory beyond which [`reclaim_loop`] returns it to the kernel.
pub const HEAP_FREE_LIMIT: usize = 64 * 1024 * 1024;

/// How often [`reclaim_loop`] looks.
pub const RECLAIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Apply the settings (call once, early in `main`). Does nothing on
/// platforms other than Linux with glibc.
pub fn apply() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |name: &str, param: libc::c_int, value: usize| {
            if std::env::var_os(name).is_some() {
                return;
            }
            let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
            // SAFETY: mallopt only changes allocator tunables; it is called
            // before any other thread exists. A refused setting (return
            // value 0) leaves glibc's default in place: nothing to report,
            // logging is not set up yet.
            let _ = unsafe { libc::mallopt(param, value) };
        };
        set(
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
        );
        set(
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        );
    }
}

/// What the process heap holds (glibc's `mallinfo2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes handed out and not yet freed (heap chunks plus mmapped ones).
    pub in_use: usize,
    /// Bytes free inside the heap: memory freed by the process that glibc
    /// keeps (up to the trim threshold per arena, plus fragmentation)
    /// rather than returning it to the kernel.
    pub free: usize,
}

/// The heap's current figures; `None` where the allocator is not glibc's.
/// Walks every arena's free lists under their locks: for a scrape, not for
/// a hot path.
pub fn heap_stats() -> Option<HeapStats> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads allocator state under its locks.
        let m = unsafe { libc::mallinfo2() };
        Some(HeapStats {
            in_use: m.uordblks + m.hblkhd,
            free: m.fordblks,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Decides when free heap memory is worth returning to the kernel.
///
/// glibc's figure for free memory does not drop after a trim (the chunks
/// stay free, only their pages go back to the kernel), so the decision
/// looks at what was freed since: `baseline` is the free figure right
/// after the last trim, lowered whenever free memory is reused (its pages
/// are resident again); free memory above it is memory freed since, still
/// resident.
#[derive(Debug, Default)]
pub struct Reclaimer {
    baseline: usize,
}

impl Reclaimer {
    /// Given the heap's free bytes now, whether to trim (more than `limit`
    /// freed since the last trim). Call [`Self::trimmed`] after trimming.
    pub fn should_trim(&mut self, free: usize, limit: usize) -> bool {
        self.baseline = self.baseline.min(free);
        free - self.baseline > limit
    }

    /// Record a trim that left `free` bytes free (now not resident).
    pub fn trimmed(&mut self, free: usize) {
        self.baseline = free;
    }
}

/// Return free heap memory to the kernel (`malloc_trim`). Does nothing
/// where the allocator is not glibc's.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory, under the allocator's
    // locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every [`RECLAIM_EVERY`], trim the heap when more than
/// [`HEAP_FREE_LIMIT`] was freed since the last trim ([`Reclaimer`]),
/// counting each trim in `trims`; until `stop`. For a thread of its own:
/// a trim locks each arena in turn.
pub fn reclaim_loop(trims: hepflow_sdk::metrics::Counter, stop: &std::sync::atomic::AtomicBool) {
    let mut reclaimer = Reclaimer::default();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(RECLAIM_EVERY);
        let Some(before) = heap_stats() else { return };
        if reclaimer.should_trim(before.free, HEAP_FREE_LIMIT) {
            trim();
            trims.inc();
            if let Some(after) = heap_stats() {
                reclaimer.trimmed(after.free);
            }
        }
    }
}

/// The process's resident set size in bytes (Linux: `/proc/self/statm`).
pub fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * usize::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heap figures are the whole process's: the tests that move tens
    /// of MiB through the heap take turns (the other tests of this binary
    /// allocate a few MiB at most).
    static HEAP_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn heap_turn() -> std::sync::MutexGuard<'static, ()> {
        HEAP_TESTS.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn heap_stats_see_a_live_allocation() {
        let _turn = heap_turn();
        let before = heap_stats().unwrap();
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        let during = heap_stats().unwrap();
        // 8 MiB of slack for what other tests free meanwhile.
        assert!(
            during.in_use >= before.in_use + (56 << 20),
            "{before:?} -> {during:?}"
        );
        drop(block);
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_trim_returns_the_pages_of_free_heap_memory() {
        let _turn = heap_turn();
        // Many small blocks (below the mmap threshold, so in the heap),
        // touched; every other one freed: 32 MiB of holes that glibc's own
        // trimming (of the heap's top) cannot return.
        let mut blocks: Vec<Vec<u8>> = (0..4096).map(|_| vec![7u8; 16 * 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .drain(..)
            .enumerate()
            .filter_map(|(i, b)| (i % 2 == 0).then_some(b))
            .collect();
        let free = heap_stats().unwrap().free;
        assert!(free >= 30 << 20, "freed 32 MiB, heap free {free}");
        let mut r = Reclaimer::default();
        assert!(r.should_trim(free, 16 << 20));
        let before = resident_bytes().unwrap();
        trim();
        let after = resident_bytes().unwrap();
        assert!(
            after + (8 << 20) <= before,
            "the holes' pages went back to the kernel: {before} -> {after}"
        );
        drop(kept);
    }

    #[test]
    fn the_reclaimer_counts_what_was_freed_since_the_last_trim() {
        let limit = 64;
        let mut r = Reclaimer::default();
        assert!(!r.should_trim(50, limit));
        assert!(r.should_trim(100, limit));
        // After a trim the free figure stays up, but nothing is resident.
        r.trimmed(100);
        assert!(!r.should_trim(100, limit));
        assert!(
            !r.should_trim(150, limit),
            "50 freed since: under the limit"
        );
        assert!(r.should_trim(170, limit), "70 freed since");
        r.trimmed(170);
        // Reused (faulted in again), then freed again: resident again.
        assert!(!r.should_trim(20, limit));
        assert!(r.should_trim(170, limit), "150 freed since the reuse");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn resident_bytes_is_at_least_what_is_touched() {
        let block = vec![1u8; 8 << 20];
        let rss = resident_bytes().unwrap();
        assert!(rss >= 8 << 20, "{rss}");
        drop(block);
    }
}
