//! Software prefetch, the one place with an architecture intrinsic.

/// Asks the CPU to start loading the cache line holding `*p`. A hint only.
#[inline(always)]
pub fn prefetch_read<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: prefetch never faults and never dereferences in the abstract
        // machine; `p` is a valid reference anyway. SSE is part of the x86_64 baseline.
        unsafe { _mm_prefetch(p as *const T as *const i8, _MM_HINT_T0) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = p;
    }
}
