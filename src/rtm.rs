//! The RTM instructions, and the only file in the crate with `asm!`.
//!
//! `xbegin`, `xend`, `xabort`, `xtest` and the TSXLDTRK pair are reached
//! through [`Rtm`], a zero-sized token that exists only where detection
//! ([`crate::htm`]) found RTM usable: on a CPU without RTM these instructions
//! raise `#UD`, so holding an `Rtm` is the proof that executing them is sound.
//! Builds without `cfg(hytm_rtm)` (not x86_64, Miri, loom) get a stub whose
//! token cannot be constructed, so every caller compiles everywhere and the
//! hardware path is simply never taken.
//!
//! Builds with `RUSTFLAGS="--cfg hytm_model"` get the third backend, the
//! HTM model: the same token and instructions, simulated in software on any
//! CPU, so that the hardware paths run (and their tests fail when they are
//! wrong) on machines without TSX. Its module, `rtm::model` (present in
//! those builds only), says what it models and what it cannot show. [`MODEL`] tells which backend a build has.
//!
//! [`AbortStatus`] decodes the status `xbegin` reports after an abort; it is
//! plain data and available on every target.

use core::fmt;

/// Explicit abort codes reserved by the runtime (`0xf0..=0xff`).
///
/// They stay distinct so that `perf` and the statistics can tell them apart.
/// User code that calls [`Rtm::abort`] should use codes below `0xf0`.
pub mod code {
    /// The elided lock was held when the transaction subscribed to it.
    /// 0xff is the code glibc and `perf`'s TSX reports use for this.
    pub const LOCK_BUSY: u8 = 0xff;
    /// A software transaction was committing (NOrec `seq` odd) at subscription.
    pub const SW_COMMITTING: u8 = 0xfe;
    /// An injected abort (`HYTM_INJECT` with cause `explicit`): reported
    /// before the body runs, as if the hardware had aborted.
    pub const INJECTED: u8 = 0xfd;
    /// The body panicked; the guard aborted instead of committing.
    pub const PANIC: u8 = 0xfc;
    /// `try_lock` inside a transaction found the lock held by the same transaction.
    pub const NESTED_TRY_LOCK: u8 = 0xfb;
    /// The body asked for an irrevocable (serial) run, which hardware cannot give.
    pub const NEEDS_SERIAL: u8 = 0xfa;
    /// A lock that a *nested* section subscribed to was busy. The enclosing
    /// loop cannot wait on that lock's word (whatever the transaction wrote
    /// to name it is rolled back), so it backs off, uncharged, and retries.
    pub const NESTED_BUSY: u8 = 0xf9;
    /// The body cancelled or asked to restart in hardware: the software path
    /// gives the definitive answer. Not charged to the retry budget.
    pub const CANCELLED: u8 = 0xf8;
    /// An injected rollback (`HYTM_INJECT=rollback:<p>`): the body ran to its
    /// end inside the transaction, which then aborted instead of committing,
    /// so none of its writes may remain.
    pub const ROLLBACK: u8 = 0xf7;
    /// The section must run under the real lock: it waits on (or notifies)
    /// a condition variable, which a transaction cannot do.
    pub const NEEDS_LOCK: u8 = 0xf6;
    /// First code reserved for the runtime.
    pub const RESERVED_START: u8 = 0xf0;

    /// A short human name for a runtime code, `None` for user codes.
    ///
    /// ```
    /// assert_eq!(hytm::rtm::code::name(0xff), Some("lock busy"));
    /// assert_eq!(hytm::rtm::code::name(0x12), None);
    /// ```
    pub const fn name(code: u8) -> Option<&'static str> {
        match code {
            LOCK_BUSY => Some("lock busy"),
            SW_COMMITTING => Some("software tx committing"),
            INJECTED => Some("injected abort"),
            PANIC => Some("panic in body"),
            NESTED_TRY_LOCK => Some("nested try_lock"),
            NEEDS_SERIAL => Some("needs serial"),
            NESTED_BUSY => Some("nested lock busy"),
            CANCELLED => Some("body cancelled"),
            ROLLBACK => Some("rollback injected"),
            NEEDS_LOCK => Some("needs the real lock"),
            RESERVED_START..=0xff => Some("runtime reserved"),
            _ => None,
        }
    }
}

