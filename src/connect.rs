//! The first connection to PostgreSQL in a run (through [`crate::pg::Pg::store`], so
//! before any other statement): end the previous run's sessions, learn PostgreSQL's
//! catalogue, and make sure this run's LSNs are above every row's.
//!
//! ⚑ LSNs only grow across PostgreSQL too. Normally the WAL is ahead of PostgreSQL (a
//! batch is flushed only once durable in the WAL). A WAL restored from an older copy, or
//! a new WAL directory, may be behind: writes accepted since — in this run, or in earlier
//! runs that never reached PostgreSQL (the unverified runs kept in the catalogue) — may
//! then hold LSNs at or below rows PostgreSQL has, and the LSN guard would drop them.
//! They are moved: the WAL is advanced above PostgreSQL's highest LSN and each is logged
//! again there. Records of other runs keep their LSNs: they are an old copy's, and the
//! guard rightly keeps a newer row over them — also those of an unverified run that a
//! copy carries but that was checked (and its writes moved) elsewhere since: PostgreSQL
//! records the id of every run checked.

use memdb_wal::Lsn;

use crate::cache::Update;
use crate::catalogue::Unverified;
use crate::db::Inner;
use crate::error::Result;
use crate::record::Record;
use crate::schema::Schema;
use crate::store::Store;
use crate::validate;

impl Inner {
    /// PostgreSQL, once the first connection's work has run.
    ///
    /// # Cancel safety
    /// Cancel-safe: every step is idempotent, and a dropped call leaves the work to the
    /// next (nothing is flushed before it completes).
    pub(crate) async fn pg(&self) -> Result<&Store> {
        self.pg.store(async |store| self.first_connection(store).await).await
    }

    async fn first_connection(&self, store: &Store) -> Result<()> {
        match store.fence_previous().await {
            Ok(0) => {}
            Ok(fenced) => {
                tracing::warn!(fenced, "ended PostgreSQL sessions a previous run of this WAL directory left behind");
            }
            Err(e) if e.is_rejection() => {
                tracing::warn!(error = %e, "cannot end a previous run's PostgreSQL sessions (needs the same role or pg_signal_backend)");
            }
            Err(e) => return Err(e.into()),
        }
        store.ensure_catalogue().await?;
        let mut names = Vec::new();
        for (name, schema) in store.load_tables().await? {
            if validate::table_name(&name).is_ok() {
                // A table this directory knows keeps its own schema (PostgreSQL gets it
                // on the table's next flush).
                let schema = Schema::from_json(&name, &schema)?;
                let (table, created) = self.tables.get_or_insert(&name, schema.clone(), true);
                if !created {
                    table.adopt_schema(schema);
                }
                names.push(name);
            }
        }
        let floor = store.max_lsn(&names).await?;
        let runs = self.unverified();
        let ids: Vec<i64> = runs.iter().map(|r| r.run).collect();
        let checked = store.checked_runs(&ids).await?;
        let moved = self.move_above(&runs, &checked, floor)?;
        if moved > 0 {
            // ⚑ The moved records are durable before the runs are marked checked: a
            // power cut must not leave the originals unmarked.
            self.durable_through(self.wal.next_lsn() - 1).await?;
        }
        store.record_checked_runs(&ids).await?;
        // Checked: records from here on are above PostgreSQL's rows by construction.
        self.unverified.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self.save_catalogue().await?;
        tracing::info!(tables = names.len(), pg_max_lsn = floor, moved, "connected to PostgreSQL");
        Ok(())
    }

    /// Moves the writes of the unverified `runs` (oldest first; those in `checked` were
    /// checked elsewhere) at or below `floor` (PostgreSQL's highest LSN) above it.
    /// Returns how many records were logged again.
    fn move_above(&self, runs: &[Unverified], checked: &[i64], floor: Lsn) -> Result<usize> {
        // Each run's LSNs end where the next one's begin.
        let ends = runs.iter().skip(1).map(|r| r.since - 1).chain(std::iter::once(floor));
        let ranges: Vec<_> = runs
            .iter()
            .zip(ends)
            .filter(|(run, _)| !checked.contains(&run.run))
            .map(|(run, end)| run.since..=end.min(floor))
            .filter(|range| !range.is_empty())
            .collect();
        if ranges.is_empty() {
            return Ok(0);
        }
        self.wal.advance_to(floor + 1)?;
        let mut moved = 0;
        for (t, range) in self.tables.all().iter().flat_map(|t| ranges.iter().map(move |r| (t, r.clone()))) {
            for key in t.cache.dirty_keys_in(range) {
                // The current value, logged again at a new LSN; a write that raced in
                // meanwhile is above the floor already, and logging it again is harmless.
                let again = |current: Option<&str>| {
                    Ok(current.map_or_else(|| Record::tombstone(&key), |json| Record::put(&key, json)))
                };
                match self.log_update(t, &key, None, again) {
                    Ok(_) => moved += 1,
                    // Dirty records are never evicted: a key gone is one no longer dirty.
                    Err(Update::Raced) => {}
                    Err(Update::Failed(e)) => return Err(e),
                }
            }
        }
        tracing::warn!(
            floor,
            moved,
            "PostgreSQL holds LSNs above this WAL (restored from an older copy, or new): writes not checked against it were logged again above them"
        );
        Ok(moved)
    }
}
