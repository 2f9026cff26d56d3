//! Object 0, LwM2M Security: server URIs and credentials, one instance per server account
//! (the bootstrap server's included). The engine reads it; management servers may not (4.01);
//! a bootstrap server writes and deletes instances during bootstrap. Resources 0-12 are
//! Security 1.0's; of 1.1's (LwM2M 1.1 Core E.1) 13-16 are modelled: Matching Type, SNI,
//! Certificate Usage and DTLS/TLS Ciphersuite, which Leshan's bootstrap server writes when an
//! operator chooses them.

use crate::codec::{Resource, ResourceType as T, ResourceValue, Value};
use crate::object::{Completion, ObjectHandler, OpError, Ops, ResourceDef};
use alloc::string::String;
use alloc::vec::Vec;

const MODEL: &[ResourceDef] = &[
    ResourceDef::new(0, Ops::RW, false, T::String),
    ResourceDef::new(1, Ops::RW, false, T::Boolean),
    ResourceDef::new(2, Ops::RW, false, T::Integer),
    ResourceDef::new(3, Ops::RW, false, T::Opaque),
    ResourceDef::new(4, Ops::RW, false, T::Opaque),
    ResourceDef::new(5, Ops::RW, false, T::Opaque),
    ResourceDef::new(6, Ops::RW, false, T::Integer),
    ResourceDef::new(7, Ops::RW, false, T::Opaque),
    ResourceDef::new(8, Ops::RW, false, T::Opaque),
    ResourceDef::new(9, Ops::RW, false, T::String),
    ResourceDef::new(10, Ops::RW, false, T::Integer),
    ResourceDef::new(11, Ops::RW, false, T::Integer),
    ResourceDef::new(12, Ops::RW, false, T::Integer),
    ResourceDef::new(13, Ops::RW, false, T::Integer),
    ResourceDef::new(14, Ops::RW, false, T::String),
    ResourceDef::new(15, Ops::RW, false, T::Integer),
    ResourceDef::new(16, Ops::RW, true, T::Unsigned).single_too(),
];

/// Most cipher suites an account lists (resource 16); a TLS ClientHello offers a handful.
pub const MAX_CIPHER_SUITES: usize = 16;

/// Resources of Security 1.0 (LwM2M 1.0 TS Appendix E.1) this device keeps as written but does
/// not act on: the SMS binding (6 SMS Security Mode, 7 SMS Binding Key Parameters, 8 SMS
/// Binding Secret Key(s), 9 LwM2M Server SMS Number; it has no SMS bearer) and 12
/// Bootstrap-Server Account Timeout. Bootstrap servers write whole instances, these included
/// (Leshan writes 0-12), and an instance refused for them leaves the device unprovisioned.
const KEPT_AS_WRITTEN: [u16; 5] = [6, 7, 8, 9, 12];

/// The variant whose resource value is `c`, for the enums here whose codes are their
/// positions in `all` (checked by `codes_are_positions`).
fn by_code<T: Copy>(all: &[T], c: i64) -> Option<T> {
    usize::try_from(c).ok().and_then(|i| all.get(i)).copied()
}

/// Security Mode values (resource 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    /// 0: pre-shared key.
    Psk = 0,
    /// 1: raw public key.
    Rpk = 1,
    /// 2: certificate.
    Certificate = 2,
    /// 3: no security (plain CoAP).
    NoSec = 3,
}

impl SecurityMode {
    const ALL: [Self; 4] = [Self::Psk, Self::Rpk, Self::Certificate, Self::NoSec];

    /// The mode of a resource 2 value; `None` for codes this device does not know.
    pub fn from_code(c: i64) -> Option<Self> {
        by_code(&Self::ALL, c)
    }
}

