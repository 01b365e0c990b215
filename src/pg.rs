//! The one way to PostgreSQL. ⚑ Nothing reaches it before the first connection's work
//! has run once in this process — fence the previous run's sessions, learn PostgreSQL's
//! catalogue and LSN floor, move this run's writes above that floor (see
//! [`crate::connect`]) — because the store is only handed out through [`Pg::store`],
//! which runs that work first. Open does not wait for it: the background task's first
//! flush, or the first read that needs PostgreSQL, runs it.

use tokio::sync::OnceCell;

use crate::error::Result;
use crate::store::{Store, StoreError};

pub(crate) struct Pg {
    store: Store,
    connected: OnceCell<()>,
}

impl Pg {
    pub(crate) fn new(store: Store) -> Self {
        Self { store, connected: OnceCell::new() }
    }

    /// The store, once `first_connection` has succeeded (it runs at most once at a
    /// time; a call dropped or failed half-way leaves it to the next).
    ///
    /// # Cancel safety
    /// Cancel-safe if `first_connection` is: dropped, it leaves the work undone.
    pub(crate) async fn store(&self, first_connection: impl AsyncFnOnce(&Store) -> Result<()>) -> Result<&Store> {
        if !self.connected.initialized() {
            self.connected.get_or_try_init(|| first_connection(&self.store)).await?;
        }
        Ok(&self.store)
    }

    /// Whether the first connection's work has run.
    pub(crate) fn connected(&self) -> bool {
        self.connected.initialized()
    }

    /// Whether PostgreSQL is taken to be up (its breaker is closed).
    pub(crate) fn is_up(&self) -> bool {
        self.store.is_up()
    }

    /// Whether PostgreSQL is known to be down and a probe is due.
    pub(crate) fn probe_due(&self) -> bool {
        self.store.probe_due()
    }

    /// One round trip past an open breaker (closing it when it gets through).
    pub(crate) async fn probe(&self) -> Result<(), StoreError> {
        self.store.probe().await
    }
}
