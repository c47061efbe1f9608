//! Returning freed heap memory to the system.

/// Gives the heap's free pages back to the system (glibc's `malloc_trim`), in every arena.
///
/// Why: compiling a module with Cranelift allocates tens of MB that live only while it
/// compiles, on whichever threads load the controllers. glibc keeps such freed pages in its
/// per-thread arenas, so without the trim a cold start keeps them resident as if in use, and
/// ends far above a warm start (compiled code loaded from the cache, nothing compiled).
/// Called once after a batch of loads, not per request: a trim walks every arena.
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