/// Certificate Usage (resource 15, LwM2M 1.1 Core E.1, the values of DANE, RFC 6698 §2.1.1):
/// what the certificate in resource 4 says about the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateUsage {
    /// 0, CA constraint: the server's chain includes it and ends at a trusted root.
    CaConstraint = 0,
    /// 1, service certificate constraint: it is the server's, which also chains to a trusted
    /// root.
    ServiceCertificateConstraint = 1,
    /// 2, trust anchor assertion: the server's chain ends at it; the server's certificate
    /// names the host the client dials.
    TrustAnchorAssertion = 2,
    /// 3, domain-issued certificate (the default): it is the server's own certificate.
    DomainIssuedCertificate = 3,
}

impl CertificateUsage {
    /// The PKIX usages (0, 1): the server's chain must also end at a root the device itself
    /// trusts, which resource 4 does not give.
    pub fn needs_roots(self) -> bool {
        matches!(
            self,
            Self::CaConstraint | Self::ServiceCertificateConstraint
        )
    }

    const ALL: [Self; 4] = [
        Self::CaConstraint,
        Self::ServiceCertificateConstraint,
        Self::TrustAnchorAssertion,
        Self::DomainIssuedCertificate,
    ];

    /// The usage of a resource 15 value; `None` outside 0-3.
    pub fn from_code(c: i64) -> Option<Self> {
        by_code(&Self::ALL, c)
    }
}

/// Matching Type (resource 13, LwM2M 1.1 Core E.1): resource 4 holds the whole certificate
/// (DER) or its SHA-2 hash (RFC 6234).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchingType {
    /// 0, exact match (the default).
    Exact = 0,
    /// 1, SHA-256.
    Sha256 = 1,
    /// 2, SHA-384.
    Sha384 = 2,
    /// 3, SHA-512.
    Sha512 = 3,
}

impl MatchingType {
    const ALL: [Self; 4] = [Self::Exact, Self::Sha256, Self::Sha384, Self::Sha512];

    /// The matching type of a resource 13 value; `None` outside 0-3.
    pub fn from_code(c: i64) -> Option<Self> {
        by_code(&Self::ALL, c)
    }

    /// The length resource 4 has under this type: the hash's, `None` for a certificate.
    pub fn hash_len(self) -> Option<usize> {
        match self {
            Self::Exact => None,
            Self::Sha256 => Some(32),
            Self::Sha384 => Some(48),
            Self::Sha512 => Some(64),
        }
    }
}

/// What a transport needs to reach a server of an account: resources 2-5 and 13-16 (LwM2M 1.1
/// Core E.1). In PSK mode `identity` is the PSK identity and `secret_key` the key; in
/// certificate mode the client's certificate, the certificate resource 4 holds (see `usage`)
/// and the client's private key (DER).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Security Mode (resource 2).
    pub mode: SecurityMode,
    /// Public Key or Identity (resource 3).
    pub identity: Vec<u8>,
    /// Server Public Key (resource 4).
    pub server_key: Vec<u8>,
    /// Secret Key (resource 5).
    pub secret_key: Vec<u8>,
    /// Matching Type (resource 13): whether resource 4 is the certificate or its hash.
    pub matching_type: MatchingType,
    /// SNI (resource 14): the server name to ask for and to find in its certificate instead of
    /// the URI's host; empty for none.
    pub sni: String,
    /// Certificate Usage (resource 15).
    pub usage: CertificateUsage,
    /// DTLS/TLS Ciphersuite (resource 16): the IANA code points of the suites the client is to
    /// propose in its ClientHello, in order; empty for the transport's own choice.
    pub cipher_suites: Vec<u16>,
}

impl Credentials {
    /// Resources 2-5 with the defaults of 13-16: exact match, no SNI, domain-issued
    /// certificate, the transport's cipher suites.
    pub fn new(
        mode: SecurityMode,
        identity: Vec<u8>,
        server_key: Vec<u8>,
        secret_key: Vec<u8>,
    ) -> Self {
        Self {
            mode,
            identity,
            server_key,
            secret_key,
            matching_type: MatchingType::Exact,
            sni: String::new(),
            usage: CertificateUsage::DomainIssuedCertificate,
            cipher_suites: Vec::new(),
        }
    }
}

