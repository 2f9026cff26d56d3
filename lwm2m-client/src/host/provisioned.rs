//! The transport to the management server a bootstrap server provisioned: its address from
//! the Security object's URI (resource 0) and, for `coaps://`, a DTLS context made of the
//! account's credentials (resources 2-5; LwM2M 1.1 Core §6.1 and Appendix E.1). Bootstrap
//! exists mostly to hand a device these credentials: a device that kept its bootstrap-time
//! transport would talk plain CoAP to a DTLS port.

use crate::host::dtls::{DtlsContext, DtlsError, Psk, ServerAuth};
use crate::host::runtime::resolve_server_now;
use crate::objects::security::{Credentials, Inconsistency, SecurityMode};
use openssl::x509::X509;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a provisioned account cannot be used; the device names it and stops. The engine
/// refuses inconsistent accounts at Bootstrap-Finish already; this is what is left to the host.
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    /// The account cannot reach its server (as the engine checks it).
    Inconsistent(Inconsistency),
    /// The URI's host does not resolve.
    Uri(String),
    /// OpenSSL refused the credentials.
    Dtls(String),
    /// No socket could be bound to reach the server.
    Socket(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inconsistent(why) => write!(f, "{why}"),
            Self::Uri(u) => write!(f, "server URI {u:?} does not resolve"),
            Self::Dtls(e) => write!(f, "DTLS: {e}"),
            Self::Socket(e) => write!(f, "socket: {e}"),
        }
    }
}

impl std::error::Error for Unusable {}

/// The Security Modes this runtime builds transports for.
pub const SUPPORTED: [SecurityMode; 3] = [
    SecurityMode::NoSec,
    SecurityMode::Psk,
    SecurityMode::Certificate,
];

/// The roots this device trusts of its own (`--trust-store`): what a server's chain must end
/// at under the PKIX Certificate Usages 0 and 1 (LwM2M 1.1 Core E.1 resource 15, RFC 6698
/// §2.1.1), where resource 4 only narrows which chains count. Usages 2 and 3 never use them.
#[derive(Clone, Default)]
pub struct TrustStore {
    roots: Arc<Vec<X509>>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustStore({} roots)", self.roots.len())
    }
}

impl TrustStore {
    /// The certificates of a PEM file (one or more); `None` when it holds none, or one that
    /// does not parse.
    pub fn from_pem(pem: &[u8]) -> Option<Self> {
        let roots = X509::stack_from_pem(pem).ok().filter(|r| !r.is_empty())?;
        Some(Self {
            roots: Arc::new(roots),
        })
    }

    /// [`Config::credentials_check`](crate::Config::credentials_check) for this runtime: the
    /// account is consistent, OpenSSL takes its credentials (a certificate and key that parse
    /// and belong together, a server certificate or hash it can match) and a PKIX usage has
    /// roots to end at, so the bootstrap server hears 4.06 at Bootstrap-Finish for an account
    /// the device could not use.
    pub fn check(&self, server_uri: &str, c: &Credentials) -> Result<(), Inconsistency> {
        c.check(server_uri, &SUPPORTED)?;
        match self.dtls_context(server_uri, c) {
            Ok(_) => Ok(()),
            Err(Unusable::Inconsistent(why)) => Err(why),
            Err(_) => Err(Inconsistency::Refused),
        }
    }

    /// The server's address and, for `coaps://`, the DTLS context to reach it with.
    pub fn transport(
        &self,
        server_uri: &str,
        c: &Credentials,
    ) -> Result<(SocketAddr, Option<DtlsContext>), Unusable> {
        c.check(server_uri, &SUPPORTED)
            .map_err(Unusable::Inconsistent)?;
        let dtls = self.dtls_context(server_uri, c)?;
        let addr = resolve_server_now(server_uri).map_err(|_| Unusable::Uri(server_uri.into()))?;
        Ok((addr, dtls))
    }

    /// The DTLS context of a consistent account for `server_uri`, offering the account's
    /// cipher suites (resource 16) when it lists any; `None` for NoSec.
    fn dtls_context(
        &self,
        server_uri: &str,
        c: &Credentials,
    ) -> Result<Option<DtlsContext>, Unusable> {
        let Some(ctx) = self.mode_context(server_uri, c)? else {
            return Ok(None);
        };
        match ctx.offering(&c.cipher_suites) {
            Ok(ctx) => Ok(Some(ctx)),
            Err(DtlsError::NoSuite(_)) => Err(Unusable::Inconsistent(Inconsistency::CipherSuites)),
            Err(e) => Err(Unusable::Dtls(e.to_string())),
        }
    }

