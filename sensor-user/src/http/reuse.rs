//! Spent transaction records and buffers, kept for the next transactions.
//!
//! A transaction owns about eight heap strings (path, route, names, user agent, host, session
//! hash...) and its connection a queue entry of a few hundred bytes; allocating and freeing them
//! for every request cost more than filling them. A consumer done with a record hands it back
//! ([`Pools::recycle`]) and the next request of any connection is written into its buffers.
//!
//! The pool is bounded: at most [`MAX_KEPT`] records, strings and queues are kept, and no
//! buffer larger than [`MAX_CAPACITY`] bytes (a long path or a large header list is freed as
//! before). Reuse changes where bytes are written, never which: a reused record starts out equal
//! to [`Transaction::empty`].

use std::collections::VecDeque;
use std::mem;
use std::net::SocketAddr;

use super::transaction::Transaction;

/// Most records, and most loose strings, kept.
const MAX_KEPT: usize = 64;
/// Largest buffer kept, in bytes.
const MAX_CAPACITY: usize = 1024;

/// An optional string field of a record, whose spent strings are kept apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    /// `host`.
    Host,
    /// `user_agent`.
    UserAgent,
    /// `session`.
    Session,
    /// `account`.
    Account,
}

/// Records, strings and queues handed back after use; `P` is the entry of a connection's
/// request queue (`conn::Pending`: [`super::Reuse`] names the pools the analysis uses), a
/// parameter so that this module needs nothing from the connection's.
pub struct Pools<P> {
    /// Spent records, their kept strings emptied.
    records: Vec<Box<Transaction>>,
    /// Empty strings with room, from the optional fields of spent records, one pool per
    /// [`Field`] so that a string comes back with room for what its field usually holds.
    strings: [Vec<String>; 4],
    /// Empty request queues of connections that went idle.
    queues: Vec<VecDeque<P>>,
}

impl<P> Default for Pools<P> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            strings: Default::default(),
            queues: Vec::new(),
        }
    }
}

impl<P> Pools<P> {
    /// Takes back a record its consumer is done with.
    pub fn recycle(&mut self, mut tx: Box<Transaction>) {
        if self.unload(&mut tx) && self.records.len() < MAX_KEPT {
            self.records.push(tx);
        }
    }

    /// Takes back every record of `spent`, which is left empty: [`Pools::recycle`] on each, with
    /// the kept records moved over in one block.
    pub fn recycle_all(&mut self, spent: &mut Vec<Box<Transaction>>) {
        spent.retain_mut(|tx| self.unload(tx));
        let room = MAX_KEPT.saturating_sub(self.records.len());
        spent.truncate(room);
        self.records.append(spent);
    }

    /// Moves the strings of `tx`'s optional fields to the loose strings; returns whether its
    /// other buffers are small enough to keep.
    fn unload(&mut self, tx: &mut Transaction) -> bool {
        self.keep_string(Field::Host, tx.host.take());
        self.keep_string(Field::UserAgent, tx.user_agent.take());
        self.keep_string(Field::Session, tx.session.take());
        self.keep_string(Field::Account, tx.account.take());
        let largest = tx
            .path
            .capacity()
            .max(tx.route.capacity())
            .max(tx.query_keys.capacity())
            .max(tx.header_order.capacity())
            .max(tx.set_cookies.capacity());
        largest <= MAX_CAPACITY
    }

    /// Heap bytes held by the pool.
    pub fn memory(&self) -> usize {
        self.records.capacity() * mem::size_of::<Box<Transaction>>()
            + self
                .records
                .iter()
                .map(|tx| mem::size_of::<Transaction>() + tx.heap_bytes())
                .sum::<usize>()
            + self
                .strings
                .iter()
                .map(|pool| {
                    pool.capacity() * mem::size_of::<String>()
                        + pool.iter().map(String::capacity).sum::<usize>()
                })
                .sum::<usize>()
            + self.queues.capacity() * mem::size_of::<VecDeque<P>>()
            + self
                .queues
                .iter()
                .map(|q| q.capacity() * mem::size_of::<P>())
                .sum::<usize>()
    }

    /// An empty record for the given endpoints, as [`Transaction::empty`] makes it.
    pub(super) fn record(
        &mut self,
        ts_ns: u64,
        peer: SocketAddr,
        server: SocketAddr,
    ) -> Box<Transaction> {
        match self.records.pop() {
            Some(mut spent) => {
                spent.reset(ts_ns, peer, server);
                spent
            }
            None => Box::new(Transaction::empty(ts_ns, peer, server)),
        }
    }

    /// An empty string for `field`, with room when one was handed back.
    pub(super) fn string(&mut self, field: Field) -> String {
        self.pool(field).pop().unwrap_or_default()
    }

    /// Keeps the string, if any, of `field` for later.
    fn keep_string(&mut self, field: Field, s: Option<String>) {
        let pool = self.pool(field);
        if let Some(mut s) = s
            && pool.len() < MAX_KEPT
            && (1..=MAX_CAPACITY).contains(&s.capacity())
        {
            s.clear();
            pool.push(s);
        }
    }

    /// The spent strings of `field`.
    fn pool(&mut self, field: Field) -> &mut Vec<String> {
        let [host, user_agent, session, account] = &mut self.strings;
        match field {
            Field::Host => host,
            Field::UserAgent => user_agent,
            Field::Session => session,
            Field::Account => account,
        }
    }

    /// An empty request queue, with room when one was handed back.
    pub(super) fn queue(&mut self) -> VecDeque<P> {
        self.queues.pop().unwrap_or_default()
    }

    /// Keeps the queue of a connection that went idle.
    pub(super) fn put_queue(&mut self, queue: VecDeque<P>) {
        // A queue that grew past a few entries (pipelining) is freed rather than kept.
        if self.queues.len() < MAX_KEPT && queue.is_empty() && (1..=4).contains(&queue.capacity()) {
            self.queues.push(queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(path_len: usize) -> Box<Transaction> {
        let addr = "198.51.100.1:1000".parse().expect("addr");
        let mut tx = Transaction::empty(7, addr, addr);
        tx.path = "/".repeat(path_len);
        tx.host = Some("h".repeat(path_len));
        tx.user_agent = Some(String::from("ua"));
        Box::new(tx)
    }

    #[test]
    fn pool_is_bounded_and_records_come_back_empty() {
        let mut reuse = Pools::<()>::default();
        let mut batch: Vec<Box<Transaction>> = (0..100).map(|i| spent(i % 3 * 800)).collect();
        reuse.recycle_all(&mut batch);
        assert!(batch.is_empty(), "the batch is taken");
        for _ in 0..10 {
            reuse.recycle(spent(4000));
        }
        assert!(
            reuse.records.len() <= MAX_KEPT,
            "{} records",
            reuse.records.len()
        );
        assert!(
            reuse.strings.iter().all(|pool| pool.len() <= MAX_KEPT),
            "too many strings"
        );
        assert!(
            reuse
                .records
                .iter()
                .all(|tx| tx.heap_bytes() <= 5 * MAX_CAPACITY),
            "a large buffer was kept"
        );
        assert!(
            reuse
                .strings
                .iter()
                .flatten()
                .all(|s| s.is_empty() && s.capacity() <= MAX_CAPACITY)
        );
        let addr = "203.0.113.9:80".parse().expect("addr");
        for _ in 0..MAX_KEPT + 5 {
            let tx = reuse.record(3, addr, addr);
            assert_eq!(
                *tx,
                Transaction::empty(3, addr, addr),
                "a reused record starts empty"
            );
        }
    }
}
