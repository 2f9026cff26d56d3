//! The coaps listener's credentials on the command line: clients' pre-shared keys (as
//! Leshan's security store holds them), which `serve` and `conformance` take, and the shim's
//! certificate for certificate-mode clients, which `serve` takes as `--cert/--key/--ca` and
//! `conformance` as `--dtls-cert/--dtls-key/--dtls-ca` (its `--key` is the SUIT signing key).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use lwm2m_client::host::dtls::CertIdentity;
use lwm2m_server_shim::coap::dtls_socket::ServerCertificate;
use lwm2m_server_shim::server::security::store::{
    InMemorySecurityStore, SecurityInfo, SecurityStore,
};
use object5::author;

use crate::cli::read_file;

/// Which PSK identities may open a DTLS session on the coaps port, and as which endpoint.
#[derive(Args, Debug, Default)]
pub struct PskCredentials {
    /// A client's pre-shared key, `ENDPOINT:IDENTITY:HEXKEY` (repeatable): the identity may
    /// register only as ENDPOINT. Others on the host see it in the process list:
    /// --security-file keeps keys out of there.
    #[arg(long, value_parser = SecurityInfo::parse_cli)]
    pub psk: Vec<SecurityInfo>,
    /// JSON file of security info in Leshan's shape, one object or an array:
    /// `{"endpoint":"dev1","psk":{"identity":"dev1-id","key":"00112233"}}`.
    #[arg(long)]
    pub security_file: Option<PathBuf>,
}

impl PskCredentials {
    /// A security store holding every key given; an unreadable file or a refused key is one
    /// line naming it.
    pub fn store(&self) -> Result<Arc<InMemorySecurityStore>, String> {
        let security = Arc::new(InMemorySecurityStore::new());
        let mut infos = self.psk.clone();
        if let Some(path) = &self.security_file {
            let text = String::from_utf8_lossy(&read_file(path, SECURITY_FILE_LIMIT)?).into_owned();
            let more =
                SecurityInfo::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            infos.extend(more);
        }
        for info in infos {
            security
                .put(info)
                .map_err(|e| format!("security info refused: {e}"))?;
        }
        Ok(security)
    }
}

/// The shim's certificate for certificate-mode clients on the coaps port. `serve` also takes
/// `conformance`'s names for them (`--dtls-cert`, `--dtls-key`, `--dtls-ca`), so one command
/// line's options carry over to the other.
#[derive(Args, Debug, Default)]
pub struct CertCredentials {
    /// Certificate mode on the coaps port (besides PSK): the shim's certificate (PEM, P-256).
    /// Clients must present a certificate from --ca and register as its common name.
    #[arg(long, visible_alias = "dtls-cert", requires_all = ["key", "ca"], value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(
        long,
        visible_alias = "dtls-key",
        requires = "cert",
        value_name = "PEM"
    )]
    pub key: Option<PathBuf>,
    /// CA certificate (PEM) that certificate-mode clients must chain to.
    #[arg(long, visible_alias = "dtls-ca", requires = "cert", value_name = "PEM")]
    pub ca: Option<PathBuf>,
}

impl CertCredentials {
    /// The certificate, key and CA from their files, when given.
    pub fn certificate(&self) -> Result<Option<ServerCertificate>, String> {
        certificate(&self.cert, &self.key, &self.ca)
    }
}

/// [`CertCredentials`] under the names `conformance` can take: its `--key` is the key that
/// signs SUIT test packages.
#[derive(Args, Debug, Default)]
pub struct DtlsCertCredentials {
    /// Certificate mode on the coaps port (besides PSK): the shim's certificate (PEM, P-256).
    /// Clients must present a certificate from --dtls-ca and register as its common name.
    #[arg(long, requires_all = ["dtls_key", "dtls_ca"], value_name = "PEM")]
    pub dtls_cert: Option<PathBuf>,
    /// Private key (PEM) of --dtls-cert.
    #[arg(long, requires = "dtls_cert", value_name = "PEM")]
    pub dtls_key: Option<PathBuf>,
    /// CA certificate (PEM) that certificate-mode clients must chain to.
    #[arg(long, requires = "dtls_cert", value_name = "PEM")]
    pub dtls_ca: Option<PathBuf>,
}

impl DtlsCertCredentials {
    /// The certificate, key and CA from their files, when given.
    pub fn certificate(&self) -> Result<Option<ServerCertificate>, String> {
        certificate(&self.dtls_cert, &self.dtls_key, &self.dtls_ca)
    }
}

fn certificate(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    ca: &Option<PathBuf>,
) -> Result<Option<ServerCertificate>, String> {
    let (Some(cert), Some(key), Some(ca)) = (cert, key, ca) else {
        return Ok(None);
    };
    Ok(Some(ServerCertificate(CertIdentity {
        cert_pem: read_file(cert, author::CERT_FILE_LIMIT)?,
        key_pem: read_file(key, author::KEY_FILE_LIMIT)?,
        ca_pem: read_file(ca, author::CERT_FILE_LIMIT)?,
    })))
}

/// How far a --security-file is read: some 200 bytes per device, so far above any fleet's.
const SECURITY_FILE_LIMIT: u64 = 256 * 1024 * 1024;
