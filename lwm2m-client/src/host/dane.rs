//! How the certificate a bootstrap server writes vouches for the management server: LwM2M
//! 1.1's Certificate Usage (Security resource 15) takes its values from DANE (RFC 6698
//! §2.1.1) and Matching Type (resource 13) says whether resource 4 holds that certificate or
//! a hash of it (LwM2M 1.1 Core E.1). So the check is DANE's, and OpenSSL's DANE
//! implementation (RFC 7671) does it: one TLSA record per session, made of the account's
//! resources, with the device's own trusted roots for the two PKIX usages.

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_ulong};

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ssl::{SslContextBuilder, SslRef};
use openssl::x509::X509;

use super::dtls::DtlsError;
use crate::objects::security::{CertificateUsage, MatchingType};

/// DANE's matching type (RFC 6698 §7.4): 0 full, 1 SHA2-256, 2 SHA2-512. SHA-384, which
/// LwM2M has and DANE has not, gets the private-use value, registered on each context.
fn dane_matching(m: MatchingType) -> u8 {
    match m {
        MatchingType::Exact => 0,
        MatchingType::Sha256 => 1,
        MatchingType::Sha512 => 2,
        MatchingType::Sha384 => PRIVATE_SHA384,
    }
}

/// DANE's private-use matching type (RFC 6698 §7.4), which these contexts give SHA-384.
const PRIVATE_SHA384: u8 = 255;

/// DANE's selector for the whole certificate (RFC 6698 §7.3): resource 4 is the certificate
/// or a hash of it, never of its key alone.
const SELECTOR_CERT: u8 = 0;

/// `DANE_FLAG_NO_DANE_EE_NAMECHECKS` (`x509_vfy.h`): a domain-issued certificate is taken by
/// itself, whatever it names (RFC 7671 §5.1), as LwM2M's usage 3 has always been.
const NO_DANE_EE_NAMECHECKS: c_ulong = 1;

/// What an account's resources 4, 13 and 15 say the server must present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAuth {
    /// Certificate Usage (resource 15); DANE's usage of the same number.
    pub usage: CertificateUsage,
    /// Matching Type (resource 13).
    pub matching: MatchingType,
    /// Server Public Key (resource 4): the certificate (DER) or its hash.
    pub data: Vec<u8>,
}

impl ServerAuth {
    /// Makes `b` a DANE context: the private SHA-384 matching type, and for the PKIX usages
    /// the device's `roots`, the only certificates the chain may end at besides the account's.
    pub(crate) fn prepare(
        &self,
        b: &mut SslContextBuilder,
        roots: &[X509],
    ) -> Result<(), DtlsError> {
        // SAFETY: the builder's context is valid; EVP_sha384 returns a static digest.
        let ok = unsafe {
            let ctx = b.as_ptr();
            SSL_CTX_dane_enable(ctx) > 0
                && SSL_CTX_dane_mtype_set(ctx, openssl_sys::EVP_sha384(), PRIVATE_SHA384, 1) > 0
        };
        if !ok {
            return Err(ErrorStack::get().into());
        }
        if self.usage.needs_roots() {
            for root in roots {
                b.cert_store_mut().add_cert(root.clone())?;
            }
        }
        Ok(())
    }

    /// Has `ssl` take only a server that presents what this says, its certificate naming
    /// `host` (the URI's, or the account's SNI) unless the usage is 3. `ssl` must come from a
    /// context [`ServerAuth::prepare`]d. A record OpenSSL cannot use (a hash of the wrong
    /// length, a certificate that does not parse) is an error here, before any handshake.
    pub(crate) fn apply(&self, ssl: &mut SslRef, host: &str) -> Result<(), DtlsError> {
        let base = CString::new(host)
            .map_err(|_| DtlsError::ServerAuth(format!("host {host:?} has a NUL byte")))?;
        let ptr = ssl.as_ptr();
        // SAFETY: a valid SSL, a NUL-terminated name and `data` for its length; OpenSSL copies
        // both.
        let added = unsafe {
            if SSL_dane_enable(ptr, base.as_ptr()) <= 0 {
                return Err(ErrorStack::get().into());
            }
            SSL_dane_set_flags(ptr, NO_DANE_EE_NAMECHECKS);
            SSL_dane_tlsa_add(
                ptr,
                self.usage as u8,
                SELECTOR_CERT,
                dane_matching(self.matching),
                self.data.as_ptr(),
                self.data.len(),
            )
        };
        if added <= 0 {
            // OpenSSL's reason (e.g. a bad digest length) when it queued one.
            let why = ErrorStack::get();
            return Err(DtlsError::ServerAuth(format!("{self}: {why}")));
        }
        if host.parse::<std::net::IpAddr>().is_ok() {
            // SSL_dane_enable took the base domain for a DNS name: an IP literal is neither
            // SNI (RFC 6066 §3) nor a dNSName to match; the caller checks it as an address.
            // SAFETY: a valid SSL; a null name clears the SNI OpenSSL copied.
            unsafe {
                openssl_sys::SSL_ctrl(
                    ptr,
                    openssl_sys::SSL_CTRL_SET_TLSEXT_HOSTNAME,
                    openssl_sys::TLSEXT_NAMETYPE_host_name as _,
                    std::ptr::null_mut(),
                );
            }
            ssl.param_mut().set_host("")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Certificate Usage {:?}, Matching Type {:?}, {} bytes",
            self.usage,
            self.matching,
            self.data.len()
        )
    }
}

extern "C" {
    fn SSL_CTX_dane_enable(ctx: *mut openssl_sys::SSL_CTX) -> c_int;
    fn SSL_CTX_dane_mtype_set(
        ctx: *mut openssl_sys::SSL_CTX,
        md: *const openssl_sys::EVP_MD,
        mtype: u8,
        ord: u8,
    ) -> c_int;
    fn SSL_dane_enable(s: *mut openssl_sys::SSL, basedomain: *const c_char) -> c_int;
    fn SSL_dane_set_flags(s: *mut openssl_sys::SSL, flags: c_ulong) -> c_ulong;
    fn SSL_dane_tlsa_add(
        s: *mut openssl_sys::SSL,
        usage: u8,
        selector: u8,
        mtype: u8,
        data: *const u8,
        dlen: usize,
    ) -> c_int;
}
