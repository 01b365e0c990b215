//! A small daemon as a user writes one: memdb with default features, one table, a write
//! and a read. CI builds it and checks what it pulls in (`.ci/run`).

use memdb::{Config, MemDb};
use serde_json::json;

#[tokio::main]
async fn main() -> memdb::Result<()> {
    let db = MemDb::open(Config::from_env()?).await?;
    db.insert("calls", "call:1", &json!({"status": "ringing"})).await?;
    println!("{:?}", db.get("calls", "call:1").await?);
    db.close().await
}