/// The status word `xbegin` leaves in EAX when a transaction aborts.
///
/// Bits (Intel SDM vol. 1, 16.3.5): 0 explicit (`xabort`), 1 retry may
/// succeed, 2 conflict, 3 capacity, 4 debug breakpoint, 5 abort in a nested
/// transaction, 24..31 the `xabort` code. A status of 0 carries no cause:
/// interrupts, VM exits, syscalls, page faults and unsupported instructions
/// all report it.
///
/// ```
/// use hytm::rtm::AbortStatus;
/// let s = AbortStatus::from_raw(0xff00_0001);
/// assert!(s.is_explicit());
/// assert_eq!(s.explicit_code(), Some(0xff));
/// assert_eq!(s.to_string(), "explicit 0xff (lock busy)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortStatus(u32);

impl AbortStatus {
    /// `xabort` was executed; the code is in bits 24..31.
    pub const EXPLICIT: u32 = 1 << 0;
    /// The hardware thinks a retry may succeed.
    pub const RETRY: u32 = 1 << 1;
    /// Another logical processor touched the read or write set.
    pub const CONFLICT: u32 = 1 << 2;
    /// The read or write set overflowed the tracking resources.
    pub const CAPACITY: u32 = 1 << 3;
    /// A debug breakpoint was hit.
    pub const DEBUG: u32 = 1 << 4;
    /// The abort happened in a nested transaction.
    pub const NESTED: u32 = 1 << 5;

    /// Wraps a raw EAX value.
    ///
    /// ```
    /// use hytm::rtm::AbortStatus;
    /// // A footprint overflow: CAPACITY without RETRY, so retrying rarely helps.
    /// let s = AbortStatus::from_raw(0b1000);
    /// assert!(s.is_capacity() && !s.may_retry());
    /// assert_eq!(s.raw(), AbortStatus::CAPACITY);
    /// ```
    #[inline]
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The status of `xabort code`, as the hardware reports it outside any
    /// nesting. Used for synthetic statuses (injection, tests).
    ///
    /// ```
    /// let s = hytm::rtm::AbortStatus::explicit(0x42);
    /// assert_eq!(s.explicit_code(), Some(0x42));
    /// ```
    #[inline]
    pub const fn explicit(code: u8) -> Self {
        Self(((code as u32) << 24) | Self::EXPLICIT)
    }

    /// The raw EAX value.
    ///
    /// ```
    /// use hytm::rtm::AbortStatus;
    /// // The code sits in the top byte, next to the EXPLICIT bit.
    /// assert_eq!(AbortStatus::explicit(0xff).raw(), 0xff00_0001);
    /// ```
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// `xabort` caused the abort.
    ///
    /// ```
    /// use hytm::rtm::AbortStatus;
    /// assert!(AbortStatus::explicit(0x01).is_explicit());
    /// // Bits 24..31 mean nothing without bit 0.
    /// assert!(!AbortStatus::from_raw(0xff00_0000).is_explicit());
    /// ```
    #[inline]
    pub const fn is_explicit(self) -> bool {
        self.0 & Self::EXPLICIT != 0
    }

    /// The `xabort` code, if the abort was explicit.
    ///
    /// ```
    /// use hytm::rtm::{code, AbortStatus};
    /// let busy = AbortStatus::explicit(code::LOCK_BUSY);
    /// assert_eq!(busy.explicit_code(), Some(code::LOCK_BUSY));
    /// assert_eq!(AbortStatus::from_raw(AbortStatus::CONFLICT).explicit_code(), None);
    /// ```
    #[inline]
    pub const fn explicit_code(self) -> Option<u8> {
        if self.is_explicit() {
            Some((self.0 >> 24) as u8)
        } else {
            None
        }
    }

    /// The hardware suggests a retry may succeed.
    ///
    /// ```
    /// use hytm::rtm::AbortStatus;
    /// // CAPACITY with RETRY is contention evicting a line, not a too-large
    /// // footprint, so the policy retries it like a conflict.
    /// let contended = AbortStatus::from_raw(AbortStatus::CAPACITY | AbortStatus::RETRY);
    /// assert!(contended.may_retry());
    /// assert!(!AbortStatus::from_raw(AbortStatus::CAPACITY).may_retry());
    /// ```
    #[inline]
    pub const fn may_retry(self) -> bool {
        self.0 & Self::RETRY != 0
    }

    /// A data conflict with another logical processor.
    ///
    /// ```
    /// use hytm::rtm::{AbortCause, AbortStatus};
    /// let s = AbortStatus::from_raw(AbortStatus::CONFLICT | AbortStatus::RETRY);
    /// assert!(s.is_conflict());
    /// assert_eq!(s.cause(), AbortCause::Conflict);
    /// assert!(!AbortStatus::explicit(0xff).is_conflict());
    /// ```
    #[inline]
    pub const fn is_conflict(self) -> bool {
        self.0 & Self::CONFLICT != 0
    }

