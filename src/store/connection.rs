//! How memdb reaches PostgreSQL: the DSN parsed, its TLS settings made a connector, the
//! password found. The engine's pool, the `memdb` command and the drill all connect
//! through here, so they behave alike.

use std::path::Path;
use std::time::Duration;

use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{SslMode, TlsSettings};
use super::{StoreError, dsn, password};

/// A ready-to-use connection recipe: tokio-postgres's settings and the TLS connector.
pub(crate) struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub sslmode: SslMode,
}

impl Connection {
    /// The recipe for `dsn`, with the password from `password_file` (or `PGPASSWORD`, or
    /// the libpq password file) when the DSN has none.
    pub(crate) fn new(dsn: &str, password_file: Option<&Path>) -> Result<Self, StoreError> {
        let split = dsn::split(dsn)?;
        let tls = TlsSettings::of(&split)?;
        let mut config: tokio_postgres::Config =
            split.rest.parse().map_err(|e: tokio_postgres::Error| StoreError::BadDsn(e.to_string()))?;
        if config.get_ssl_mode() != tokio_postgres::config::SslMode::Prefer {
            // tokio-postgres found an sslmode memdb did not: never connect weaker than asked.
            return Err(StoreError::BadDsn("sslmode is given where memdb cannot read it".into()));
        }
        config.ssl_mode(tls.mode.driver_mode());
        password::fill_in(&mut config, password_file)?;
        Ok(Self { config, tls: tls.connector()?, sslmode: tls.mode })
    }
}

/// A plain client on the PostgreSQL `dsn` names, connected exactly as the engine
/// connects — TLS (`sslmode`, `sslrootcert`), the password from the DSN,
/// `PG_PASSWORD_FILE`, `PGPASSWORD` or `~/.pgpass` — for tools, drills and tests that
/// look at PostgreSQL beside the engine. The connection runs on a spawned task until the
/// client is dropped. Needs a Tokio runtime.
///
/// # Errors
/// [`StoreError::BadDsn`] or [`StoreError::Misconfigured`] naming the setting to
/// change; [`StoreError::Unavailable`] or [`StoreError::Timeout`] (10 s) otherwise.
///
/// # Cancel safety
/// Cancel-safe: dropped, the half-made connection is closed.
pub async fn connect_postgres(dsn: &str) -> Result<tokio_postgres::Client, StoreError> {
    const WHAT: &str = "connecting to PostgreSQL";
    const TIMEOUT: Duration = Duration::from_secs(10);
    let password_file = std::env::var_os("PG_PASSWORD_FILE").filter(|f| !f.is_empty());
    let connection = Connection::new(dsn, password_file.as_deref().map(Path::new))?;
    let connecting = connection.config.connect(connection.tls.clone());
    match tokio::time::timeout(TIMEOUT, connecting).await {
        Ok(Ok((client, task))) => {
            tokio::spawn(async move {
                if let Err(e) = task.await {
                    tracing::debug!(error = %e, "a PostgreSQL client's connection ended");
                }
            });
            Ok(client)
        }
        Ok(Err(e)) => Err(StoreError::from_driver(WHAT, &e, connection.sslmode)),
        Err(_) => Err(StoreError::Timeout { what: WHAT, after: TIMEOUT }),
    }
}
