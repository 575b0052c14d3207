//! Internet checksum (RFC 1071) sums. A sum here is of big-endian 16-bit
//! words, as the checksum field wants, but is taken 8 bytes at a time
//! (RFC 1071 §2(B)): little-endian 64-bit words, whose value modulo 0xffff
//! is the sum of their four 16-bit lanes (2^16 is 1 modulo 0xffff). Sums
//! are kept modulo 0xffff, not folded to 16 bits: swapping a 16-bit sum's
//! bytes is multiplying it by 256 modulo 0xffff, so a little-endian sum
//! becomes the big-endian one by a shift, and only the final value is
//! folded. Bytes at an odd offset of the segment pair the other way round:
//! their sum is the little-endian one itself.

/// `w` modulo 0xffff, up to a multiple of it: its two 32-bit halves added
/// (under 2^33).
#[inline(always)]
pub fn lanes(w: u64) -> u64 {
    (w & 0xffff_ffff) + (w >> 32)
}

/// `s` folded to 16 bits with end-around carry (s < 2^48: three folds).
#[inline(always)]
pub fn fold16(s: u64) -> u32 {
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u32
}

/// A little-endian sum of [`lanes`] (of at most 2^38: 128 bytes' worth)
/// as the big-endian sum, modulo 0xffff and under 2^17, of bytes that
/// start at offset `at` of the segment (only its parity matters). A shift
/// by 0 or 8 bits, not a branch: a branch on the parity would double the
/// verifier's states at every sum.
#[inline(always)]
pub fn finish(le: u64, at: usize) -> u32 {
    let s = le << (8 * ((at as u32 & 1) ^ 1));
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u32
}

/// Sum of the bytes of `b` (zero-padded to a whole 16-bit word; N ≤ 128),
/// which start at offset `at` of the segment (only its parity matters),
/// modulo 0xffff and under 2^17: many add up in a u32. An array
/// built in registers costs a few shifts, one in packet or map memory a
/// load per 8 bytes; never pass one on the stack, which the verifier wants
/// aligned.
#[inline(always)]
pub fn sum<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    const { assert!(N <= 128) };
    let mut le = 0u64;
    let mut i = 0;
    while i < N {
        let mut w = [0u8; 8];
        let mut k = 0;
        while k < 8 && i + k < N {
            w[k] = b[i + k];
            k += 1;
        }
        le += lanes(u64::from_le_bytes(w));
        i += 8;
    }
    finish(le, at)
}

/// True when a sum over a whole header or segment, checksum field
/// included, verifies.
#[inline(always)]
pub fn verifies(s: u32) -> bool {
    fold16(s as u64) == 0xffff
}

/// The checksum field for a sum of everything else: its complement.
#[inline(always)]
pub fn complement(s: u32) -> u16 {
    !(fold16(s as u64) as u16)
}
