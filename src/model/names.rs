//! The script's names and what each refers to: a small map from name to handle. Names are short (`s0`,
//! `client`), so a key of up to 23 bytes is held inline: no allocation when a socket is named, none freed when
//! the model is dropped (a heap string per name was a tenth of a step's time).

use super::fxhash::FxHashMap;
use super::Handle;
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

const INLINE: usize = 23;

/// A name as a map key: inline up to 23 bytes, on the heap beyond.
#[derive(Clone, Debug)]
enum Key {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    fn new(name: &str) -> Key {
        let b = name.as_bytes();
        if b.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Key::Inline {
                len: b.len() as u8,
                buf,
            }
        } else {
            Key::Heap(b.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, buf } => &buf[..usize::from(*len)],
            Key::Heap(b) => b,
        }
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

// Hash and equality are those of the bytes, as `Borrow` requires.
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.bytes().hash(h);
    }
}

impl PartialEq for Key {
    fn eq(&self, o: &Key) -> bool {
        self.bytes() == o.bytes()
    }
}

impl Eq for Key {}

/// Every name the script has created, open or closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Names(FxHashMap<Key, Handle>);

impl Default for Names {
    /// Room for a typical script's names without growing.
    fn default() -> Names {
        Names(FxHashMap::with_capacity_and_hasher(16, Default::default()))
    }
}

impl Names {
    pub fn get(&self, name: &str) -> Option<Handle> {
        self.0.get(name.as_bytes()).copied()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name.as_bytes())
    }

    /// Points `name` at `h` (a name taken again forgets what it named).
    pub fn set(&mut self, name: &str, h: Handle) {
        match self.0.get_mut(name.as_bytes()) {
            Some(old) => *old = h,
            None => {
                self.0.insert(Key::new(name), h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_are_found_and_kept_apart() {
        let mut n = Names::default();
        let long = "a".repeat(40);
        let long2 = format!("{}b", "a".repeat(39));
        n.set("s0", Handle::Open(0));
        n.set(&long, Handle::Open(1));
        n.set(&"x".repeat(23), Handle::Open(2));
        n.set(&"x".repeat(24), Handle::Open(3));
        assert_eq!(n.get("s0"), Some(Handle::Open(0)));
        assert_eq!(n.get(&long), Some(Handle::Open(1)));
        assert_eq!(n.get(&long2), None);
        assert_eq!(n.get(&"x".repeat(23)), Some(Handle::Open(2)));
        assert_eq!(n.get(&"x".repeat(24)), Some(Handle::Open(3)));
        assert_eq!(n.get("s"), None);
        assert_eq!(n.get(""), None);
        n.set("s0", Handle::Closed);
        assert_eq!(n.get("s0"), Some(Handle::Closed));
        assert!(n.contains("s0") && !n.contains("s1"));
    }

    #[test]
    fn keys_are_equal_exactly_when_their_bytes_are() {
        assert_eq!(Key::new("s0"), Key::new("s0"));
        assert_eq!(Key::new(&"y".repeat(30)), Key::new(&"y".repeat(30)));
        assert_ne!(Key::new("s0"), Key::new("s1"));
        assert_ne!(Key::new(&"y".repeat(23)), Key::new(&"y".repeat(24)));
    }
}
