//! A fast, non-cryptographic hasher for the model's small maps (script names, abstract names): the model's
//! keys come from the script, not from an adversary, so SipHash's flood resistance buys nothing here, and it
//! was an eighth of a step's time. This is the multiply-rotate hash of rustc's `FxHasher`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// One word of state, folded with each input word.
#[derive(Clone, Copy, Default)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((w, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*w));
            bytes = rest;
        }
        if let Some((w, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*w)));
            bytes = rest;
        }
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn h<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut s = FxHasher::default();
        t.hash(&mut s);
        s.finish()
    }

    #[test]
    fn distinct_names_hash_apart_and_equal_names_together() {
        let names: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
        let mut seen: Vec<u64> = names.iter().map(|n| h(n.as_str())).collect();
        assert_eq!(h("s1"), h(&"s1".to_string()));
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), names.len());
        // Every byte counts, also past the first word and in the tail.
        assert_ne!(h(&b"abcdefgh-1"[..]), h(&b"abcdefgh-2"[..]));
        assert_ne!(h(&b"abcdefghijkl"[..]), h(&b"abcdefghijkm"[..]));
    }

    #[test]
    fn every_integer_width_is_hashed() {
        // The map's keys hash their lengths with write_usize, the abstract-name keys their type with write_u32.
        assert_ne!(h(&1u32), h(&2u32));
        assert_ne!(h(&1u64), h(&2u64));
        assert_ne!(h(&1usize), h(&2usize));
        assert_ne!(h(&1u8), h(&2u8));
        assert_ne!(h(&b"ab"[..]), h(&b"ab\0"[..]));
    }

    #[test]
    fn the_map_finds_what_it_holds() {
        let mut m: FxHashMap<String, usize> = FxHashMap::default();
        for i in 0..500 {
            m.insert(format!("s{i}"), i);
        }
        assert!((0..500).all(|i| m[&format!("s{i}")] == i));
        assert!(!m.contains_key("s500"));
    }
}
