//! Small things every module of the crate shares.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, carrying on after a panic elsewhere: every structure behind these locks
/// stays consistent between operations, so one bug does not stop every later request.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes the cache drain thread (non-blocking; wake-ups coalesce).
#[derive(Clone)]
pub(crate) struct Wake(pub(crate) SyncSender<()>);

impl Wake {
    pub(crate) fn wake(&self) {
        // A full channel already holds a wake-up, and a closed one means the service stopped.
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}
