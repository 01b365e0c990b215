//! TLS for a private cluster ([`super::PrivateCluster::start_tls`]): a throwaway CA and
//! a server certificate for `localhost` and 127.0.0.1 (rcgen), `ssl = on`, and a
//! `pg_hba.conf` that takes TCP connections only over TLS, with a SCRAM password — as a
//! managed PostgreSQL does. The unix socket stays open to the harness (trust).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::error::ClusterError;

/// What a client needs to reach a TLS cluster: the CA to trust, and the password.
#[derive(Clone)]
pub struct ClientTls {
    /// The PEM file of the CA that signed the server's certificate (`sslrootcert`).
    pub ca_file: PathBuf,
    /// The superuser's password.
    pub password: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("ca_file", &self.ca_file).finish_non_exhaustive()
    }
}

/// The files a TLS cluster is set up with.
pub(super) struct ServerFiles {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

/// `pg_hba.conf` of a TLS cluster: the socket for the harness, TCP only over TLS with a
/// SCRAM password (so a connection without TLS is refused: "no encryption").
pub(super) const HBA_TLS_ONLY: &str = "local all all trust
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl all all ::1/128 scram-sha-256
";

/// `pg_hba.conf` of a plain cluster, and of one that offers TLS but takes plain TCP too
/// (benchmarks): TCP with the superuser's SCRAM password, the socket trusted.
pub(super) const HBA_PASSWORD: &str = "local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
";

/// A new CA and a server certificate it signs, for `localhost` and 127.0.0.1.
pub(super) fn server_files() -> Result<ServerFiles, ClusterError> {
    let ca = new_ca("memdb test CA")?;
    let key = KeyPair::generate().map_err(tls_error)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(tls_error)?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).map_err(tls_error)?;
    Ok(ServerFiles { cert_pem: cert.pem(), key_pem: key.serialize_pem(), ca_pem: ca.pem() })
}

/// A self-signed CA certificate in PEM, unrelated to any cluster: what a client that
/// trusts the wrong CA holds.
///
/// # Errors
/// [`ClusterError::Tls`] if rcgen fails.
pub fn unrelated_ca_pem() -> Result<String, ClusterError> {
    Ok(new_ca("some other CA")?.pem())
}

fn new_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, ClusterError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(tls_error)?).map_err(tls_error)
}

/// A password, shown by `Debug` as `***`.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A password for the superuser: not guessable from outside the process.
pub(super) fn new_password() -> Secret {
    use std::hash::{BuildHasher as _, RandomState};
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    Secret(format!("pw-{random:016x}"))
}

/// The key=value DSN of database `dbname` over TLS, checked as `verify-full`.
pub(super) fn dsn(port: u16, user: &str, dbname: &str, tls: &ClientTls) -> String {
    format!(
        "host=localhost port={port} user={user} dbname={dbname} password={} sslmode=verify-full sslrootcert='{}'",
        tls.password,
        quote(&tls.ca_file)
    )
}

/// `path` for a single-quoted DSN value.
pub(super) fn quote(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "\\\\").replace('\'', "\\'")
}

fn tls_error(e: rcgen::Error) -> ClusterError {
    ClusterError::Tls(e.to_string())
}
