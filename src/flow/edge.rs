//! Bounded edges between stages.
//!
//! actix mailboxes do not give back-pressure (the throughput probe measured it): `send()`
//! enqueues past the mailbox capacity, `do_send` ignores it and a SyncArbiter's queue is
//! unbounded. So every edge carries a credit semaphore of `capacity` permits. A sender takes a
//! permit before it sends, and the permit travels inside the message; it returns when the
//! receiving handler has finished with the message and drops it. At most `capacity` messages are
//! therefore queued or being handled on an edge, and a slow consumer makes its producer wait
//! instead of letting batches pile up in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use actix::{Message, Recipient};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One producer → consumer connection and its counters.
#[derive(Debug)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub capacity: usize,
    sem: Arc<Semaphore>,
    /// Highest number of messages in flight seen on this edge.
    max_depth: AtomicUsize,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages the consumer has finished with.
    pub done: AtomicU64,
}

impl Edge {
    pub(crate) fn new(from: &str, to: &str, capacity: usize) -> Arc<Self> {
        Arc::new(Edge {
            from: from.to_string(),
            to: to.to_string(),
            capacity,
            sem: Arc::new(Semaphore::new(capacity)),
            max_depth: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
        })
    }

    /// Messages queued or being handled right now.
    pub(crate) fn depth(&self) -> usize {
        self.capacity - self.sem.available_permits()
    }

    pub(crate) fn max_depth(&self) -> usize {
        self.max_depth.load(Ordering::Relaxed)
    }

    fn note_sent(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Credit {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.max_depth.fetch_max(self.depth(), Ordering::Relaxed);
        Credit {
            _permit: permit,
            edge: self.clone(),
        }
    }

    async fn acquire(self: &Arc<Self>) -> Option<Credit> {
        // The semaphore is never closed, so acquiring only fails if that invariant breaks.
        let permit = self.sem.clone().acquire_owned().await.ok()?;
        Some(self.note_sent(permit))
    }
}

/// A permit on an edge; dropping it (with the message that carries it) frees the slot.
#[derive(Debug)]
pub(crate) struct Credit {
    _permit: OwnedSemaphorePermit,
    edge: Arc<Edge>,
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.edge.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// A message on an edge: the item and the credit it holds.
#[derive(Debug)]
pub(crate) struct Envelope<T> {
    pub item: T,
    pub credit: Credit,
}

impl<T: Send + 'static> Message for Envelope<T> {
    type Result = ();
}

/// An envelope opened by a handler (`StageCtx::open`): the item, the credit (dropped when the
/// handler is done with the item, or earlier to free the edge), and when handling started.
#[derive(Debug)]
pub(crate) struct Opened<T> {
    pub item: T,
    pub credit: Credit,
    pub started: std::time::Instant,
}

/// The consumer went away before the item could be sent.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the downstream stage has stopped")]
pub(crate) struct Closed;

/// A stage's output: one bounded edge to each consumer. Every item goes to every consumer, so
/// the slowest consumer sets the pace.
pub(crate) struct Outlet<T: Send + 'static> {
    edges: Vec<(Arc<Edge>, Recipient<Envelope<T>>)>,
}

impl<T: Send + 'static> Clone for Outlet<T> {
    fn clone(&self) -> Self {
        Outlet {
            edges: self.edges.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> Outlet<T> {
    pub(crate) fn new() -> Self {
        Outlet { edges: Vec::new() }
    }

    pub(crate) fn connect(&mut self, edge: Arc<Edge>, to: Recipient<Envelope<T>>) {
        self.edges.push((edge, to));
    }

    /// Sends `item` to every consumer, waiting for a free slot on each edge.
    pub(crate) async fn send(&self, item: T) -> Result<(), Closed> {
        let Some(((last_edge, last_to), rest)) = self.edges.split_last() else {
            return Ok(());
        };
        for (edge, to) in rest {
            let credit = edge.acquire().await.ok_or(Closed)?;
            to.try_send(Envelope {
                item: item.clone(),
                credit,
            })
            .map_err(|_| Closed)?;
        }
        let credit = last_edge.acquire().await.ok_or(Closed)?;
        last_to
            .try_send(Envelope { item, credit })
            .map_err(|_| Closed)
    }

    /// [`Outlet::send`] for stages running on their own threads (SyncArbiter workers), which
    /// may block while they wait.
    pub(crate) fn send_blocking(&self, item: T) -> Result<(), Closed> {
        futures::executor::block_on(self.send(item))
    }
}

impl<T: Clone + Send + 'static> Default for Outlet<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::prelude::*;
    use std::time::Duration;

    struct Slow {
        seen: Arc<AtomicU64>,
    }
    impl Actor for Slow {
        type Context = SyncContext<Self>;
    }
    impl Handler<Envelope<u64>> for Slow {
        type Result = ();
        fn handle(&mut self, _: Envelope<u64>, _: &mut Self::Context) {
            std::thread::sleep(Duration::from_millis(5));
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_slow_consumer_bounds_messages_in_flight() {
        let sys = actix::System::new();
        let seen = Arc::new(AtomicU64::new(0));
        let edge = Edge::new("fast", "slow", 3);
        let s2 = seen.clone();
        sys.block_on(async move {
            let addr = SyncArbiter::start(2, move || Slow { seen: s2.clone() });
            let mut out = Outlet::new();
            out.connect(edge.clone(), addr.recipient());
            for i in 0..60u64 {
                out.send(i).await.unwrap();
                let sent = edge.sent.load(Ordering::Relaxed);
                let done = edge.done.load(Ordering::Relaxed);
                assert!(sent - done <= 3, "{sent} sent, {done} done");
            }
            drop(out);
            while edge.done.load(Ordering::Relaxed) < 60 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(edge.max_depth(), 3);
        });
        assert_eq!(seen.load(Ordering::Relaxed), 60);
    }
}