impl core::fmt::Debug for Credentials {
    /// Everything but the secret key, so that logging an event never logs a key.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credentials")
            .field("mode", &self.mode)
            .field("identity", &self.identity)
            .field("server_key", &self.server_key)
            .field("matching_type", &self.matching_type)
            .field("sni", &self.sni)
            .field("usage", &self.usage)
            .field("cipher_suites", &self.cipher_suites)
            .field(
                "secret_key",
                &format_args!("<{} bytes>", self.secret_key.len()),
            )
            .finish()
    }
}

/// Why a provisioned account cannot reach its server: the Bootstrap-Finish that would end on
/// it is answered 4.06 Not Acceptable (LwM2M 1.1 Core §6.1, Bootstrap-Finish: the configuration is
/// inconsistent), so the bootstrap server learns of it rather than the device going nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inconsistency {
    /// The URI is neither `coap://` nor `coaps://`.
    Scheme,
    /// `coap://` with a secure mode, or `coaps://` with NoSec.
    SchemeAndMode(SecurityMode),
    /// PSK mode without an identity or without a key.
    EmptyPsk,
    /// Certificate or raw-public-key mode without the device's certificate or key, or without
    /// the server's certificate or key.
    NoKeys,
    /// A mode this device does not take from a bootstrap server.
    Unsupported(SecurityMode),
    /// A PKIX certificate usage (0, 1) on a device that trusts no roots of its own.
    Usage(CertificateUsage),
    /// Resource 4 is not what the matching type says: a hash of another length.
    MatchingType(MatchingType),
    /// Resource 16 lists no cipher suite the device's DTLS implements for the account's mode.
    CipherSuites,
    /// The device's transport refused the credentials (a certificate or key that does not
    /// parse, or a key that is not the certificate's).
    Refused,
}

impl core::fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Scheme => f.write_str("the server URI is not coap:// or coaps://"),
            Self::SchemeAndMode(m) => {
                write!(f, "the URI's scheme does not fit Security Mode {m:?}")
            }
            Self::EmptyPsk => f.write_str("PSK mode without an identity or a key"),
            Self::NoKeys => f.write_str("no certificate or key of the device's or the server's"),
            Self::Unsupported(m) => write!(f, "Security Mode {m:?} is not supported"),
            Self::Usage(u) => write!(
                f,
                "Certificate Usage {u:?} needs trusted roots, and the device has none"
            ),
            Self::MatchingType(m) => write!(
                f,
                "the Server Public Key is not what Matching Type {m:?} says it is"
            ),
            Self::CipherSuites => f.write_str(
                "none of the DTLS/TLS Ciphersuites (resource 16) is implemented for this mode",
            ),
            Self::Refused => f.write_str("the DTLS layer refused the certificate or key"),
        }
    }
}

impl Credentials {
    /// Whether these credentials can reach `uri` on a device that takes the `supported` modes.
    pub fn check(&self, uri: &str, supported: &[SecurityMode]) -> Result<(), Inconsistency> {
        let secure = match uri.split_once("://") {
            Some(("coap", _)) => false,
            Some(("coaps", _)) => true,
            _ => return Err(Inconsistency::Scheme),
        };
        if secure == (self.mode == SecurityMode::NoSec) {
            return Err(Inconsistency::SchemeAndMode(self.mode));
        }
        if !supported.contains(&self.mode) {
            return Err(Inconsistency::Unsupported(self.mode));
        }
        let empty = self.identity.is_empty() || self.secret_key.is_empty();
        match self.mode {
            SecurityMode::Psk if empty => return Err(Inconsistency::EmptyPsk),
            SecurityMode::Certificate | SecurityMode::Rpk
                if empty || self.server_key.is_empty() =>
            {
                return Err(Inconsistency::NoKeys)
            }
            _ => {}
        }
        if self.mode == SecurityMode::Certificate {
            if let Some(len) = self.matching_type.hash_len() {
                if self.server_key.len() != len {
                    return Err(Inconsistency::MatchingType(self.matching_type));
                }
            }
        }
        Ok(())
    }
}

