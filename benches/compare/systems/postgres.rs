//! PostgreSQL directly as a workload [`System`]: what a daemon does without memdb. One
//! connection per lane, one prepared statement per operation (an upsert per write) into
//! a table shaped like memdb's (JSONB with a GIN index).

use tokio_postgres::{Client, NoTls, Statement};

use super::System;
use crate::common::record::Call;

/// memdb's table layout, under a name of the bench's choosing.
pub fn ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (key TEXT PRIMARY KEY, data JSONB NOT NULL, lsn BIGINT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE INDEX {table}_gin ON {table} USING GIN (data);"
    )
}

pub async fn connect(dsn: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

struct Lane {
    client: Client,
    put: Statement,
    get: Statement,
    delete: Statement,
}

pub struct PostgresSystem {
    lanes: Vec<Lane>,
    pub table: String,
}

impl PostgresSystem {
    /// Creates `table` and opens `lanes` connections with `synchronous_commit` as given.
    pub async fn open(dsn: &str, table: &str, lanes: usize, synchronous_commit: bool) -> Self {
        let admin = connect(dsn).await;
        admin.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await.expect("drop old table");
        admin.batch_execute(&ddl(table)).await.expect("create the table");
        let mut all = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let client = connect(dsn).await;
            let setting = if synchronous_commit { "on" } else { "off" };
            client.batch_execute(&format!("SET synchronous_commit = {setting}")).await.expect("SET");
            let put = client
                .prepare(&format!(
                    "INSERT INTO {table} (key, data, lsn) VALUES ($1, $2::text::jsonb, 0)
                     ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, updated_at = now()"
                ))
                .await
                .expect("prepare upsert");
            let get = client.prepare(&format!("SELECT data::text FROM {table} WHERE key = $1")).await.expect("prepare");
            let delete = client.prepare(&format!("DELETE FROM {table} WHERE key = $1")).await.expect("prepare");
            all.push(Lane { client, put, get, delete });
        }
        Self { lanes: all, table: table.to_owned() }
    }

    /// Drops the table.
    pub async fn drop_table(&self) {
        if let Some(lane) = self.lanes.first() {
            let _ = lane.client.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table)).await;
        }
    }
}

impl System for PostgresSystem {
    async fn put(&self, lane: usize, key: &str, call: &Call, _create: bool) {
        let lane = &self.lanes[lane % self.lanes.len()];
        let json = serde_json::to_string(call).expect("serialise");
        lane.client.execute(&lane.put, &[&key, &json]).await.expect("PostgreSQL upsert");
    }

    async fn get(&self, lane: usize, key: &str) -> bool {
        let lane = &self.lanes[lane % self.lanes.len()];
        lane.client.query_opt(&lane.get, &[&key]).await.expect("PostgreSQL select").is_some()
    }

    async fn delete(&self, lane: usize, key: &str) {
        let lane = &self.lanes[lane % self.lanes.len()];
        lane.client.execute(&lane.delete, &[&key]).await.expect("PostgreSQL delete");
    }
}