    /// The transaction's footprint overflowed.
    ///
    /// ```
    /// use hytm::rtm::{AbortCause, AbortStatus};
    /// let s = AbortStatus::from_raw(AbortStatus::CAPACITY | AbortStatus::CONFLICT);
    /// assert!(s.is_capacity() && s.is_conflict());
    /// // With both bits set, the abort is counted as capacity.
    /// assert_eq!(s.cause(), AbortCause::Capacity);
    /// ```
    #[inline]
    pub const fn is_capacity(self) -> bool {
        self.0 & Self::CAPACITY != 0
    }

    /// A debug breakpoint.
    ///
    /// ```
    /// use hytm::rtm::AbortStatus;
    /// let s = AbortStatus::from_raw(AbortStatus::DEBUG);
    /// assert!(s.is_debug());
    /// assert_eq!(s.to_string(), "debug");
    /// ```
    #[inline]
    pub const fn is_debug(self) -> bool {
        self.0 & Self::DEBUG != 0
    }

    /// Aborted inside a nested transaction.
    ///
    /// ```
    /// use hytm::rtm::{AbortCause, AbortStatus};
    /// // An `xabort 0x12` raised one nesting level down.
    /// let s = AbortStatus::from_raw(AbortStatus::explicit(0x12).raw() | AbortStatus::NESTED);
    /// assert!(s.is_nested());
    /// // The explicit code still decides the cause.
    /// assert_eq!(s.cause(), AbortCause::Explicit);
    /// ```
    #[inline]
    pub const fn is_nested(self) -> bool {
        self.0 & Self::NESTED != 0
    }

    /// No cause bit set: an interrupt, a VM exit, a syscall, a fault, or an
    /// instruction that cannot run transactionally.
    ///
    /// ```
    /// use hytm::rtm::{AbortCause, AbortStatus};
    /// let s = AbortStatus::from_raw(0);
    /// assert!(s.is_unexplained());
    /// assert_eq!(s.cause(), AbortCause::Other);
    /// // `xabort 0` is explained: the EXPLICIT bit is set.
    /// assert!(!AbortStatus::explicit(0).is_unexplained());
    /// ```
    #[inline]
    pub const fn is_unexplained(self) -> bool {
        self.0 & 0x3f == 0
    }

    /// The single cause used for counting and for the policy, by precedence:
    /// explicit, capacity, conflict, retry, debug, nested, other.
    ///
    /// Capacity goes before conflict because the hardware sets both when
    /// contention evicts a line, and the policy treats the pair as capacity.
    ///
    /// ```
    /// use hytm::rtm::{AbortCause, AbortStatus};
    /// assert_eq!(AbortStatus::from_raw(0).cause(), AbortCause::Other);
    /// assert_eq!(AbortStatus::from_raw(0b110).cause(), AbortCause::Conflict);
    /// ```
    pub const fn cause(self) -> AbortCause {
        if self.is_explicit() {
            AbortCause::Explicit
        } else if self.is_capacity() {
            AbortCause::Capacity
        } else if self.is_conflict() {
            AbortCause::Conflict
        } else if self.may_retry() {
            AbortCause::Retry
        } else if self.is_debug() {
            AbortCause::Debug
        } else if self.is_nested() {
            AbortCause::Nested
        } else {
            AbortCause::Other
        }
    }
}

