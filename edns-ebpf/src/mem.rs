//! Copies between packet and map memory in whole words (the verifier
//! allows misaligned access there, never on the stack), and map keys
//! written on the stack in words.

use core::mem::MaybeUninit;

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

/// A map key on the stack, 8-byte aligned for [`store_words`].
#[repr(C, align(8))]
pub struct Aligned<T>(pub T);

/// Writes `words` into `key` (on the stack) as 8-byte stores, two words
/// each, and a 4-byte one for an odd last word, and returns the key. Map
/// lookups read their key in 4- and 8-byte words (hashes, tries, compares),
/// and a load spanning several narrower stores — how a plain copy of a
/// `[u8; 16]` writes it, byte by byte — waits until they retire: ~11 ns of
/// a persistence hit. Volatile: LLVM would otherwise merge or split them.
/// (An out-parameter: a key returned by value is copied again.)
#[inline(always)]
pub fn store_words<'a, T, const N: usize>(key: &'a mut MaybeUninit<Aligned<T>>, words: [u32; N]) -> &'a T {
    const { assert!(4 * N == core::mem::size_of::<T>()) };
    let p = key.as_mut_ptr() as *mut u64;
    let mut i = 0;
    while i + 1 < N {
        unsafe { core::ptr::write_volatile(p.add(i / 2), words[i] as u64 | (words[i + 1] as u64) << 32) };
        i += 2;
    }
    if i < N {
        unsafe { core::ptr::write_volatile(p.add(i / 2) as *mut u32, words[i]) };
    }
    unsafe { &key.assume_init_ref().0 }
}

/// The four 4-byte words of an address, in memory order.
#[inline(always)]
pub fn addr_words(a: &[u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// An LPM trie key for one address (all 128 bits), written in words into `key`.
#[inline(always)]
pub fn host_key<'a>(key: &'a mut MaybeUninit<Aligned<Key<[u8; 16]>>>, a: &[u8; 16]) -> &'a Key<[u8; 16]> {
    let [a0, a1, a2, a3] = addr_words(a);
    store_words(key, [128, a0, a1, a2, a3])
}
