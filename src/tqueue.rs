//! [`TQueue`]: an unbounded transactional FIFO queue on two [`TVar`]s.

use std::fmt;
use std::sync::Arc;

use crate::tvar::TVar;
use crate::tx::Tx;
use crate::Restart;

/// An immutable, shared list: the two halves of the queue.
type List<T> = Option<Arc<Node<T>>>;

struct Node<T> {
    value: T,
    next: List<T>,
}

impl<T> Drop for Node<T> {
    /// Frees the rest of the list in a loop, not by recursion: a long list
    /// would overflow the stack.
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut node) => next = node.next.take(),
                // Shared with another version of the list: it lives on.
                Err(_) => break,
            }
        }
    }
}

/// An unbounded FIFO queue whose operations are parts of transactions: a
/// [`push`](TQueue::push) and a [`pop`](TQueue::pop) in one transaction
/// (of one queue or several, with `TCell`s and `TVar`s) commit or roll back
/// together, on every path. [`pop`](TQueue::pop) waits (through
/// [`Tx::retry`]) while the queue is empty.
///
/// Built as two immutable lists in [`TVar`]s, as Haskell's `TQueue`: pushes
/// prepend to the back list; pops take from the front list, which is the
/// back list reversed when it runs out (amortized O(1) per operation, every
/// value cloned once more then). Popped values are clones (`T: Clone`): a
/// list may be shared by a transaction that still reads an older version.
/// The list nodes are reference-counted, so a hardware transaction that
/// reads the queue writes their counts.
///
/// ```
/// use hytm::TQueue;
///
/// let q = TQueue::new();
/// hytm::atomic(|tx| {
///     q.push(tx, "a")?;
///     q.push(tx, "b")
/// });
/// assert_eq!(hytm::atomic(|tx| q.pop(tx)), "a");
/// assert_eq!(hytm::atomic(|tx| q.try_pop(tx)), Some("b"));
/// assert_eq!(hytm::atomic(|tx| q.try_pop(tx)), None);
/// ```
pub struct TQueue<T: Send + Sync + 'static> {
    /// Oldest first.
    front: TVar<List<T>>,
    /// Newest first.
    back: TVar<List<T>>,
}

impl<T: Send + Sync + 'static> TQueue<T> {
    /// An empty queue.
    ///
    /// ```
    /// let q: hytm::TQueue<u32> = hytm::TQueue::new();
    /// assert!(hytm::atomic(|tx| q.is_empty(tx)));
    /// ```
    pub fn new() -> TQueue<T> {
        TQueue {
            front: TVar::new(None),
            back: TVar::new(None),
        }
    }

    /// Appends `value` at the back (part of the caller's transaction).
    ///
    /// # Errors
    ///
    /// As [`Tx::read`].
    ///
    /// ```
    /// let q = hytm::TQueue::new();
    /// hytm::atomic(|tx| q.push(tx, 1u32));
    /// assert_eq!(hytm::atomic(|tx| q.try_pop(tx)), Some(1));
    /// ```
    pub fn push<'env>(&'env self, tx: &mut Tx<'env>, value: T) -> Result<(), Restart> {
        let back = tx.get(&self.back)?;
        tx.set(&self.back, Some(Arc::new(Node { value, next: back })))
    }

    /// Removes and returns the oldest value; if the queue is empty, waits
    /// ([`Tx::retry`]: the transaction reruns when another one changes the
    /// queue or anything else it read).
    ///
    /// # Errors
    ///
    /// As [`Tx::read`], and the [`Restart`] of the retry.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let q = Arc::new(hytm::TQueue::new());
    /// let producer = {
    ///     let q = Arc::clone(&q);
    ///     std::thread::spawn(move || hytm::atomic(|tx| q.push(tx, 42u64)))
    /// };
    /// assert_eq!(hytm::atomic(|tx| q.pop(tx)), 42);
    /// producer.join().unwrap();
    /// ```
    pub fn pop<'env>(&'env self, tx: &mut Tx<'env>) -> Result<T, Restart>
    where
        T: Clone,
    {
        match self.try_pop(tx)? {
            Some(v) => Ok(v),
            None => tx.retry(),
        }
    }

    /// Removes and returns the oldest value, `None` if the queue is empty.
    ///
    /// # Errors
    ///
    /// As [`Tx::read`].
    ///
    /// ```
    /// let q = hytm::TQueue::new();
    /// assert_eq!(hytm::atomic(|tx| q.try_pop(tx)), None::<String>);
    /// ```
    pub fn try_pop<'env>(&'env self, tx: &mut Tx<'env>) -> Result<Option<T>, Restart>
    where
        T: Clone,
    {
        let front = match tx.get(&self.front)? {
            Some(front) => front,
            None => {
                let Some(back) = tx.get(&self.back)? else {
                    return Ok(None);
                };
                // The back list, reversed, becomes the front.
                let mut reversed: List<T> = None;
                let mut node = Some(&back);
                while let Some(n) = node {
                    reversed = Some(Arc::new(Node {
                        value: n.value.clone(),
                        next: reversed,
                    }));
                    node = n.next.as_ref();
                }
                tx.set(&self.back, None)?;
                match reversed {
                    Some(front) => front,
                    None => return Ok(None),
                }
            }
        };
        tx.set(&self.front, front.next.clone())?;
        Ok(Some(front.value.clone()))
    }

    /// Whether the queue is empty (in the caller's transaction).
    ///
    /// # Errors
    ///
    /// As [`Tx::read`].
    ///
    /// ```
    /// let q = hytm::TQueue::new();
    /// hytm::atomic(|tx| q.push(tx, ()));
    /// assert!(!hytm::atomic(|tx| q.is_empty(tx)));
    /// ```
    pub fn is_empty<'env>(&'env self, tx: &mut Tx<'env>) -> Result<bool, Restart> {
        Ok(tx.get(&self.front)?.is_none() && tx.get(&self.back)?.is_none())
    }
}

impl<T: Send + Sync + 'static> Default for TQueue<T> {
    /// ```
    /// let q: hytm::TQueue<u8> = Default::default();
    /// assert!(hytm::atomic(|tx| q.is_empty(tx)));
    /// ```
    fn default() -> TQueue<T> {
        TQueue::new()
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for TQueue<T> {
    /// ```
    /// let q: hytm::TQueue<u8> = hytm::TQueue::new();
    /// assert_eq!(format!("{q:?}"), "TQueue { .. }");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TQueue").finish_non_exhaustive()
    }
}
