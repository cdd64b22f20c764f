//! Software prefetch, used by [`crate::PolicyCache::retrieve_many`] so that the cache misses of
//! independent lookups overlap. This is the only `unsafe` code in the crate.

/// Asks the CPU to start loading the cache line holding `p` into all cache levels.
///
/// A hint only: it reads nothing the program can observe, and it never faults, whatever the
/// address. On targets other than x86_64 it does nothing.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `_mm_prefetch` (PREFETCHT0) is `unsafe` only because it is a `target_feature`
    // function; SSE is part of the x86_64 baseline, so the feature is always present. The
    // instruction does not dereference `p` in the language sense: it cannot fault (a bad
    // address is silently dropped) and has no effect on program state.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
