//! Returning freed heap memory to the system.

/// Gives the heap's free pages back to the system (glibc's `malloc_trim`), in every arena.
///
/// Why: compiling a module with Cranelift allocates tens of MB that live only while it
/// compiles, on whichever threads load the controllers. glibc keeps such freed pages in its
/// per-thread arenas, so a cold start kept them resident as if in use: with 20 controllers
/// cupd held 96 MiB once ready against 63 MiB after a warm start (compiled code loaded from
/// the cache, nothing compiled); with this trim a cold start holds 83 MiB (bench/start.sh).
/// Called once after a batch of loads, not per request: a trim walks every arena (≈ 1–2 ms).
// std has no binding for malloc_trim; libc is the only way to it.
#[allow(unsafe_code)]
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator itself holds as free; it takes
    // the allocator's own locks and touches no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
