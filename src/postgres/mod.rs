//! PostgreSQL helpers for tests, examples and the demo: a zero-setup private cluster used
//! when `PG_DSN` is unset (the engine's own PostgreSQL access lives in `store`).

mod cluster;
mod error;
mod pgbouncer;
mod process;
mod tls;

pub use cluster::{PrivateCluster, StartupTimings, test_dsn, test_dsn_from};
pub use error::ClusterError;
pub use pgbouncer::PgBouncer;
pub use tls::{ClientTls, unrelated_ca_pem};
