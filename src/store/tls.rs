//! TLS to PostgreSQL with libpq's `sslmode` meanings, over rustls (ring provider).
//!
//! | sslmode       | encrypted          | the server's certificate checked            |
//! |---------------|--------------------|---------------------------------------------|
//! | `disable`     | never              | —                                           |
//! | `prefer`      | if the server can  | no                                          |
//! | `require`     | always             | no (signed by `sslrootcert`, when given)    |
//! | `verify-ca`   | always             | signed by a trusted CA                      |
//! | `verify-full` | always             | signed by a trusted CA, and for the host    |
//!
//! The trusted CAs are `sslrootcert` (a PEM file; by default `~/.postgresql/root.crt`
//! if it exists), or with `sslrootcert=system` the system's roots — then only with
//! `verify-full`, which is also the default then (as in libpq 16). A verifying mode with
//! no CA at all fails rather than trusting anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::problem::Misconfiguration;
use super::{StoreError, dsn::SplitDsn};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => Self::Disable,
            // `allow` tries without TLS first; memdb never prefers the clear.
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(StoreError::BadDsn(
                    "sslmode must be one of disable, prefer, require, verify-ca, verify-full".into(),
                ));
            }
        })
    }

    /// What tokio-postgres does with the connector.
    pub(crate) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            Self::Disable => Driver::Disable,
            Self::Prefer => Driver::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Driver::Require,
        }
    }
}

/// The TLS settings of a DSN: `sslmode` and `sslrootcert`, or libpq's `PGSSLMODE` and
/// `PGSSLROOTCERT` when the DSN has none.
#[derive(Clone, Debug)]
pub(crate) struct TlsSettings {
    /// The mode in effect (`require` with a CA file is `verify-ca`, as in libpq).
    pub mode: SslMode,
    roots: Roots,
}

/// Where the trusted CAs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    /// `sslrootcert=FILE`, or libpq's default `~/.postgresql/root.crt` if it exists.
    File(PathBuf),
    /// `sslrootcert=system`.
    System,
    /// None given, and no default file.
    Unset,
}

impl TlsSettings {
    pub(crate) fn of(split: &SplitDsn) -> Result<Self, StoreError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let roots = match split.sslrootcert.clone().or_else(|| env("PGSSLROOTCERT")).as_deref() {
            Some("system") => Roots::System,
            Some(path) => Roots::File(PathBuf::from(path)),
            None => default_root_file().map_or(Roots::Unset, Roots::File),
        };
        let mode = match split.sslmode.clone().or_else(|| env("PGSSLMODE")) {
            Some(mode) => SslMode::parse(&mode)?,
            // libpq 16: the system's CAs imply verify-full.
            None if roots == Roots::System => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        Self::checked(mode, roots)
    }

    /// ⚑ No mode is weaker than libpq's: the system's CAs vouch for every host name they
    /// signed, so they are trusted only with the host name checked (verify-full); a
    /// verifying mode without any CA given fails instead of trusting the system's.
    fn checked(mode: SslMode, roots: Roots) -> Result<Self, StoreError> {
        let mode = match (mode, &roots) {
            (SslMode::Require, Roots::File(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        match (mode, &roots) {
            (SslMode::VerifyFull, _) | (_, Roots::File(_) | Roots::Unset) => {}
            (_, Roots::System) => {
                return Err(StoreError::BadDsn(
                    "sslrootcert=system needs sslmode=verify-full: the system's CAs vouch for any host they signed"
                        .into(),
                ));
            }
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && roots == Roots::Unset {
            return Err(tls_setup(
                "sslmode=verify-ca and verify-full need the CA: set sslrootcert to its file (or, for verify-full, \
                 sslrootcert=system to trust the system's CAs)"
                    .into(),
            ));
        }
        Ok(Self { mode, roots })
    }

    /// The connector for these settings.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_setup(e.to_string()))?;
        let config = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => {
                builder.dangerous().with_custom_certificate_verifier(Arc::new(Lenient { chain: None, provider }))
            }
            SslMode::VerifyCa => {
                let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), Arc::clone(&provider))
                    .build()
                    .map_err(|e| tls_setup(e.to_string()))?;
                builder.dangerous().with_custom_certificate_verifier(Arc::new(Lenient { chain: Some(chain), provider }))
            }
            SslMode::VerifyFull => builder.with_root_certificates(self.roots()?),
        };
        Ok(MakeRustlsConnect::new(config.with_no_client_auth()))
    }

    fn roots(&self) -> Result<RootCertStore, StoreError> {
        let mut roots = RootCertStore::empty();
        match &self.roots {
            Roots::File(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| root_file_error(path, &e.to_string()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(root_file_error(path, "it holds no PEM certificate"));
                }
            }
            Roots::System | Roots::Unset => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                if roots.is_empty() {
                    return Err(tls_setup("sslrootcert=system, but no system root certificates were found".into()));
                }
            }
        }
        Ok(roots)
    }
}

/// libpq's default CA file, `~/.postgresql/root.crt`, if it exists.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql/root.crt");
    path.exists().then_some(path)
}

fn tls_setup(detail: String) -> StoreError {
    StoreError::Misconfigured { what: "setting up TLS", problem: Misconfiguration::TlsSetup, detail }
}

fn root_file_error(path: &Path, why: &str) -> StoreError {
    tls_setup(format!("cannot use the CA file {} (sslrootcert): {why}", path.display()))
}

/// The server-certificate check of `prefer` and `require` (`chain: None`: any
/// certificate, libpq's meaning) and of `verify-ca` (the chain must lead to a trusted CA;
/// the host name is not compared). The handshake's signatures are always checked against
/// the certificate presented.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        // webpki checks the name last, once the chain is valid.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libpq_mode_parses_and_others_are_refused() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(SslMode::parse(text).expect(text), mode);
        }
        assert!(SslMode::parse("verify_full").is_err());
    }

    #[test]
    fn a_missing_ca_file_names_the_setting() {
        let settings = TlsSettings::checked(SslMode::VerifyFull, Roots::File("/nonexistent/ca.pem".into()));
        let err = settings.expect("settings").connector().err().expect("no such file");
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }

    #[test]
    fn no_mode_is_weaker_than_libpqs() {
        let file = || Roots::File("/ca.pem".into());
        // require with a CA checks the chain.
        assert_eq!(TlsSettings::checked(SslMode::Require, file()).expect("require").mode, SslMode::VerifyCa);
        assert_eq!(TlsSettings::checked(SslMode::Require, Roots::Unset).expect("require").mode, SslMode::Require);
        // The system's CAs only with the host name checked.
        for weaker in [SslMode::Prefer, SslMode::Require, SslMode::VerifyCa] {
            assert!(TlsSettings::checked(weaker, Roots::System).is_err(), "{weaker:?} with system roots");
        }
        assert!(TlsSettings::checked(SslMode::VerifyFull, Roots::System).is_ok());
        // A verifying mode without any CA fails.
        for verifying in [SslMode::VerifyCa, SslMode::VerifyFull] {
            assert!(TlsSettings::checked(verifying, Roots::Unset).is_err(), "{verifying:?} without a CA");
        }
        let split = SplitDsn { sslrootcert: Some("system".into()), ..SplitDsn::default() };
        if std::env::var_os("PGSSLMODE").is_none() {
            assert_eq!(TlsSettings::of(&split).expect("system").mode, SslMode::VerifyFull, "the default then");
        }
    }
}
