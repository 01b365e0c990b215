//! Why PostgreSQL cannot be used as configured — TLS, authentication, the schema, a
//! pooler — told apart from outages, each naming the setting that fixes it.

use super::tls::SslMode;

/// What is wrong in how memdb reaches or uses PostgreSQL; its message names the setting
/// to change. Not an outage: retrying does not help until the setting changes (memdb
/// keeps the writes in its WAL and retries in the background meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misconfiguration {
    /// `sslmode` asks for TLS and the server does not offer it.
    #[error(
        "the server does not accept TLS connections, but sslmode requires TLS: turn `ssl` on in the server, \
         or (on a trusted network only) set sslmode=prefer in PG_DSN"
    )]
    TlsNotOffered,
    /// The server accepts only TLS connections and `sslmode=disable` was asked for.
    #[error(
        "the server accepts only TLS connections (pg_hba.conf `hostssl`), but sslmode=disable: \
         set sslmode=verify-full (or require) in PG_DSN"
    )]
    TlsRequired,
    /// The server's certificate does not lead to a trusted CA.
    #[error(
        "the server's certificate is not signed by a trusted CA: set sslrootcert in PG_DSN (or PGSSLROOTCERT) \
         to the file of the CA that signed it"
    )]
    CertificateUntrusted,
    /// The server's certificate is not for the host memdb connects to.
    #[error(
        "the server's certificate is not valid for the host in PG_DSN: connect by a name the certificate \
         lists, or set sslmode=verify-ca to check only the CA"
    )]
    HostnameMismatch,
    /// The TLS handshake failed for another reason (protocol versions, a bad signature).
    #[error("the TLS handshake with the server failed: check the server's ssl settings and sslmode in PG_DSN")]
    TlsFailed,
    /// memdb's TLS settings cannot be used (an unreadable `sslrootcert`, no system roots).
    #[error("TLS cannot be set up: check sslrootcert and sslmode in PG_DSN")]
    TlsSetup,
    /// The server refused the password.
    #[error(
        "password authentication failed: check the user and password (PG_DSN, PG_PASSWORD_FILE, PGPASSWORD \
         or ~/.pgpass)"
    )]
    AuthenticationFailed,
    /// The server asks for a password and none was given.
    #[error(
        "the server asks for a password and none is set: give one in PG_DSN, PG_PASSWORD_FILE, PGPASSWORD or ~/.pgpass"
    )]
    PasswordMissing,
    /// The password file named by `PG_PASSWORD_FILE` cannot be read.
    #[error("the password file cannot be read: check PG_PASSWORD_FILE and the file's permissions")]
    PasswordFile,
    /// The server's `pg_hba.conf` has no entry allowing this connection.
    #[error(
        "the server's pg_hba.conf does not allow this connection: ask for an entry for this host, user and \
         database, or change host, user or dbname in PG_DSN"
    )]
    NotAllowed,
    /// `MEMDB_SCHEMA` does not exist and the role may not create it.
    #[error(
        "the schema does not exist and this role may not create it: CREATE SCHEMA <schema> AUTHORIZATION \
         <role> as an administrator, or set MEMDB_SCHEMA to a schema the role owns"
    )]
    SchemaMissing,
    /// `MEMDB_SCHEMA` is left at `public`, and memdb's tables are in the schema the role's
    /// `search_path` leads to, where memdb put them before the setting existed.
    #[error(
        "memdb's tables are in the schema the role's search_path leads to (named below), not in MEMDB_SCHEMA \
         (public): set MEMDB_SCHEMA to that schema"
    )]
    SchemaMoved,
    /// The server's certificate has expired or is not valid yet.
    #[error(
        "the server's certificate has expired or is not valid yet: renew it on the server (or check this \
         host's clock)"
    )]
    CertificateExpired,
    /// The role may not create or write memdb's tables in `MEMDB_SCHEMA`.
    #[error(
        "this role may not create or write memdb's tables in its schema: make the role the schema's owner \
         (or GRANT USAGE, CREATE ON SCHEMA <schema> TO <role>), or set MEMDB_SCHEMA to a schema it owns"
    )]
    NotWritable,
    /// A connection pooler stands between memdb and the server, and `MEMDB_PG_POOLER`
    /// does not say so (or names the wrong pooling mode).
    #[error(
        "PG_DSN leads to a connection pooler (PgBouncer?) that keeps no session state: set \
         MEMDB_PG_POOLER=transaction (or =session for session pooling)"
    )]
    Pooler,
}

impl Misconfiguration {
    /// Whether no connection can be made at all (as opposed to one statement failing):
    /// such a failure counts as PostgreSQL being unreachable for the circuit breaker.
    #[must_use]
    pub fn blocks_connections(self) -> bool {
        !matches!(self, Self::SchemaMissing | Self::NotWritable | Self::SchemaMoved)
    }

    /// The misconfiguration a driver error shows, if any (`sslmode` was asked for).
    pub(crate) fn of(e: &tokio_postgres::Error, sslmode: SslMode) -> Option<Self> {
        if let Some(db) = e.as_db_error() {
            let message = db.message();
            return match db.code().code() {
                "28P01" => Some(Self::AuthenticationFailed),
                "28000" if message.contains("no encryption") && sslmode == SslMode::Disable => Some(Self::TlsRequired),
                "28000" => Some(Self::NotAllowed),
                "08P01" if message.contains("unsupported startup parameter") => Some(Self::Pooler),
                // PgBouncer passes the server's refusal on as a protocol violation.
                "08P01" if message.contains("password authentication failed") => Some(Self::AuthenticationFailed),
                // A prepared statement on another server connection: a transaction pooler.
                "26000" | "42P05" => Some(Self::Pooler),
                _ => None,
            };
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if let Some(tls) = rustls_error(err) {
                return Some(Self::of_tls(tls));
            }
            let text = err.to_string();
            if text.contains("server does not support TLS") {
                return Some(Self::TlsNotOffered);
            }
            if text.contains("password missing") {
                return Some(Self::PasswordMissing);
            }
            source = err.source();
        }
        None
    }

    fn of_tls(e: &rustls::Error) -> Self {
        use rustls::CertificateError as Cert;
        match e {
            rustls::Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
                Self::HostnameMismatch
            }
            rustls::Error::InvalidCertificate(
                Cert::Expired | Cert::ExpiredContext { .. } | Cert::NotValidYet | Cert::NotValidYetContext { .. },
            ) => Self::CertificateExpired,
            rustls::Error::InvalidCertificate(_) => Self::CertificateUntrusted,
            _ => Self::TlsFailed,
        }
    }

    /// A privilege error on memdb's own tables or schema: a setting, not bad data.
    pub(crate) fn of_privilege(sqlstate: &str) -> Option<Self> {
        match sqlstate {
            "3F000" => Some(Self::SchemaMissing),
            "42501" => Some(Self::NotWritable),
            _ => None,
        }
    }
}

/// The rustls error inside `e`: `io::Error` hides its payload from `source()`.
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref())
    })
}