/// One server account.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    /// Instance id.
    pub id: u16,
    /// Server URI (`coap://host:port`).
    pub server_uri: String,
    /// This account is the bootstrap server's.
    pub bootstrap: bool,
    /// Security mode.
    pub mode: SecurityMode,
    /// PSK identity or public key (resource 3).
    pub identity: Vec<u8>,
    /// Server public key (resource 4).
    pub server_key: Vec<u8>,
    /// Secret key (resource 5).
    pub key: Vec<u8>,
    /// Short Server ID (resource 10).
    pub short_server_id: u16,
    /// Client hold-off time before bootstrapping, seconds (resource 11).
    pub hold_off_s: u32,
    /// Matching Type (resource 13).
    pub matching_type: MatchingType,
    /// SNI (resource 14); empty for none.
    pub sni: String,
    /// Certificate Usage (resource 15).
    pub usage: CertificateUsage,
    /// DTLS/TLS Ciphersuite (resource 16), IANA code points in order.
    pub cipher_suites: Vec<u16>,
    /// Values written to resources 6-9 and 12 (SMS binding, Bootstrap-Server Account Timeout),
    /// which this device keeps but does not act on, by resource id.
    pub kept: Vec<(u16, Value)>,
}

impl Account {
    fn new(id: u16, uri: &str, bootstrap: bool) -> Self {
        Self {
            id,
            server_uri: uri.into(),
            bootstrap,
            mode: SecurityMode::NoSec,
            identity: Vec::new(),
            server_key: Vec::new(),
            key: Vec::new(),
            short_server_id: if bootstrap { 0 } else { 1 },
            hold_off_s: 0,
            matching_type: MatchingType::Exact,
            sni: String::new(),
            usage: CertificateUsage::DomainIssuedCertificate,
            cipher_suites: Vec::new(),
            kept: Vec::new(),
        }
    }
}

/// Object 0 with its accounts.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Accounts, ascending instance ids.
    pub accounts: Vec<Account>,
}

impl Security {
    /// One NoSec management-server account for `server_uri` with Short Server ID 1.
    pub fn no_sec(server_uri: &str) -> Self {
        Self {
            accounts: alloc::vec![Account::new(0, server_uri, false)],
        }
    }

    /// One NoSec bootstrap-server account for `bootstrap_uri`: the client bootstraps first.
    pub fn bootstrap(bootstrap_uri: &str) -> Self {
        Self {
            accounts: alloc::vec![Account::new(0, bootstrap_uri, true)],
        }
    }

    /// The first management-server (non-bootstrap) account.
    pub fn management_account(&self) -> Option<&Account> {
        self.accounts.iter().find(|a| !a.bootstrap)
    }

    fn account(&mut self, instance: u16) -> Result<&mut Account, OpError> {
        self.accounts
            .iter_mut()
            .find(|a| a.id == instance)
            .ok_or(OpError::NotFound)
    }
}

fn opaque(v: &[u8]) -> ResourceValue {
    ResourceValue::Single(Value::Opaque(v.to_vec()))
}

