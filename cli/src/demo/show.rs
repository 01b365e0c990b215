//! The demo's side-by-side view: memory (the engine's stats) beside PostgreSQL (row
//! counts read from the server) and the WAL.

use std::time::{Duration, Instant};

use memdb::MemDb;

use super::TABLE;
use crate::failure::Failure;
use crate::live::{Live, thousands};

/// A direct PostgreSQL client, to show what the database holds.
pub struct Pg {
    client: tokio_postgres::Client,
    /// The demo table's PostgreSQL name, qualified by memdb's schema.
    table: String,
}

impl Pg {
    pub async fn connect(config: &memdb::Config) -> Result<Self, Failure> {
        let dsn = &config.pg_dsn;
        // Connected as the engine connects: TLS settings and password sources alike.
        let client = memdb::connect_postgres(dsn).await.map_err(|e| {
            Failure::from_error("connecting to PostgreSQL", &e, "check PG_DSN and that the server runs")
        })?;
        Ok(Self { client, table: format!("\"{}\".memdb_{TABLE}", config.pg_schema) })
    }

    /// Rows of the demo table whose key starts with `prefix` (0 before the table exists).
    pub async fn rows(&self, prefix: &str) -> Result<u64, Failure> {
        let sql = format!("SELECT count(*) FROM {} WHERE key LIKE $1 || '%'", self.table);
        match self.client.query_one(&sql, &[&prefix]).await {
            Ok(row) => Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(0),
            Err(e) => Err(Failure::from_error("counting rows in PostgreSQL", &e, "check that PostgreSQL is up")),
        }
    }

    /// Rows of keys `{prefix}1` through `{prefix}{last}`.
    pub async fn child_rows_through(&self, prefix: &str, last: u64) -> Result<u64, Failure> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE key LIKE $1 || '%' AND substr(key, length($1) + 1)::bigint <= $2",
            self.table
        );
        let last = i64::try_from(last).unwrap_or(i64::MAX);
        let row = self
            .client
            .query_one(&sql, &[&prefix, &last])
            .await
            .map_err(|e| Failure::from_error("counting rows in PostgreSQL", &e, "check that PostgreSQL is up"))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default())
    }

    /// The stored JSON of one key, if PostgreSQL has it.
    pub async fn value(&self, key: &str) -> Result<Option<String>, Failure> {
        let sql = format!("SELECT data::text FROM {} WHERE key = $1", self.table);
        let row = self
            .client
            .query_opt(&sql, &[&key])
            .await
            .map_err(|e| Failure::from_error("reading a row from PostgreSQL", &e, "check that PostgreSQL is up"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Runs a statement of the demo's own (emptying its table).
    /// Empties the demo table, if it exists.
    pub async fn empty(&self) -> Result<(), Failure> {
        let t = &self.table;
        self.client
            .batch_execute(&format!(
                "DO $$ BEGIN IF to_regclass('{t}') IS NOT NULL THEN DELETE FROM {t}; END IF; END $$"
            ))
            .await
            .map_err(|e| Failure::from_error("preparing the demo table", &e, "check PG_DSN's permissions"))
    }
}

/// The header of the side-by-side table.
pub fn header() {
    println!(
        "   {:<34} {:>8} {:>8} {:>8} | {:>10} | {:>12}",
        "memory:", "cached", "dirty", "clean", "PG rows", "WAL bytes"
    );
}

/// One line: memory beside PostgreSQL.
pub fn line(when: &str, db: &MemDb, rows: u64) -> String {
    let stats = db.stats();
    let clean = stats.cached_records.saturating_sub(stats.dirty_records);
    format!(
        "   {when:<34} {:>8} {:>8} {:>8} | {:>10} | {:>12}",
        thousands(stats.cached_records as u64),
        thousands(stats.dirty_records as u64),
        thousands(clean as u64),
        thousands(rows),
        thousands(stats.wal_bytes)
    )
}

/// Prints the state now.
pub async fn state(when: &str, db: &MemDb, pg: &Pg) -> Result<(), Failure> {
    let rows = pg.rows("call:").await?;
    println!("{}", line(when, db, rows));
    Ok(())
}

/// Redraws the state live until `done` holds (or `limit` passes), then prints it as `when`.
pub async fn watch_until(
    when: &str,
    db: &MemDb,
    pg: &Pg,
    prefix: &str,
    limit: Duration,
    mut done: impl FnMut(&MemDb) -> bool,
) -> Result<Duration, Failure> {
    let mut live = Live::start();
    let deadline = Instant::now() + limit;
    loop {
        let rows = pg.rows(prefix).await?;
        let finished = done(db);
        if finished || Instant::now() >= deadline {
            let elapsed = live.elapsed();
            live.finish(&line(&format!("{when} ({:.1} s)", elapsed.as_secs_f64()), db, rows));
            if !finished {
                return Err(Failure::new(
                    format!("gave up waiting after {} s: {when}", limit.as_secs()),
                    "check the PostgreSQL server's log; `memdb demo` with PG_DSN unset uses a private server",
                ));
            }
            return Ok(elapsed);
        }
        live.update(&line(&format!("waiting… {:.1} s", live.elapsed().as_secs_f64()), db, rows));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