impl fmt::Display for AbortStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unexplained() {
            return f.write_str("status 0 (interrupt, syscall, fault or unsupported instruction)");
        }
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if !std::mem::take(&mut first) {
                f.write_str(" ")?;
            }
            Ok(())
        };
        if let Some(code) = self.explicit_code() {
            sep(f)?;
            write!(f, "explicit {code:#04x}")?;
            if let Some(name) = code::name(code) {
                write!(f, " ({name})")?;
            }
        }
        for (bit, name) in [
            (Self::RETRY, "retry"),
            (Self::CONFLICT, "conflict"),
            (Self::CAPACITY, "capacity"),
            (Self::DEBUG, "debug"),
            (Self::NESTED, "nested"),
        ] {
            if self.0 & bit != 0 {
                sep(f)?;
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for AbortStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AbortStatus({:#010x}: {self})", self.0)
    }
}

/// The cause an abort is counted under; see [`AbortStatus::cause`].
///
/// ```
/// use hytm::rtm::{AbortCause, AbortStatus};
/// let cause = AbortStatus::from_raw(AbortStatus::RETRY).cause();
/// assert_eq!(cause, AbortCause::Retry);
/// // Display gives the name the tables and `HYTM_INJECT` use.
/// assert_eq!(cause.to_string(), "retry");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AbortCause {
    /// `xabort` (see [`AbortStatus::explicit_code`]).
    Explicit,
    /// The RETRY bit alone.
    Retry,
    /// A data conflict.
    Conflict,
    /// The footprint overflowed.
    Capacity,
    /// A debug breakpoint.
    Debug,
    /// An abort in a nested transaction.
    Nested,
    /// Status 0: interrupt, VM exit, syscall, fault, unsupported instruction.
    Other,
}

impl AbortCause {
    /// Every cause, in a fixed order (used for tables and counter arrays).
    pub const ALL: [AbortCause; 7] = [
        AbortCause::Explicit,
        AbortCause::Retry,
        AbortCause::Conflict,
        AbortCause::Capacity,
        AbortCause::Debug,
        AbortCause::Nested,
        AbortCause::Other,
    ];

    /// The lower-case name used by `HYTM_INJECT`, tables and JSON.
    ///
    /// ```
    /// assert_eq!(hytm::rtm::AbortCause::Other.name(), "other");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            AbortCause::Explicit => "explicit",
            AbortCause::Retry => "retry",
            AbortCause::Conflict => "conflict",
            AbortCause::Capacity => "capacity",
            AbortCause::Debug => "debug",
            AbortCause::Nested => "nested",
            AbortCause::Other => "other",
        }
    }

    /// Position in [`AbortCause::ALL`].
    ///
    /// ```
    /// use hytm::rtm::{AbortCause, AbortStatus};
    /// // Counting aborts per cause in a plain array, as the statistics do.
    /// let mut counts = [0u32; AbortCause::ALL.len()];
    /// for raw in [0, 0b110, 0b1000, 0xff00_0001, 0b100] {
    ///     counts[AbortStatus::from_raw(raw).cause().index()] += 1;
    /// }
    /// assert_eq!(counts[AbortCause::Conflict.index()], 2);
    /// assert_eq!(counts.iter().sum::<u32>(), 5);
    /// ```
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A status the hardware could report for this cause; used to inject
    /// aborts on machines without RTM.
    ///
    /// ```
    /// use hytm::rtm::AbortCause;
    /// for c in AbortCause::ALL {
    ///     assert_eq!(c.synthetic_status().cause(), c);
    /// }
    /// ```
    pub const fn synthetic_status(self) -> AbortStatus {
        AbortStatus::from_raw(match self {
            AbortCause::Explicit => ((code::INJECTED as u32) << 24) | AbortStatus::EXPLICIT,
            AbortCause::Retry => AbortStatus::RETRY,
            AbortCause::Conflict => AbortStatus::CONFLICT | AbortStatus::RETRY,
            AbortCause::Capacity => AbortStatus::CAPACITY,
            AbortCause::Debug => AbortStatus::DEBUG,
            AbortCause::Nested => AbortStatus::NESTED,
            AbortCause::Other => 0,
        })
    }
}

impl fmt::Display for AbortCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Proof that RTM instructions may be executed on this CPU.
///
/// Obtained from [`Rtm::get`], which returns `Some` only when detection found
/// RTM usable (CPUID bits, model denylist, live probe). Copy it freely; it is
/// zero-sized.
///
/// ```
/// if let Some(rtm) = hytm::rtm::Rtm::get() {
///     match rtm.begin() {
///         Ok(()) => {
///             assert!(rtm.test());
///             // SAFETY: begin() returned Ok, so we are inside the
///             // transaction this code opened.
///             unsafe { rtm.end() };
///         }
///         Err(status) => println!("aborted: {status}"),
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Rtm {
    _proof: imp::Proof,
}

impl Rtm {
    /// The token, if detection found RTM usable on this CPU.
    ///
    /// This reports the hardware only; it ignores [`crate::Mode`]. The
    /// runtime's own paths ask the runtime, which also honours the mode.
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// assert_eq!(Rtm::get().is_some(), hytm::htm().usable());
    /// match Rtm::get() {
    ///     Some(rtm) => assert!(!rtm.test()), // no transaction is open here
    ///     None => println!("no RTM: {}", hytm::htm().reason()),
    /// }
    /// ```
    #[inline]
    pub fn get() -> Option<Rtm> {
        if crate::htm().usable() {
            // SAFETY: detection said RTM is usable on this CPU.
            Some(unsafe { Rtm::new_unchecked() })
        } else {
            None
        }
    }