impl ObjectHandler for Security {
    fn id(&self) -> u16 {
        0
    }
    fn model(&self) -> &'static [ResourceDef] {
        MODEL
    }
    fn instances(&self) -> Vec<u16> {
        self.accounts.iter().map(|a| a.id).collect()
    }
    fn read(&mut self, _now: u64, instance: u16, resource: u16) -> Result<ResourceValue, OpError> {
        let a = self.account(instance)?;
        let int = |i: i64| ResourceValue::Single(Value::Integer(i));
        Ok(match resource {
            0 => ResourceValue::Single(Value::String(a.server_uri.clone())),
            1 => ResourceValue::Single(Value::Boolean(a.bootstrap)),
            2 => int(a.mode as i64),
            3 => opaque(&a.identity),
            4 => opaque(&a.server_key),
            5 => opaque(&a.key),
            10 => int(i64::from(a.short_server_id)),
            11 => int(i64::from(a.hold_off_s)),
            13 => int(a.matching_type as i64),
            14 => ResourceValue::Single(Value::String(a.sni.clone())),
            15 => int(a.usage as i64),
            16 if !a.cipher_suites.is_empty() => ResourceValue::Multiple(
                (0u16..)
                    .zip(a.cipher_suites.iter())
                    .map(|(i, s)| (i, Value::Unsigned(u64::from(*s))))
                    .collect(),
            ),
            id => super::read_kept(&a.kept, id)?,
        })
    }
    fn write(&mut self, _now: u64, instance: u16, r: &Resource) -> Result<Completion, OpError> {
        write_account(self.account(instance)?, r)?;
        Ok(Completion::Done)
    }
    fn create(&mut self, instance: Option<u16>, resources: &[Resource]) -> Result<u16, OpError> {
        let id = match instance {
            Some(i) if self.accounts.iter().any(|a| a.id == i) => return Err(OpError::BadRequest),
            Some(i) => i,
            None => (0..u16::MAX)
                .find(|i| !self.accounts.iter().any(|a| a.id == *i))
                .ok_or(OpError::Internal)?,
        };
        // Built aside and added whole: a refused value leaves no half-written account behind.
        let mut account = Account::new(id, "", false);
        for r in resources {
            write_account(&mut account, r)?;
        }
        self.accounts.push(account);
        self.accounts.sort_by_key(|a| a.id);
        Ok(id)
    }
    fn delete(&mut self, instance: u16) -> Result<(), OpError> {
        let before = self.accounts.len();
        self.accounts.retain(|a| a.id != instance);
        if self.accounts.len() == before {
            Err(OpError::NotFound)
        } else {
            Ok(())
        }
    }
}

/// Writes one resource of an account.
fn write_account(a: &mut Account, r: &Resource) -> Result<(), OpError> {
    let v = match (&r.value, r.id) {
        (ResourceValue::Single(v), _) => v,
        (ResourceValue::Multiple(values), 16) => {
            a.cipher_suites = cipher_suites(values.iter().map(|(i, v)| (*i, v)))?;
            return Ok(());
        }
        _ => return Err(OpError::BadRequest),
    };
    match (r.id, v) {
        (0, Value::String(s)) => a.server_uri = s.clone(),
        (1, Value::Boolean(b)) => a.bootstrap = *b,
        (2, Value::Integer(m)) => {
            a.mode = SecurityMode::from_code(*m).ok_or(OpError::BadRequest)?
        }
        (3, Value::Opaque(o)) => a.identity = o.clone(),
        (4, Value::Opaque(o)) => a.server_key = o.clone(),
        (5, Value::Opaque(o)) => a.key = o.clone(),
        (10, Value::Integer(i)) => {
            a.short_server_id = u16::try_from(*i).map_err(|_| OpError::BadRequest)?
        }
        (11, Value::Integer(i)) => {
            a.hold_off_s = u32::try_from(*i).map_err(|_| OpError::BadRequest)?
        }
        (13, Value::Integer(i)) => {
            a.matching_type = MatchingType::from_code(*i).ok_or(OpError::BadRequest)?
        }
        (14, Value::String(s)) => a.sni = s.clone(),
        (15, Value::Integer(i)) => {
            a.usage = CertificateUsage::from_code(*i).ok_or(OpError::BadRequest)?
        }
        (16, v) => a.cipher_suites = cipher_suites(core::iter::once((0, v)))?,
        (id, v) if KEPT_AS_WRITTEN.contains(&id) => super::keep(&mut a.kept, MODEL, id, v)?,
        _ => return Err(OpError::BadRequest),
    }
    Ok(())
}

