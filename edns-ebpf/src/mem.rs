//! Copies between packet and map memory in whole words (the verifier
//! allows misaligned access there, never on the stack).

/// Writes `b` at `p` (packet or map memory) 8, 4, 2 and 1 bytes at a
/// time. A plain copy becomes a call to a byte-at-a-time memmove, or to
/// memset for an array with runs of zeros.
#[inline(always)]
pub fn copy<const N: usize>(p: *mut [u8; N], b: &[u8; N]) {
    let (p, b) = (p as *mut u8, b.as_ptr());
    let mut i = 0;
    unsafe {
        while i + 8 <= N {
            core::ptr::write_unaligned(p.add(i) as *mut u64, core::ptr::read_unaligned(b.add(i) as *const u64));
            i += 8;
        }
        if i + 4 <= N {
            core::ptr::write_unaligned(p.add(i) as *mut u32, core::ptr::read_unaligned(b.add(i) as *const u32));
            i += 4;
        }
        if i + 2 <= N {
            core::ptr::write_unaligned(p.add(i) as *mut u16, core::ptr::read_unaligned(b.add(i) as *const u16));
            i += 2;
        }
        if i < N {
            *p.add(i) = *b.add(i);
        }
    }
}