    /// Makes a token without detection.
    ///
    /// # Safety
    ///
    /// The CPU must support RTM (CPUID.07H.EBX.RTM) and must not always
    /// abort, or the instructions raise `#UD`. On builds without
    /// `cfg(hytm_rtm)` this function panics, since there is nothing to run.
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// if hytm::htm().usable() {
    ///     // SAFETY: detection found RTM supported and not always aborting.
    ///     let rtm = unsafe { Rtm::new_unchecked() };
    ///     assert!(!rtm.test());
    /// }
    /// ```
    #[inline]
    pub unsafe fn new_unchecked() -> Rtm {
        Rtm {
            _proof: imp::Proof::new(),
        }
    }

    /// `xbegin`: starts a transaction (or nests one level deeper).
    ///
    /// Returns `Ok(())` inside the transaction. When the transaction aborts,
    /// every register and memory effect since this call is undone and control
    /// returns from this call a second time, with `Err(status)`.
    ///
    /// # Errors
    ///
    /// The abort status, after the transaction aborted.
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// let mut hits = 0;
    /// if let Some(rtm) = Rtm::get() {
    ///     if rtm.begin().is_ok() {
    ///         hits += 1;
    ///         // SAFETY: inside the transaction the `begin` above opened.
    ///         unsafe { rtm.end() };
    ///     }
    /// }
    /// // An abort undid `hits += 1`: do the work on a fallback path instead.
    /// if hits == 0 {
    ///     hits += 1;
    /// }
    /// assert_eq!(hits, 1);
    /// ```
    #[inline(always)]
    pub fn begin(self) -> Result<(), AbortStatus> {
        // SAFETY: the token proves RTM is supported.
        let raw = unsafe { imp::xbegin() };
        if raw == imp::STARTED {
            Ok(())
        } else {
            Err(AbortStatus(raw))
        }
    }

    /// Runs `f` as one transaction: `xbegin`, `f`, `xend`. Returns `f`'s
    /// value if the transaction committed, the abort status if it aborted
    /// (then nothing `f` wrote remains, and `f` may have run partly).
    ///
    /// This is the form to prefer over [`Rtm::begin`]/[`Rtm::end`]: it is
    /// the only one the HTM model ([`MODEL`]) can run, since the model
    /// delivers an abort by unwinding to this call instead of resuming at
    /// `xbegin`.
    ///
    /// # Errors
    ///
    /// The abort status.
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// if let Some(rtm) = Rtm::get() {
    ///     let r = rtm.transaction(|| {
    ///         assert!(rtm.test());
    ///         rtm.abort::<0x42>();
    ///         7
    ///     });
    ///     // An interrupt may abort it first, with another status.
    ///     assert!(r.is_err());
    ///     assert_eq!(rtm.transaction(|| 7).unwrap_or(7), 7);
    /// }
    /// ```
    #[inline(always)]
    pub fn transaction<R>(self, f: impl FnOnce() -> R) -> Result<R, AbortStatus> {
        self.begin_scoped(|| {
            let r = f();
            // SAFETY: `begin_scoped` runs `f` inside the level it opened,
            // and an abort would not have returned here.
            unsafe { self.end() };
            r
        })
    }

    /// `xbegin`, then `f` inside the transaction, which stays open when
    /// `f` returns (the caller ends it). On hardware an abort resumes at
    /// the `xbegin` here; under the model it unwinds to here. Either way
    /// the result is `Err(status)`.
    #[inline(always)]
    pub(crate) fn begin_scoped<R>(self, f: impl FnOnce() -> R) -> Result<R, AbortStatus> {
        #[cfg(hytm_model)]
        {
            if !hytm_fallback::model::begin() {
                return Err(AbortStatus(0));
            }
            hytm_fallback::model::catch(hytm_fallback::model::Frame::Attempt, f)
                .map_err(AbortStatus)
        }
        #[cfg(not(hytm_model))]
        match self.begin() {
            Ok(()) => Ok(f()),
            Err(status) => Err(status),
        }
    }

    /// Runs `f`, a flat-nested `atomic` inside the caller's transaction.
    /// On hardware it is just `Ok(f())`: an abort goes to the outermost
    /// `xbegin`. Under the model it is `Err(status)` when the enclosing
    /// elided section was promoted by an abort inside `f` (the transaction
    /// is over and `f` must rerun outside it).
    #[inline(always)]
    pub(crate) fn catch_nested<R>(self, f: impl FnOnce() -> R) -> Result<R, AbortStatus> {
        #[cfg(hytm_model)]
        {
            hytm_fallback::model::catch(hytm_fallback::model::Frame::Nested, f).map_err(AbortStatus)
        }
        #[cfg(not(hytm_model))]
        Ok(f())
    }

