//! Copies between packet and map memory in whole words (the verifier
//! allows misaligned access there, never on the stack), and map keys
//! written on the stack in words.

use aya_ebpf::maps::lpm_trie::Key;

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

/// Writes `words` to the stack at `p` as 4-byte stores. Map lookups read
/// their key in words (hashes, tries, compares), and a load spanning
/// several byte stores — how a plain copy of a `[u8; 16]` writes it —
/// waits until they retire. Volatile: LLVM would merge neighbours into
/// 8-byte stores, which the verifier refuses at 4-aligned stack offsets
/// (where a key's address usually lies).
#[inline(always)]
pub fn store_words<const N: usize>(p: *mut u32, words: [u32; N]) {
    let mut i = 0;
    while i < N {
        unsafe { core::ptr::write_volatile(p.add(i), words[i]) };
        i += 1;
    }
}

/// The four 4-byte words of an address, in memory order.
#[inline(always)]
pub fn addr_words(a: &[u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// An LPM trie key for one address (all 128 bits), written in words into
/// `key` (an out-parameter: a key returned by value is copied again).
#[inline(always)]
pub fn host_key<'a>(key: &'a mut core::mem::MaybeUninit<Key<[u8; 16]>>, a: &[u8; 16]) -> &'a Key<[u8; 16]> {
    let [a0, a1, a2, a3] = addr_words(a);
    store_words(key.as_mut_ptr() as *mut u32, [128, a0, a1, a2, a3]);
    unsafe { key.assume_init_ref() }
}
