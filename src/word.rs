//! More [`Word`] types: `NonZero*` and `Option` of them, small tuples and
//! arrays of narrow words, raw pointers, and [`Bits`], the way to put a
//! foreign plain-data type of at most 8 bytes in a [`TCell`](crate::TCell)
//! without the orphan rule in the way.

use std::num::{
    NonZeroI16, NonZeroI32, NonZeroI64, NonZeroI8, NonZeroIsize, NonZeroU16, NonZeroU32,
    NonZeroU64, NonZeroU8, NonZeroUsize,
};

use crate::Word;

macro_rules! nonzero_word {
    ($($nz:ty => $int:ty),*) => {$(
        impl Word for $nz {
            #[inline]
            fn to_bits(self) -> u64 {
                self.get().to_bits()
            }
            #[inline]
            fn from_bits(bits: u64) -> Self {
                // Only bits made by `to_bits` arrive: never zero.
                <$nz>::new(<$int>::from_bits(bits)).unwrap_or(<$nz>::MIN)
            }
        }

        impl Word for Option<$nz> {
            #[inline]
            fn to_bits(self) -> u64 {
                self.map_or(0, |v| v.get().to_bits())
            }
            #[inline]
            fn from_bits(bits: u64) -> Self {
                <$nz>::new(<$int>::from_bits(bits))
            }
        }
    )*};
}

nonzero_word!(
    NonZeroU8 => u8, NonZeroU16 => u16, NonZeroU32 => u32, NonZeroU64 => u64,
    NonZeroUsize => usize, NonZeroI8 => i8, NonZeroI16 => i16, NonZeroI32 => i32,
    NonZeroI64 => i64, NonZeroIsize => isize
);

/// A [`Word`] that uses at most `BITS` low bits, so that several fit in
/// one word: the element types of the tuple and array `Word`s.
///
/// ```
/// use hytm::{Narrow, TCell};
/// assert_eq!(<u16 as Narrow>::BITS, 16);
/// let pair = TCell::new((7u32, -1i32)); // two 32-bit halves of one word
/// assert_eq!(pair.load(), (7, -1));
/// ```
///
/// A tuple or array wider than 64 bits is refused when it is compiled:
///
/// ```compile_fail
/// let c = hytm::TCell::new((0u32, 0u32, 0u32)); // 96 bits
/// ```
pub trait Narrow: Word {
    /// How many low bits `to_bits` may set.
    const BITS: u32;
}

macro_rules! narrow {
    ($($t:ty => $bits:expr),*) => {$(
        impl Narrow for $t {
            const BITS: u32 = $bits;
        }
    )*};
}

narrow!(u8 => 8, u16 => 16, u32 => 32, bool => 1, char => 32, f32 => 32,
        NonZeroU8 => 8, NonZeroU16 => 16, NonZeroU32 => 32,
        Option<NonZeroU8> => 8, Option<NonZeroU16> => 16, Option<NonZeroU32> => 32);

// Signed narrow words: their `to_bits` sign-extends to 64 bits, so pack
// them through their unsigned twins.
macro_rules! narrow_signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Narrow for $t {
            const BITS: u32 = <$u>::BITS;
        }
    )*};
}

narrow_signed!(i8 => u8, i16 => u16, i32 => u32);