    /// `xend`: commits the innermost transaction (the outermost commits to
    /// memory).
    ///
    /// # Safety
    ///
    /// Must be inside a transaction ([`Rtm::test`] is true): `xend` outside
    /// one raises `#GP`. And the innermost level must have been opened by
    /// the caller's own [`Rtm::begin`], not by an elided lock's guard, an
    /// `atomic` body or the runtime: ending theirs early leaves their data
    /// unprotected (a data race) and makes their own `xend` fault.
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// if let Some(rtm) = Rtm::get() {
    ///     if rtm.begin().is_ok() {
    ///         let inside = rtm.test();
    ///         // SAFETY: this level was opened by the `begin` just above.
    ///         unsafe { rtm.end() };
    ///         // Asserted after the commit: a panic inside would only abort.
    ///         assert!(inside && !rtm.test());
    ///     }
    /// }
    /// ```
    #[inline(always)]
    pub unsafe fn end(self) {
        // SAFETY: the token proves RTM is supported; the caller guarantees
        // we are in a transaction.
        unsafe { imp::xend() }
    }

    /// `xabort CODE`: aborts the transaction with an explicit code. Outside a
    /// transaction it does nothing and returns.
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// if let Some(rtm) = Rtm::get() {
    ///     match rtm.begin() {
    ///         // Control resumes at `begin` with the status; this never returns.
    ///         Ok(()) => rtm.abort::<0x42>(),
    ///         // An interrupt may abort the transaction before `xabort` runs.
    ///         Err(s) => assert!(s.explicit_code() == Some(0x42) || !s.is_explicit()),
    ///     }
    ///     rtm.abort::<0x42>(); // outside a transaction: no effect
    /// }
    /// ```
    #[inline(always)]
    pub fn abort<const CODE: u8>(self) {
        // SAFETY: the token proves RTM is supported; xabort outside a
        // transaction is a no-op.
        unsafe { imp::xabort::<CODE>() }
    }

    /// `xtest`: whether this thread is inside a hardware transaction.
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// if let Some(rtm) = Rtm::get() {
    ///     assert!(!rtm.test());
    ///     // Inside a body, `xtest` tells the hardware path from the software one.
    ///     assert!(hytm::atomic(|tx| Ok(tx.is_hardware() == rtm.test())));
    /// }
    /// ```
    #[inline(always)]
    pub fn test(self) -> bool {
        // SAFETY: the token proves RTM is supported.
        unsafe { imp::xtest() }
    }

    /// `xsusldtrk`: stop tracking loads in the read set (stores stay
    /// transactional) until [`Rtm::resume_load_tracking`].
    ///
    /// # Safety
    ///
    /// The CPU must report TSXLDTRK ([`crate::HtmInfo::cpu`]); otherwise the
    /// instruction raises `#UD`. While tracking is suspended, no data
    /// protected by hytm (an elided lock's data, a `TCell`) and no lock,
    /// `seq` or `sw_active` word may be loaded: such loads leave the read
    /// set, so the transaction could commit a torn read.
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// // Plain data, not protected by hytm: safe to read untracked.
    /// let table = [1u64, 2, 3];
    /// let mut sum = 0;
    /// if let Some(rtm) = Rtm::get().filter(|_| hytm::htm().cpu().tsxldtrk) {
    ///     if rtm.begin().is_ok() {
    ///         // SAFETY: TSXLDTRK is reported; only `table` is loaded untracked.
    ///         unsafe { rtm.suspend_load_tracking() };
    ///         sum = table.iter().sum();
    ///         // SAFETY: as above.
    ///         unsafe { rtm.resume_load_tracking() };
    ///         // SAFETY: this level was opened by the `begin` just above.
    ///         unsafe { rtm.end() };
    ///     }
    /// }
    /// assert!(sum == 0 || sum == 6);
    /// ```
    #[inline(always)]
    pub unsafe fn suspend_load_tracking(self) {
        // SAFETY: the caller guarantees TSXLDTRK.
        unsafe { imp::xsusldtrk() }
    }

