//! glibc malloc settings for the receive path.
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
//! An operator's own `MALLOC_TRIM_THRESHOLD_` / `MALLOC_MMAP_THRESHOLD_`
//! environment variables win: the setting each names is left alone.

/// Free memory an arena keeps instead of returning it to the kernel.
pub const TRIM_THRESHOLD: usize = 32 * 1024 * 1024;
/// Allocations at least this large get their own mapping.
pub const MMAP_THRESHOLD: usize = 4 * 1024 * 1024;

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