/// The low `bits` bits of `v`.
const fn low(v: u64, bits: u32) -> u64 {
    if bits >= 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

/// `to_bits` of a narrow word, cut to its width (signed words sign-extend).
fn pack<T: Narrow>(v: T) -> u64 {
    low(v.to_bits(), T::BITS)
}

/// `from_bits` of a narrow word from its field, sign-extended back for the
/// signed ones (their `from_bits` truncates, so either is fine).
fn unpack<T: Narrow>(bits: u64) -> T {
    T::from_bits(bits)
}

impl<A: Narrow, B: Narrow> Word for (A, B) {
    #[inline]
    fn to_bits(self) -> u64 {
        const { assert!(A::BITS + B::BITS <= 64, "the tuple does not fit in a word") };
        pack(self.0) | (pack(self.1) << A::BITS)
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        (
            unpack(low(bits, A::BITS)),
            unpack(low(bits >> A::BITS, B::BITS)),
        )
    }
}

impl<A: Narrow, B: Narrow, C: Narrow> Word for (A, B, C) {
    #[inline]
    fn to_bits(self) -> u64 {
        const {
            assert!(
                A::BITS + B::BITS + C::BITS <= 64,
                "the tuple does not fit in a word"
            )
        };
        pack(self.0) | (pack(self.1) << A::BITS) | (pack(self.2) << (A::BITS + B::BITS))
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        (
            unpack(low(bits, A::BITS)),
            unpack(low(bits >> A::BITS, B::BITS)),
            unpack(low(bits >> (A::BITS + B::BITS), C::BITS)),
        )
    }
}

impl<T: Narrow, const N: usize> Word for [T; N] {
    #[inline]
    fn to_bits(self) -> u64 {
        const {
            assert!(
                T::BITS as usize * N <= 64,
                "the array does not fit in a word"
            )
        };
        let mut bits = 0;
        for (i, v) in self.into_iter().enumerate() {
            bits |= pack(v) << (i as u32 * T::BITS);
        }
        bits
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        std::array::from_fn(|i| unpack(low(bits >> (i as u32 * T::BITS), T::BITS)))
    }
}

/// Raw pointers: the address, with its provenance exposed, so the pointer
/// read back is as usable as the one written. (A `TCell` of a raw pointer
/// is `!Send` and `!Sync` like the pointer; to share one, wrap the pointer
/// in a type of yours that is `Send + Sync` and implements `Word`.)
impl<T> Word for *const T {
    #[inline]
    fn to_bits(self) -> u64 {
        self.expose_provenance() as u64
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        std::ptr::with_exposed_provenance(bits as usize)
    }
}

impl<T> Word for *mut T {
    #[inline]
    fn to_bits(self) -> u64 {
        self.expose_provenance() as u64
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        std::ptr::with_exposed_provenance_mut(bits as usize)
    }
}

/// Any plain-data type of at most 8 bytes as a [`Word`], through
/// `bytemuck`: every bit pattern of it is valid (`AnyBitPattern`) and it
/// has no padding (`NoUninit`). The way around the orphan rule for foreign
/// types (`impl Word for their::Type` is not allowed in your crate).
///
/// ```
/// use hytm::{Bits, TCell};
/// // A foreign type would do the same; [u8; 6] stands in for one here.
/// let c = TCell::new(Bits([1u8, 2, 3, 4, 5, 6]));
/// hytm::atomic(|tx| {
///     let Bits(mut v) = tx.read(&c)?;
///     v[0] = 9;
///     tx.write(&c, Bits(v))
/// });
/// assert_eq!(c.load().0, [9, 2, 3, 4, 5, 6]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Bits<T>(pub T);

impl<T: bytemuck::NoUninit + bytemuck::AnyBitPattern> Word for Bits<T> {
    #[inline]
    fn to_bits(self) -> u64 {
        const { assert!(size_of::<T>() <= 8, "Bits<T> needs T of at most 8 bytes") };
        let mut word = [0u8; 8];
        word[..size_of::<T>()].copy_from_slice(bytemuck::bytes_of(&self.0));
        u64::from_ne_bytes(word)
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        let word = bits.to_ne_bytes();
        Bits(bytemuck::pod_read_unaligned(&word[..size_of::<T>()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TCell;

    fn round_trip<T: Word + PartialEq + std::fmt::Debug>(v: T) {
        let c = TCell::new(v);
        assert_eq!(c.load(), v);
        crate::atomic(|tx| {
            let x = tx.read(&c)?;
            tx.write(&c, x)
        });
        assert_eq!(c.load(), v);
    }

    #[test]
    fn every_new_word_type_round_trips() {
        round_trip(NonZeroU64::new(u64::MAX).unwrap());
        round_trip(NonZeroI32::new(-5).unwrap());
        round_trip(Some(NonZeroU32::new(7).unwrap()));
        round_trip(None::<NonZeroU16>);
        round_trip((u32::MAX, -1i32));
        round_trip((-3i8, 'x', true));
        round_trip((1.5f32, 0u16));
        round_trip([1u8, 2, 3, 4, 5, 6, 7, 8]);
        round_trip([-1i16, 2, -3, 4]);
        round_trip([true; 64]);
        round_trip(Bits([1u8, 2, 3]));
        round_trip(Bits(0.25f64));
        let x = 5u32;
        round_trip(&x as *const u32);
        round_trip(std::ptr::null_mut::<u8>());
    }

    #[test]
    fn fields_do_not_bleed_into_each_other() {
        // A negative first field must not set bits of the second.
        let c = TCell::new((-1i16, 0u16));
        assert_eq!(c.load(), (-1, 0));
        assert_eq!(<(i16, u16)>::to_bits((-1, 0)), 0xffff);
    }
}
