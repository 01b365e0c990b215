//! Configuration: the settings with the original's defaults, and `from_env` reading the
//! process environment and a `.env` file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use memdb_wal::Durability;

use crate::error::{Error, Result};

/// How a [`crate::MemDb`] runs. Start from [`Config::new`] or [`Config::from_env`] and
/// set the fields you need; the struct is `#[non_exhaustive]`, so new settings (with
/// defaults) never break code written this way:
///
/// ```
/// let mut config = memdb::Config::new("host=localhost user=memdb", "/var/lib/mydaemon/wal");
/// config.flush_interval = std::time::Duration::from_secs(2);
/// config.durability = memdb::Durability::Sync;
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// PostgreSQL connection string (`PG_DSN`), key=value or URL form, with libpq's
    /// TLS settings: `sslmode` (`disable`, `prefer` — the default —, `require`,
    /// `verify-ca`, `verify-full`) and `sslrootcert` (a CA file, or `system`). `Debug`
    /// shows it with the password masked.
    pub pg_dsn: String,
    /// A file holding the PostgreSQL password, for container secrets
    /// (`PG_PASSWORD_FILE`); used when the DSN has none. Without it, `PGPASSWORD` and
    /// then libpq's password file (`PGPASSFILE`, default `~/.pgpass`) are read.
    pub pg_password_file: Option<PathBuf>,
    /// The PostgreSQL schema of memdb's tables and catalogue (`MEMDB_SCHEMA`, default
    /// `public`); created if missing and the role may.
    pub pg_schema: String,
    /// A connection pooler between memdb and PostgreSQL (`MEMDB_PG_POOLER`: `none`,
    /// `session`, `transaction`; default none).
    pub pg_pooler: Pooler,
    /// Directory of the write-ahead log (`MEMDB_WAL_DIR`, default `./memdb-wal`).
    pub wal_dir: PathBuf,
    /// Who may read the WAL (`MEMDB_WAL_MODE`: `0700`, the default — the owner only,
    /// files `0600` — or `0750`, the group reading too, files `0640`). Whatever it is,
    /// a WAL directory or file another user owns or others may write is refused.
    pub wal_access: memdb_wal::storage::Access,
    /// When writes are acknowledged (`MEMDB_DURABILITY`: `sync`, `periodic`, `periodic:<ms>`).
    pub durability: Durability,
    /// How often dirty records are flushed (`FLUSH_INTERVAL`, seconds; default 10).
    pub flush_interval: Duration,
    /// Clean records untouched this long are evicted (`IDLE_TTL`, seconds; default 30).
    pub idle_ttl: Duration,
    /// PostgreSQL connections in the pool (`MAX_CONNECTIONS`, default 5).
    pub max_connections: usize,
    /// Flush early once this many records are dirty (default 50,000).
    pub flush_dirty_threshold: usize,
    /// Flush early once the WAL holds this many bytes (default 256 MiB).
    pub flush_wal_bytes_threshold: u64,
    /// Writers wait (then fail with backpressure) above this many dirty records (default 2,000,000).
    pub max_dirty_records: usize,
    /// Writers wait (then fail) above this many WAL bytes (default 4 GiB).
    pub max_wal_bytes: u64,
    /// How long a writer waits under backpressure before failing (default 5 s).
    pub backpressure_timeout: Duration,
    /// Evict clean records, least recently used first, above this many cached records.
    pub max_cached_records: Option<usize>,
    /// The largest record, serialised, in bytes (default 1 MiB).
    pub max_record_bytes: usize,
    /// Timeout of every PostgreSQL call (default 5 s).
    pub pg_timeout: Duration,
    /// Rows per flush statement (default 5,000).
    pub flush_batch_rows: usize,
    /// WAL segment size in bytes (default 64 MiB).
    pub wal_segment_bytes: u64,
}

impl Config {
    /// A configuration with the defaults and the given PostgreSQL DSN and WAL directory.
    #[must_use]
    pub fn new(pg_dsn: impl Into<String>, wal_dir: impl Into<PathBuf>) -> Self {
        Self {
            pg_dsn: pg_dsn.into(),
            pg_password_file: None,
            pg_schema: "public".to_owned(),
            pg_pooler: Pooler::None,
            wal_dir: wal_dir.into(),
            wal_access: memdb_wal::storage::Access::Private,
            durability: Durability::default(),
            flush_interval: Duration::from_secs(10),
            idle_ttl: Duration::from_secs(30),
            max_connections: 5,
            flush_dirty_threshold: 50_000,
            flush_wal_bytes_threshold: 256 << 20,
            max_dirty_records: 2_000_000,
            max_wal_bytes: 4 << 30,
            backpressure_timeout: Duration::from_secs(5),
            max_cached_records: None,
            max_record_bytes: 1 << 20,
            pg_timeout: Duration::from_secs(5),
            flush_batch_rows: 5_000,
            wal_segment_bytes: 64 << 20,
        }
    }

