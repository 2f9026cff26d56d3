//! The transport to the management server a bootstrap server provisioned: its address from
//! the Security object's URI (resource 0) and, for `coaps://`, a DTLS context made of the
//! account's credentials (resources 2-5; LwM2M 1.1 Core §5.2.7 and Appendix E.1). Bootstrap
//! exists mostly to hand a device these credentials: a device that kept its bootstrap-time
//! transport would talk plain CoAP to a DTLS port.

use crate::host::dtls::{DtlsContext, Psk};
use crate::host::runtime::resolve_server_now;
use crate::objects::security::{Credentials, SecurityMode};
use std::fmt;
use std::net::SocketAddr;

/// Why a provisioned account cannot be used; the device names it and stops.
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    /// The URI does not resolve or is not `coap[s]://host[:port]`.
    Uri(String),
    /// The URI's scheme does not fit the Security Mode (e.g. `coaps://` with NoSec).
    SchemeAndMode(String, SecurityMode),
    /// PSK mode without an identity or without a key.
    EmptyPsk,
    /// A mode this device takes from its command line only (certificate, raw public key).
    Mode(SecurityMode),
    /// OpenSSL refused the credentials.
    Dtls(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uri(u) => write!(f, "server URI {u:?} is not coap[s]://host[:port]"),
            Self::SchemeAndMode(u, m) => {
                write!(f, "server URI {u:?} does not fit Security Mode {m:?}")
            }
            Self::EmptyPsk => write!(f, "PSK mode without an identity or a key"),
            Self::Mode(m) => write!(
                f,
                "Security Mode {m:?} is not taken from a bootstrap server (NoSec and PSK are)"
            ),
            Self::Dtls(e) => write!(f, "DTLS: {e}"),
        }
    }
}

impl std::error::Error for Unusable {}

/// The server's address and, for `coaps://`, the DTLS context to reach it with.
pub fn transport(
    server_uri: &str,
    c: &Credentials,
) -> Result<(SocketAddr, Option<DtlsContext>), Unusable> {
    let secure = server_uri.starts_with("coaps://");
    if !secure && !server_uri.starts_with("coap://") {
        return Err(Unusable::Uri(server_uri.into()));
    }
    let dtls = match (c.mode, secure) {
        (SecurityMode::NoSec, false) => None,
        (SecurityMode::Psk, true) => {
            if c.identity.is_empty() || c.secret_key.is_empty() {
                return Err(Unusable::EmptyPsk);
            }
            let psk = Psk {
                identity: c.identity.clone(),
                key: c.secret_key.clone(),
            };
            Some(DtlsContext::psk_client(psk).map_err(|e| Unusable::Dtls(e.to_string()))?)
        }
        (SecurityMode::Certificate | SecurityMode::Rpk, true) => {
            return Err(Unusable::Mode(c.mode))
        }
        (mode, _) => return Err(Unusable::SchemeAndMode(server_uri.into(), mode)),
    };
    let addr = resolve_server_now(server_uri).map_err(|_| Unusable::Uri(server_uri.into()))?;
    Ok((addr, dtls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(mode: SecurityMode, identity: &[u8], key: &[u8]) -> Credentials {
        Credentials {
            mode,
            identity: identity.to_vec(),
            server_key: Vec::new(),
            secret_key: key.to_vec(),
        }
    }

    /// Why `transport` refused (a DTLS context has no Debug, so no `unwrap_err`).
    fn refusal(uri: &str, c: &Credentials) -> Unusable {
        match transport(uri, c) {
            Ok(_) => panic!("{uri}: taken"),
            Err(e) => e,
        }
    }

    #[test]
    fn no_sec_is_plain_and_psk_is_dtls() {
        let (addr, dtls) = transport(
            "coap://127.0.0.1:5690",
            &creds(SecurityMode::NoSec, b"", b""),
        )
        .unwrap();
        assert_eq!(addr, "127.0.0.1:5690".parse().unwrap());
        assert!(dtls.is_none());
        let (addr, dtls) = transport(
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
            Unusable::SchemeAndMode("coaps://127.0.0.1".into(), SecurityMode::NoSec)
        );
        assert_eq!(
            refusal("coap://127.0.0.1", &psk),
            Unusable::SchemeAndMode("coap://127.0.0.1".into(), SecurityMode::Psk)
        );
        assert_eq!(
            refusal("coaps://127.0.0.1", &creds(SecurityMode::Psk, b"id", b"")),
            Unusable::EmptyPsk
        );
        assert_eq!(
            refusal(
                "coaps://127.0.0.1",
                &creds(SecurityMode::Certificate, b"", b"")
            ),
            Unusable::Mode(SecurityMode::Certificate)
        );
        assert_eq!(
            refusal("http://127.0.0.1", &no_sec),
            Unusable::Uri("http://127.0.0.1".into())
        );
        assert_eq!(
            refusal("coap://no such host", &no_sec),
            Unusable::Uri("coap://no such host".into())
        );
    }
}