    /// `xresldtrk`: resume tracking loads.
    ///
    /// # Safety
    ///
    /// As for [`Rtm::suspend_load_tracking`].
    ///
    /// ```
    /// use hytm::rtm::Rtm;
    /// if let Some(rtm) = Rtm::get().filter(|_| hytm::htm().cpu().tsxldtrk) {
    ///     if rtm.begin().is_ok() {
    ///         // SAFETY: TSXLDTRK is reported, and nothing is loaded while
    ///         // tracking is suspended.
    ///         unsafe {
    ///             rtm.suspend_load_tracking();
    ///             rtm.resume_load_tracking();
    ///             rtm.end(); // the `begin` above opened this level
    ///         }
    ///     }
    /// }
    /// ```
    #[inline(always)]
    pub unsafe fn resume_load_tracking(self) {
        // SAFETY: the caller guarantees TSXLDTRK.
        unsafe { imp::xresldtrk() }
    }
}

/// Whether this build runs RTM on the HTM model (`--cfg hytm_model`)
/// instead of the CPU's instructions.
///
/// ```
/// if hytm::rtm::MODEL {
///     assert!(hytm::htm().usable()); // the model is usable on every CPU
/// }
/// ```
pub const MODEL: bool = cfg!(hytm_model);

/// The HTM model's settings (`--cfg hytm_model` builds only).
///
/// The model runs hytm's hardware paths on any CPU: status words as the
/// SDM encodes them, flat nesting up to 7 levels, `TCell` accesses logged,
/// buffered and revalidated on every operation, commits written back
/// atomically, strong isolation against the software path, capacity in
/// distinct 64-byte lines. Elided sections are isolated from each other and
/// from real lock holders per lock (read sections share); an abort delivered inside
/// one promotes it to its real locks. It cannot show real capacity,
/// status-0 aborts (interrupts, faults, system calls) or timing.
#[cfg(hytm_model)]
pub mod model {
    /// Sets the model's capacity in distinct 64-byte lines of transactional
    /// words: `(read, write)`; 2,000 and 768 by default. Process-wide.
    ///
    /// ```
    /// let before = hytm::rtm::model::capacity();
    /// hytm::rtm::model::set_capacity(10, 4);
    /// assert_eq!(hytm::rtm::model::capacity(), (10, 4));
    /// hytm::rtm::model::set_capacity(before.0, before.1);
    /// ```
    pub fn set_capacity(read_lines: usize, write_lines: usize) {
        hytm_fallback::model::set_capacity(read_lines, write_lines);
    }

    /// The model's capacity: `(read, write)` lines.
    pub fn capacity() -> (usize, usize) {
        hytm_fallback::model::capacity()
    }
}

/// The HTM model backend: the instructions as calls into the model.
#[cfg(hytm_model)]
mod imp {
    use hytm_fallback::model;

    pub const STARTED: u32 = u32::MAX;

    #[derive(Clone, Copy, Debug)]
    pub struct Proof;

    impl Proof {
        #[inline(always)]
        pub fn new() -> Self {
            Proof
        }
    }

    /// # Safety
    /// None under the model; kept `unsafe` like the hardware backend.
    /// An abort does not come back here: it unwinds to the innermost
    /// catch frame ([`super::Rtm::transaction`] and the runtime's attempt
    /// loops).
    pub unsafe fn xbegin() -> u32 {
        if model::begin() {
            STARTED
        } else {
            0
        }
    }

    /// # Safety
    /// Inside a transaction (the model panics otherwise, as `#GP`).
    pub unsafe fn xend() {
        model::end();
    }

    /// # Safety
    /// None under the model.
    pub unsafe fn xabort<const CODE: u8>() {
        model::abort(((CODE as u32) << 24) | model::status::EXPLICIT);
    }

    /// # Safety
    /// None under the model.
    pub unsafe fn xtest() -> bool {
        model::test()
    }

    /// # Safety
    /// None under the model: load tracking is not modelled.
    pub unsafe fn xsusldtrk() {}

    /// # Safety
    /// As above.
    pub unsafe fn xresldtrk() {}
}

#[cfg(all(hytm_rtm, not(hytm_model)))]
mod imp {
    use core::arch::asm;

    /// EAX after `xbegin` when the transaction started (`_XBEGIN_STARTED`).
    pub const STARTED: u32 = u32::MAX;

    /// The token's payload: a unit, since `Rtm::new_unchecked` is the check.
    #[derive(Clone, Copy, Debug)]
    pub struct Proof;

    impl Proof {
        #[inline(always)]
        pub fn new() -> Self {
            Proof
        }
    }

