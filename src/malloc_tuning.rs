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
//! freed after a burst stayed with ~a dozen arenas: peak RSS 306 MiB in
//! the every-sink run of `benches/load.py`, 216 MiB with
//! [`arena_max`] = one arena per core, and TCP ingest no slower (mean of
//! 3 alternating runs 1.51 M against 1.38 M msg/s; BENCHMARKS.md).
//!
//! An operator's own `MALLOC_TRIM_THRESHOLD_` / `MALLOC_MMAP_THRESHOLD_` /
//! `MALLOC_ARENA_MAX` environment variables win: the setting each names is
//! left alone.

/// Free memory an arena keeps instead of returning it to the kernel.
pub const TRIM_THRESHOLD: usize = 32 * 1024 * 1024;
/// Allocations at least this large get their own mapping.
pub const MMAP_THRESHOLD: usize = 4 * 1024 * 1024;

/// Heap arenas at most: one per core (glibc's default is 8 per core).
pub fn arena_max() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

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
        set("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, arena_max());
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

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn heap_stats_see_a_live_allocation() {
        let before = heap_stats().unwrap();
        let block = vec![1u8; 1 << 20];
        let during = heap_stats().unwrap();
        assert!(
            during.in_use >= before.in_use + (1 << 20) - 4096,
            "{before:?} -> {during:?}"
        );
        drop(block);
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
