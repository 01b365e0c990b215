//! The SQL memdb sends, in one place. Table names here have passed validation, and the
//! schema [`crate::validate::schema_name`].

use crate::validate::{INDEX_SUFFIX, TABLE_PREFIX};

/// Terminates the other sessions with this session's `application_name`, waiting up
/// to $1 ms for each to exit (its open transaction is rolled back); returns how many.
pub(super) const FENCE_PREVIOUS: &str = "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, $1::bigint))
    FROM pg_stat_activity
    WHERE application_name = current_setting('application_name') AND pid <> pg_backend_pid()";

/// The schema the search_path leads to, if it holds a memdb catalogue and `$1` (the
/// configured schema) holds none.
pub(super) const CATALOGUE_ON_SEARCH_PATH: &str = "SELECT current_schema()::text
    WHERE current_schema() <> $1
        AND to_regclass(format('%I.memdb_tables', current_schema())) IS NOT NULL
        AND to_regclass(format('%I.memdb_tables', $1)) IS NULL";

pub(super) const SCHEMA_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";

/// Key of the transaction-scoped advisory lock that serialises memdb's DDL.
const DDL_LOCK: i64 = 0x6d65_6d64_6264_646c; // "memdbddl"

/// The statements, with every table qualified by memdb's schema (so no statement
/// depends on the session's `search_path`, which a pooler does not keep).
pub(super) struct Sql {
    /// The schema's name, and quoted for SQL.
    name: String,
    quoted: String,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Self {
        Self { name: schema.to_owned(), quoted: format!("\"{schema}\"") }
    }

    pub(super) fn schema_name(&self) -> &str {
        &self.name
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{TABLE_PREFIX}{name}", self.quoted)
    }

    pub(super) fn create_schema(&self) -> String {
        format!("CREATE SCHEMA IF NOT EXISTS {}", self.quoted)
    }

    /// The catalogue of logical tables and their schemas (survives restarts), and the
    /// ids of the runs whose writes were checked against the LSN floor (see
    /// `crate::connect`).
    pub(super) fn catalogue(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                name TEXT PRIMARY KEY,
                schema JSONB NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
            );
            CREATE TABLE IF NOT EXISTS {} (
                run BIGINT PRIMARY KEY,
                checked_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
            self.table("tables"),
            self.table("checked_runs")
        )
    }

    pub(super) fn checked_runs(&self) -> String {
        format!("SELECT run FROM {} WHERE run = ANY($1)", self.table("checked_runs"))
    }

    pub(super) fn record_checked_runs(&self) -> String {
        format!(
            "INSERT INTO {} (run) SELECT unnest($1::bigint[]) ON CONFLICT (run) DO NOTHING",
            self.table("checked_runs")
        )
    }

    pub(super) fn load_tables(&self) -> String {
        format!("SELECT name, schema::text FROM {} ORDER BY name", self.table("tables"))
    }

    pub(super) fn upsert_catalogue(&self) -> String {
        format!(
            "INSERT INTO {} (name, schema) VALUES ($1, $2::text::jsonb)
            ON CONFLICT (name) DO UPDATE SET schema = EXCLUDED.schema, updated_at = now()",
            self.table("tables")
        )
    }

    /// ⚑ One statement batch (one implicit transaction) under [`DDL_LOCK`]: two
    /// concurrent `CREATE TABLE IF NOT EXISTS` of one name otherwise fail with a unique
    /// violation on `pg_type` (a flush and a first write racing, or two processes).
    pub(super) fn create_table(&self, name: &str) -> String {
        let t = self.table(name);
        format!(
            "SELECT pg_advisory_xact_lock({DDL_LOCK});
            CREATE TABLE IF NOT EXISTS {t} (
                key TEXT PRIMARY KEY,
                data JSONB NOT NULL,
                lsn BIGINT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
            );
            CREATE INDEX IF NOT EXISTS {TABLE_PREFIX}{name}{INDEX_SUFFIX} ON {t} USING GIN (data);"
        )
    }

    pub(super) fn max_lsn(&self, name: &str) -> String {
        format!("SELECT max(lsn) FROM {}", self.table(name))
    }

    /// Puts ($1 keys, $2 JSON texts, $3 LSNs) and, `with_deletes`, deletes ($4 keys, $5
    /// LSNs), LSN-guarded. Returns the keys of the puts the guard skipped because
    /// PostgreSQL holds a newer row — or a different row at the same LSN, which only a
    /// WAL reused elsewhere can cause: memory then drops its value rather than disagree
    /// with PostgreSQL (read from the statement's snapshot, which the CTEs' changes do
    /// not touch; a row this statement writes was older there, so the data is compared
    /// only on replays). Without deletes the statement has no delete step (and no $4,
    /// $5): the common batch plans and runs faster.
    ///
    /// ⚑ The statement turns `synchronous_commit` on for its own transaction (a one-time
    /// filter, evaluated once whatever the rows): memdb truncates its WAL once the commit
    /// is acknowledged, so it must be durable even on a server configured with it off,
    /// and even through a pooler that keeps no session settings.
    pub(super) fn write_batch(&self, name: &str, with_deletes: bool) -> String {
        let t = self.table(name);
        let delete = if with_deletes {
            format!(
                ", del AS (
                DELETE FROM {t} AS t USING unnest($4::text[], $5::int8[]) AS d(k, l)
                WHERE t.key = d.k AND t.lsn < d.l
                RETURNING 1
            )"
            )
        } else {
            String::new()
        };
        format!(
            "WITH put AS (
                INSERT INTO {t} AS t (key, data, lsn)
                SELECT k, d::jsonb, l FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(k, d, l)
                ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, lsn = EXCLUDED.lsn, updated_at = now()
                WHERE t.lsn < EXCLUDED.lsn
                RETURNING 1
            ){delete}
            SELECT t.key FROM {t} AS t JOIN unnest($1::text[], $2::text[], $3::int8[]) AS u(k, d, l) ON t.key = u.k
            WHERE (SELECT set_config('synchronous_commit', 'on', true)) = 'on'
                AND (t.lsn > u.l OR (t.lsn = u.l AND t.data <> u.d::jsonb))"
        )
    }

    pub(super) fn get(&self, name: &str) -> String {
        format!("SELECT data::text, lsn FROM {} WHERE key = $1", self.table(name))
    }

    /// `where_sql` is trusted SQL by design (as in the original); `limit` is parameter
    /// `$limit_param`.
    pub(super) fn query(&self, name: &str, where_sql: &str, limit_param: usize) -> String {
        let t = self.table(name);
        let condition = if where_sql.trim().is_empty() { "TRUE".to_owned() } else { format!("({where_sql})") };
        format!("SELECT key, data::text FROM {t} WHERE {condition} ORDER BY key LIMIT ${limit_param}")
    }
}
