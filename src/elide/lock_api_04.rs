//! lock_api 0.4's raw traits for the raw elided locks (feature
//! `lock_api_04`), for code on parking_lot 0.12 and the rest of the
//! ecosystem still on lock_api 0.4.
//!
//! lock_api 0.4 keeps no guard state: `unlock(&self)` must find out how the
//! section got in. It asks the thread: a section that entered as a
//! transaction is in this thread's held set and `xtest` is true; any other
//! holds the real lock (whose guard state is a stateless marker). Under the
//! HTM model a promoted section is found through the model first. What is
//! lost against the 0.5 traits: injected rollbacks never pick such a
//! section.

use super::{held, settle, Entered, GuardState, Held, RawElidedMutex, RawElidedRwLock};

/// Drops a guard state whose section goes on: a transaction is remembered
/// by the held set and the hardware, a real hold by the real lock.
fn forget_state<G>(state: GuardState<G>) {
    std::mem::forget(state);
}

/// Rebuilds the guard state of the section this thread holds on `key`.
fn recall_state<G: Default + 'static>(key: Held) -> GuardState<G> {
    if let Some(rtm) = crate::runtime::runtime().rtm {
        let mut state = GuardState::transaction(Entered {
            rtm,
            rollback: false,
        });
        // Under the HTM model the section may have been promoted: then this
        // is its real lock's state.
        settle(&mut state, key);
        if !state.is_transactional() || (rtm.test() && held::contains(key)) {
            return state;
        }
        std::mem::forget(state);
    }
    GuardState::locked(G::default())
}

// SAFETY: the 0.5 implementation does the work; the guard state it needs
// at unlock is rebuilt by `recall_state` (see the module docs).
unsafe impl lock_api_04::RawMutex for RawElidedMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawElidedMutex = <RawElidedMutex as lock_api::RawMutex>::INIT;

    type GuardMarker = lock_api_04::GuardNoSend;

    fn lock(&self) {
        forget_state(lock_api::RawMutex::lock(self));
    }

    fn try_lock(&self) -> bool {
        lock_api::RawMutex::try_lock(self)
            .map(forget_state)
            .is_some()
    }

    unsafe fn unlock(&self) {
        let state = recall_state(self.key());
        // SAFETY: the caller holds the lock; `state` says how.
        unsafe { lock_api::RawMutex::unlock(self, state) }
    }

    fn is_locked(&self) -> bool {
        lock_api::RawMutex::is_locked(self)
    }
}

// SAFETY: as for the mutex.
unsafe impl lock_api_04::RawRwLock for RawElidedRwLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawElidedRwLock = <RawElidedRwLock as lock_api::RawRwLock>::INIT;

    type GuardMarker = lock_api_04::GuardNoSend;

    fn lock_shared(&self) {
        forget_state(lock_api::RawRwLock::lock_shared(self));
    }

    fn try_lock_shared(&self) -> bool {
        lock_api::RawRwLock::try_lock_shared(self)
            .map(forget_state)
            .is_some()
    }

    unsafe fn unlock_shared(&self) {
        let state = recall_state(Held::new(self, false));
        // SAFETY: the caller holds the lock shared; `state` says how.
        unsafe { lock_api::RawRwLock::unlock_shared(self, state) }
    }

    fn lock_exclusive(&self) {
        forget_state(lock_api::RawRwLock::lock_exclusive(self));
    }

    fn try_lock_exclusive(&self) -> bool {
        lock_api::RawRwLock::try_lock_exclusive(self)
            .map(forget_state)
            .is_some()
    }

    unsafe fn unlock_exclusive(&self) {
        let state = recall_state(Held::new(self, true));
        // SAFETY: the caller holds the lock exclusively; `state` says how.
        unsafe { lock_api::RawRwLock::unlock_exclusive(self, state) }
    }

    fn is_locked(&self) -> bool {
        lock_api::RawRwLock::is_locked(self)
    }

    fn is_locked_exclusive(&self) -> bool {
        lock_api::RawRwLock::is_locked_exclusive(self)
    }
}