    /// The DTLS context of the account's Security Mode; in certificate mode the server must
    /// present what resources 4, 13 and 15 say, and name the host dialled or the account's SNI
    /// (resource 14) unless the usage is 3.
    fn mode_context(
        &self,
        server_uri: &str,
        c: &Credentials,
    ) -> Result<Option<DtlsContext>, Unusable> {
        let dtls = |e: DtlsError| Unusable::Dtls(e.to_string());
        Ok(match c.mode {
            SecurityMode::Psk => {
                let psk = Psk {
                    identity: c.identity.clone(),
                    key: c.secret_key.clone(),
                };
                Some(DtlsContext::psk_client(psk).map_err(dtls)?)
            }
            SecurityMode::Certificate => {
                if c.usage.needs_roots() && self.roots.is_empty() {
                    return Err(Unusable::Inconsistent(Inconsistency::Usage(c.usage)));
                }
                let auth = ServerAuth {
                    usage: c.usage,
                    matching: c.matching_type,
                    data: c.server_key.clone(),
                };
                let host = match c.sni.as_str() {
                    "" => crate::pull::coap::CoapUri::parse(server_uri)
                        .map(|u| u.host)
                        .map_err(|_| Unusable::Uri(server_uri.into()))?,
                    sni => sni.to_owned(),
                };
                let ctx = DtlsContext::cert_client_provisioned(
                    &c.identity,
                    &c.secret_key,
                    auth,
                    &self.roots,
                )
                .map_err(dtls)?;
                Some(ctx.with_peer_name(&host))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(mode: SecurityMode, identity: &[u8], key: &[u8]) -> Credentials {
        let server_key = if mode == SecurityMode::NoSec || mode == SecurityMode::Psk {
            Vec::new()
        } else {
            b"server".to_vec()
        };
        Credentials::new(mode, identity.to_vec(), server_key, key.to_vec())
    }

    /// Why `transport` refused (a DTLS context has no Debug, so no `unwrap_err`).
    fn refusal(uri: &str, c: &Credentials) -> Unusable {
        match TrustStore::default().transport(uri, c) {
            Ok(_) => panic!("{uri}: taken"),
            Err(e) => e,
        }
    }

    #[test]
    fn no_sec_is_plain_and_psk_is_dtls() {
        let (addr, dtls) = TrustStore::default()
            .transport(
                "coap://127.0.0.1:5690",
                &creds(SecurityMode::NoSec, b"", b""),
            )
            .unwrap();
        assert_eq!(addr, "127.0.0.1:5690".parse().unwrap());
        assert!(dtls.is_none());
        let (addr, dtls) = TrustStore::default()
            .transport(
                "coaps://127.0.0.1",
                &creds(SecurityMode::Psk, b"id", b"key"),
            )
            .unwrap();
        assert_eq!(addr, "127.0.0.1:5684".parse().unwrap());
        assert!(dtls.is_some());
    }

    #[test]
    fn accounts_that_cannot_reach_their_server_are_named() {
        let psk = creds(SecurityMode::Psk, b"id", b"key");
        let no_sec = creds(SecurityMode::NoSec, b"", b"");
        assert_eq!(
            refusal("coaps://127.0.0.1", &no_sec),
            Unusable::Inconsistent(Inconsistency::SchemeAndMode(SecurityMode::NoSec))
        );
        assert_eq!(
            refusal("coap://127.0.0.1", &psk),
            Unusable::Inconsistent(Inconsistency::SchemeAndMode(SecurityMode::Psk))
        );
        assert_eq!(
            refusal("coaps://127.0.0.1", &creds(SecurityMode::Psk, b"id", b"")),
            Unusable::Inconsistent(Inconsistency::EmptyPsk)
        );
        assert_eq!(
            refusal("coaps://127.0.0.1", &creds(SecurityMode::Rpk, b"k", b"k")),
            Unusable::Inconsistent(Inconsistency::Unsupported(SecurityMode::Rpk))
        );
        assert_eq!(
            refusal(
                "coaps://127.0.0.1",
                &creds(SecurityMode::Certificate, b"", b"")
            ),
            Unusable::Inconsistent(Inconsistency::NoKeys)
        );
        // Certificate mode with bytes that are no certificate: OpenSSL says so.
        assert!(matches!(
            refusal(
                "coaps://127.0.0.1",
                &creds(SecurityMode::Certificate, b"x", b"y")
            ),
            Unusable::Dtls(_)
        ));
        assert_eq!(
            refusal("http://127.0.0.1", &no_sec),
            Unusable::Inconsistent(Inconsistency::Scheme)
        );
        assert_eq!(
            refusal("coap://no such host", &no_sec),
            Unusable::Uri("coap://no such host".into())
        );
    }
}