/// Resource 16's instances as IANA cipher suite code points, in the order of their instance
/// ids (the server's order of preference): a suite is "a 32-bit integer value" made of its two
/// registry bytes (LwM2M 1.1 Core E.1, TLS_PSK_WITH_AES_128_CCM_8 is 0xC0A8), so anything above
/// 0xFFFF names none; at most [`MAX_CIPHER_SUITES`] of them, each instance id once.
fn cipher_suites<'a>(
    instances: impl Iterator<Item = (u16, &'a Value)>,
) -> Result<Vec<u16>, OpError> {
    let mut suites: Vec<(u16, u16)> = Vec::new();
    for (id, v) in instances {
        let code = match v {
            Value::Unsigned(u) => u16::try_from(*u).ok(),
            Value::Integer(i) => u16::try_from(*i).ok(),
            _ => None,
        };
        if suites.len() == MAX_CIPHER_SUITES || suites.iter().any(|(i, _)| *i == id) {
            return Err(OpError::BadRequest);
        }
        suites.push((id, code.ok_or(OpError::BadRequest)?));
    }
    suites.sort_unstable_by_key(|(id, _)| *id);
    Ok(suites.into_iter().map(|(_, code)| code).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_code` reads each enum's code as its position in `ALL`: every variant's code
    /// gives it back, and the codes past the last give none.
    #[test]
    fn codes_are_positions() {
        for (i, m) in SecurityMode::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
            assert_eq!(SecurityMode::from_code(i as i64), Some(*m));
        }
        for (i, u) in CertificateUsage::ALL.iter().enumerate() {
            assert_eq!(*u as usize, i);
            assert_eq!(CertificateUsage::from_code(i as i64), Some(*u));
        }
        for (i, t) in MatchingType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
            assert_eq!(MatchingType::from_code(i as i64), Some(*t));
        }
        for c in [-1, 4, i64::MAX, i64::MIN] {
            assert_eq!(SecurityMode::from_code(c), None);
            assert_eq!(CertificateUsage::from_code(c), None);
            assert_eq!(MatchingType::from_code(c), None);
        }
    }

    fn single(id: u16, v: Value) -> Resource {
        Resource {
            id,
            value: ResourceValue::Single(v),
        }
    }

    #[test]
    fn sms_and_timeout_resources_are_kept_as_written() {
        let mut s = Security::no_sec("coap://127.0.0.1");
        s.write(0, 0, &single(9, Value::String("+123".into())))
            .unwrap();
        s.write(0, 0, &single(12, Value::Integer(5))).unwrap();
        s.write(0, 0, &single(12, Value::Integer(6))).unwrap();
        assert_eq!(
            s.read(0, 0, 9).unwrap(),
            ResourceValue::Single(Value::String("+123".into()))
        );
        assert_eq!(
            s.read(0, 0, 12).unwrap(),
            ResourceValue::Single(Value::Integer(6))
        );
        assert_eq!(s.read(0, 0, 6), Err(OpError::NotFound));
        // Of the model's type only.
        assert_eq!(
            s.write(0, 0, &single(9, Value::Integer(1))),
            Err(OpError::BadRequest)
        );
    }

    /// Security 1.1's resources 13-15 (LwM2M 1.1 Core E.1) are taken in their ranges, and a
    /// certificate account says which certificate usages and matching types it can use.
    #[test]
    fn matching_type_sni_and_certificate_usage_are_taken_and_checked() {
        let mut s = Security::no_sec("coaps://127.0.0.1");
        s.write(0, 0, &single(14, Value::String("lwm2m.example".into())))
            .unwrap();
        s.write(0, 0, &single(15, Value::Integer(2))).unwrap();
        assert_eq!(
            s.read(0, 0, 15).unwrap(),
            ResourceValue::Single(Value::Integer(2))
        );
        for (id, bad) in [(13, 4), (13, -1), (15, 4)] {
            assert_eq!(
                s.write(0, 0, &single(id, Value::Integer(bad))),
                Err(OpError::BadRequest),
                "{id} = {bad}"
            );
        }
        let uri = "coaps://127.0.0.1";
        let all = [SecurityMode::Certificate];
        let mut c = Credentials::new(
            SecurityMode::Certificate,
            b"cert".to_vec(),
            b"server".to_vec(),
            b"key".to_vec(),
        );
        assert_eq!(c.check(uri, &all), Ok(()));
        // Every usage is the account's to choose; whether the device has the roots 0 and 1
        // also need is its transport's check.
        for usage in 0..=3 {
            c.usage = CertificateUsage::from_code(usage).unwrap();
            assert_eq!(c.check(uri, &all), Ok(()));
        }
        // A hash must have its length; the whole certificate any.
        for (m, len) in [(1, 32), (2, 48), (3, 64)] {
            c.matching_type = MatchingType::from_code(m).unwrap();
            c.server_key = vec![0xA5; len];
            assert_eq!(c.check(uri, &all), Ok(()));
            c.server_key = vec![0xA5; len - 1];
            assert_eq!(
                c.check(uri, &all),
                Err(Inconsistency::MatchingType(c.matching_type))
            );
        }
        s.write(0, 0, &single(13, Value::Integer(3))).unwrap();
        assert_eq!(
            s.read(0, 0, 13).unwrap(),
            ResourceValue::Single(Value::Integer(3))
        );
    }

    fn multiple(id: u16, values: &[u64]) -> Resource {
        Resource {
            id,
            value: ResourceValue::Multiple(
                (0u16..)
                    .zip(values)
                    .map(|(i, v)| (i, Value::Unsigned(*v)))
                    .collect(),
            ),
        }
    }

    /// DTLS/TLS Ciphersuite (resource 16) is multiple in LwM2M 1.1 Core E.1; Leshan 2.0.0-M4
    /// writes it single. Both are taken, as IANA code points (16 bits), read back multiple;
    /// absent until written.
    #[test]
    fn cipher_suites_are_taken_single_or_multiple() {
        let mut s = Security::no_sec("coaps://127.0.0.1");
        assert_eq!(s.read(0, 0, 16), Err(OpError::NotFound));
        s.write(0, 0, &single(16, Value::Unsigned(0xC0A4))).unwrap();
        assert_eq!(s.read(0, 0, 16).unwrap(), multiple(16, &[0xC0A4]).value);
        s.write(0, 0, &multiple(16, &[0xC0A8, 0x00AE])).unwrap();
        assert_eq!(s.accounts[0].cipher_suites, vec![0xC0A8, 0x00AE]);
        // In the order of the instance ids, however they arrive; each id once.
        let reversed = Resource {
            id: 16,
            value: ResourceValue::Multiple(alloc::vec![
                (7, Value::Unsigned(0x00AE)),
                (2, Value::Unsigned(0xC0A8)),
            ]),
        };
        s.write(0, 0, &reversed).unwrap();
        assert_eq!(s.accounts[0].cipher_suites, vec![0xC0A8, 0x00AE]);
        let twice = Resource {
            id: 16,
            value: ResourceValue::Multiple(alloc::vec![
                (1, Value::Unsigned(0x00AE)),
                (1, Value::Unsigned(0xC0A8)),
            ]),
        };
        assert_eq!(s.write(0, 0, &twice), Err(OpError::BadRequest));
        for bad in [
            single(16, Value::Unsigned(0x1_0000)),
            single(16, Value::Integer(-1)),
            single(16, Value::String("0xC0A8".into())),
            multiple(16, &[0xC0A8; MAX_CIPHER_SUITES + 1]),
        ] {
            assert_eq!(s.write(0, 0, &bad), Err(OpError::BadRequest), "{bad:?}");
        }
        assert_eq!(s.accounts[0].cipher_suites, vec![0xC0A8, 0x00AE]);
        // Only resource 16 takes instances.
        assert_eq!(s.write(0, 0, &multiple(15, &[3])), Err(OpError::BadRequest));
    }

    #[test]
    fn a_refused_value_creates_no_account() {
        let mut s = Security::no_sec("coap://127.0.0.1");
        let resources = [
            single(0, Value::String("coap://127.0.0.2".into())),
            single(2, Value::Integer(9)),
        ];
        assert_eq!(s.create(Some(1), &resources), Err(OpError::BadRequest));
        assert_eq!(s.instances(), vec![0]);
    }
}
