//! Copy-on-write parts of a model that the states the collector leaves (see `gc`) nearly always share: the
//! parameters, the names, the file system, the abstract names. Cloning a model shares them; the first
//! change to a shared one copies it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// `T`, shared between clones until one of them changes it.
#[derive(Clone, Debug, Default)]
pub struct Shared<T: Clone>(Arc<T>);

impl<T: Clone> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(value))
    }
}

impl<T: Clone> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    /// Copies the value first if another clone shares it.
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

/// Equal when shared (without comparing), else when the values are equal.
impl<T: Clone + PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl<T: Clone + Eq> Eq for Shared<T> {}

#[cfg(test)]
mod tests {
    use super::Shared;

    #[test]
    fn a_change_copies_a_shared_value_and_leaves_the_other_clone_alone() {
        let a = Shared::new(vec![1, 2]);
        let mut b = a.clone();
        assert_eq!(a, b);
        b.push(3);
        assert_eq!(*a, [1, 2]);
        assert_eq!(*b, [1, 2, 3]);
        assert_ne!(a, b);
        // Equal values in different allocations are equal.
        assert_eq!(Shared::new(vec![1, 2]), a);
    }
}
