//! The one way the edge takes a `std::sync::Mutex`.
//!
//! A panic while a lock is held poisons it. Every critical section in the edge is a few field
//! updates, pushes or removals that leave the data consistent at each step, so a poisoned lock
//! still guards valid data; refusing it would turn one connection's panic into every other
//! connection's panic. So the guard is taken either way.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering the guard from a poisoned lock (see the module docs).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