    /// Reads `PG_DSN`, `PG_PASSWORD_FILE`, `MEMDB_SCHEMA`, `MEMDB_PG_POOLER`,
    /// `MEMDB_WAL_DIR`, `MEMDB_WAL_MODE`, `MEMDB_DURABILITY`, `FLUSH_INTERVAL`, `IDLE_TTL` and
    /// `MAX_CONNECTIONS` from the environment, and from `./.env` for variables the
    /// environment does not set.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable that is missing or malformed.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(env_lookup(Path::new(".env"))?)
    }

    /// As [`Config::from_env`], with the variables from `lookup` (for tests and tools).
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let pg_dsn = lookup("PG_DSN").ok_or_else(|| Error::Config {
            name: "PG_DSN",
            value: String::new(),
            reason: "not set: give a PostgreSQL connection string, e.g. host=localhost user=postgres".into(),
        })?;
        let mut config = Self::new(pg_dsn, lookup("MEMDB_WAL_DIR").unwrap_or_else(|| "memdb-wal".into()));
        if let Some(v) = lookup("FLUSH_INTERVAL") {
            config.flush_interval = seconds("FLUSH_INTERVAL", &v)?;
        }
        if let Some(v) = lookup("IDLE_TTL") {
            config.idle_ttl = seconds("IDLE_TTL", &v)?;
        }
        if let Some(v) = lookup("MAX_CONNECTIONS") {
            config.max_connections = match v.trim().parse::<usize>() {
                Ok(n) if (2..=1000).contains(&n) => n,
                _ => return Err(bad("MAX_CONNECTIONS", &v, "a whole number from 2 to 1000")),
            };
        }
        if let Some(v) = lookup("MEMDB_DURABILITY") {
            config.durability = durability(&v)?;
        }
        if let Some(v) = lookup("MEMDB_WAL_MODE") {
            config.wal_access = match v.trim() {
                "0700" | "700" => memdb_wal::storage::Access::Private,
                "0750" | "750" => memdb_wal::storage::Access::Group,
                _ => return Err(bad("MEMDB_WAL_MODE", &v, "0700 (the owner only) or 0750 (the group reads too)")),
            };
        }
        config.pg_password_file = lookup("PG_PASSWORD_FILE").filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(v) = lookup("MEMDB_SCHEMA") {
            config.pg_schema = v.trim().to_owned();
        }
        if let Some(v) = lookup("MEMDB_PG_POOLER") {
            config.pg_pooler = match v.trim().to_ascii_lowercase().as_str() {
                "" | "none" => Pooler::None,
                "session" => Pooler::Session,
                "transaction" => Pooler::Transaction,
                _ => return Err(bad("MEMDB_PG_POOLER", &v, "one of none, session, transaction")),
            };
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks settings that cannot work together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.max_connections < 2 {
            return Err(bad(
                "max_connections",
                &self.max_connections.to_string(),
                "at least 2 (one for reads, one for flushes)",
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(bad("flush_interval", "0", "must be above zero"));
        }
        if self.flush_batch_rows == 0 {
            return Err(bad("flush_batch_rows", "0", "must be above zero"));
        }
        if let Err(reason) = crate::validate::schema_name(&self.pg_schema) {
            return Err(bad("MEMDB_SCHEMA", &self.pg_schema, reason));
        }
        Ok(())
    }
}

/// What stands between memdb and PostgreSQL (`MEMDB_PG_POOLER`). memdb refuses to run
/// through a pooler it was not told about: PgBouncer refuses the startup option memdb
/// sends on direct connections, and memdb reports [`crate::Misconfiguration::Pooler`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pooler {
    /// A direct connection: statements are prepared once per connection.
    #[default]
    None,
    /// A pooler in session mode (PgBouncer `pool_mode = session`): as direct, without
    /// startup options.
    Session,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`): no statement
    /// relies on session state — each runs unnamed in one round trip (a little slower
    /// than a prepared one), a query with parameters in its own transaction.
    Transaction,
}

/// Everything but the password: a `Debug` of the configuration goes into logs.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("pg_dsn", &crate::store::dsn::redact(&self.pg_dsn))
            .field("pg_password_file", &self.pg_password_file)
            .field("pg_schema", &self.pg_schema)
            .field("pg_pooler", &self.pg_pooler)
            .field("wal_dir", &self.wal_dir)
            .field("wal_access", &self.wal_access)
            .field("durability", &self.durability)
            .field("flush_interval", &self.flush_interval)
            .field("idle_ttl", &self.idle_ttl)
            .field("max_connections", &self.max_connections)
            .field("flush_dirty_threshold", &self.flush_dirty_threshold)
            .field("flush_wal_bytes_threshold", &self.flush_wal_bytes_threshold)
            .field("max_dirty_records", &self.max_dirty_records)
            .field("max_wal_bytes", &self.max_wal_bytes)
            .field("backpressure_timeout", &self.backpressure_timeout)
            .field("max_cached_records", &self.max_cached_records)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("pg_timeout", &self.pg_timeout)
            .field("flush_batch_rows", &self.flush_batch_rows)
            .field("wal_segment_bytes", &self.wal_segment_bytes)
            .finish()
    }
}

fn bad(name: &'static str, value: &str, reason: &str) -> Error {
    Error::Config { name, value: value.into(), reason: reason.into() }
}

/// Seconds as a positive number, fractions allowed (`0.5`).
fn seconds(name: &'static str, v: &str) -> Result<Duration> {
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(bad(name, v, "a positive number of seconds, e.g. 10 or 0.5")),
    }
}

/// `sync`, `periodic` or `periodic:<ms>`.
fn durability(v: &str) -> Result<Durability> {
    let v = v.trim().to_ascii_lowercase();
    match v.split_once(':') {
        None if v == "sync" => Ok(Durability::Sync),
        None if v == "periodic" => Ok(Durability::default()),
        Some(("periodic", ms)) => match ms.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Durability::Periodic(Duration::from_millis(ms))),
            _ => Err(bad("MEMDB_DURABILITY", &v, "periodic:<milliseconds above zero>")),
        },
        _ => Err(bad("MEMDB_DURABILITY", &v, "one of sync, periodic, periodic:<ms>")),
    }
}

/// The environment, falling back to the `.env` file at `path` when it exists.
fn env_lookup(path: &Path) -> Result<impl Fn(&str) -> Option<String>> {
    let mut file = std::collections::HashMap::new();
    if path.exists() {
        let iter = dotenvy::from_path_iter(path).map_err(|e| Error::Config {
            name: "PG_DSN",
            value: path.display().to_string(),
            reason: format!("cannot read .env: {e}"),
        })?;
        for item in iter {
            let (k, v) = item.map_err(|e| Error::Config {
                name: "PG_DSN",
                value: path.display().to_string(),
                reason: format!("malformed .env: {e}"),
            })?;
            file.insert(k, v);
        }
    }
    Ok(move |name: &str| std::env::var(name).ok().or_else(|| file.get(name).cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_the_originals() {
        let c = Config::from_lookup(vars(&[("PG_DSN", "host=x")])).expect("config");
        assert_eq!((c.flush_interval.as_secs(), c.idle_ttl.as_secs(), c.max_connections), (10, 30, 5));
        assert_eq!(c.durability, Durability::Periodic(Duration::from_millis(100)));
    }

    #[test]
    fn variables_are_read_and_bad_ones_named() {
        let c = Config::from_lookup(vars(&[
            ("PG_DSN", "host=x"),
            ("FLUSH_INTERVAL", "0.5"),
            ("IDLE_TTL", "2"),
            ("MAX_CONNECTIONS", "8"),
            ("MEMDB_DURABILITY", "periodic:20"),
            ("MEMDB_WAL_DIR", "/w"),
        ]))
        .expect("config");
        assert_eq!(c.flush_interval, Duration::from_millis(500));
        assert_eq!((c.idle_ttl.as_secs(), c.max_connections), (2, 8));
        assert_eq!(c.durability, Durability::Periodic(Duration::from_millis(20)));
        assert_eq!(c.wal_dir, PathBuf::from("/w"));
        for (name, value) in
            [("FLUSH_INTERVAL", "soon"), ("IDLE_TTL", "-1"), ("MAX_CONNECTIONS", "1"), ("MEMDB_DURABILITY", "always")]
        {
            let err = Config::from_lookup(vars(&[("PG_DSN", "host=x"), (name, value)])).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
        assert!(Config::from_lookup(vars(&[])).expect_err("no dsn").to_string().contains("PG_DSN"));
    }

    #[test]
    fn dotenv_fills_what_the_environment_lacks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        std::fs::write(&path, "# comment\nMEMDB_TEST_ONLY_VAR=\"from file\"\n").expect("write");
        let lookup = env_lookup(&path).expect("read");
        assert_eq!(lookup("MEMDB_TEST_ONLY_VAR").as_deref(), Some("from file"));
    }
}