    /// # Safety
    /// RTM supported.
    #[inline(always)]
    pub unsafe fn xbegin() -> u32 {
        let status: u32;
        // On abort the CPU restores every register and memory location to
        // its state at this instruction and resumes at label 2 with the
        // status in EAX: exactly the state the compiler expects after this
        // asm block with a new EAX output. Not `nomem`: it orders memory.
        // SAFETY: RTM is supported (caller); the abort path is as above.
        unsafe {
            asm!("xbegin 2f", "2:", inout("eax") STARTED => status, options(nostack));
        }
        status
    }

    /// # Safety
    /// RTM supported and inside a transaction.
    #[inline(always)]
    pub unsafe fn xend() {
        // SAFETY: caller guarantees a transaction is active; not `nomem`, as
        // commit publishes the transaction's stores.
        unsafe { asm!("xend", options(nostack)) }
    }

    /// # Safety
    /// RTM supported.
    #[inline(always)]
    pub unsafe fn xabort<const CODE: u8>() {
        // SAFETY: RTM supported (caller); a no-op outside a transaction.
        unsafe { asm!("xabort {code}", code = const CODE, options(nostack)) }
    }

    /// # Safety
    /// RTM supported.
    #[inline(always)]
    pub unsafe fn xtest() -> bool {
        let inside: u8;
        // SAFETY: RTM supported (caller); xtest only sets ZF.
        unsafe {
            // xtest writes ZF (and clears CF, OF, SF, PF, AF): flags are
            // clobbered, so no `preserves_flags`.
            asm!("xtest", "setnz {inside}", inside = out(reg_byte) inside,
                 options(nostack, nomem));
        }
        inside != 0
    }

    /// # Safety
    /// TSXLDTRK supported.
    #[inline(always)]
    pub unsafe fn xsusldtrk() {
        // SAFETY: TSXLDTRK supported (caller). Encoded as bytes (F2 0F 01 E8)
        // because older assemblers lack the mnemonic.
        unsafe { asm!(".byte 0xf2, 0x0f, 0x01, 0xe8", options(nostack)) }
    }

    /// # Safety
    /// TSXLDTRK supported.
    #[inline(always)]
    pub unsafe fn xresldtrk() {
        // SAFETY: as above (F2 0F 01 E9).
        unsafe { asm!(".byte 0xf2, 0x0f, 0x01, 0xe9", options(nostack)) }
    }
}

/// The portable stub: no token can exist, so nothing here ever runs.
#[cfg(not(any(hytm_rtm, hytm_model)))]
mod imp {
    pub const STARTED: u32 = u32::MAX;

    #[derive(Clone, Copy, Debug)]
    pub enum Proof {}

    impl Proof {
        pub fn new() -> Self {
            panic!("RTM instructions are not available in this build (not x86_64, or Miri/loom)")
        }
    }

    pub unsafe fn xbegin() -> u32 {
        unreachable!("no Rtm token exists without cfg(hytm_rtm)")
    }
    pub unsafe fn xend() {
        unreachable!("no Rtm token exists without cfg(hytm_rtm)")
    }
    pub unsafe fn xabort<const CODE: u8>() {
        unreachable!("no Rtm token exists without cfg(hytm_rtm)")
    }
    pub unsafe fn xtest() -> bool {
        false
    }
    pub unsafe fn xsusldtrk() {
        unreachable!("no Rtm token exists without cfg(hytm_rtm)")
    }
    pub unsafe fn xresldtrk() {
        unreachable!("no Rtm token exists without cfg(hytm_rtm)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_cause_bit() {
        let s = AbortStatus::from_raw(0x3f | (0xab << 24));
        assert!(s.is_explicit() && s.may_retry() && s.is_conflict());
        assert!(s.is_capacity() && s.is_debug() && s.is_nested());
        assert_eq!(s.explicit_code(), Some(0xab));
        assert_eq!(
            s.to_string(),
            "explicit 0xab retry conflict capacity debug nested"
        );
        assert_eq!(AbortStatus::from_raw(0).cause(), AbortCause::Other);
        assert!(AbortStatus::from_raw(0).is_unexplained());
        assert_eq!(AbortStatus::from_raw(0xff << 24).explicit_code(), None);
    }

    #[test]
    fn capacity_wins_over_conflict() {
        let s = AbortStatus::from_raw(AbortStatus::CAPACITY | AbortStatus::CONFLICT);
        assert_eq!(s.cause(), AbortCause::Capacity);
    }

    #[test]
    fn cause_indices_match_all() {
        for (i, c) in AbortCause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
