//! Who may talk to the shim over DTLS, as Leshan's security store has it: a PSK identity and
//! key, bound to exactly one endpoint name. The coaps listener looks keys up here during the
//! handshake; the registration interface checks that an authenticated identity registers only
//! under its own endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use lwm2m_client::host::dtls::PskLookup;
use serde_json::{json, Value};

use crate::content::node_json::{hex, unhex};

/// A pre-shared key for one client.
#[derive(Clone, PartialEq, Eq)]
pub struct PskInfo {
    /// PSK identity the client sends in its handshake.
    pub identity: String,
    /// The secret key.
    pub key: Vec<u8>,
}

impl fmt::Debug for PskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("PskInfo")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Security information of one endpoint (Leshan's `SecurityInfo`, PSK mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityInfo {
    /// The endpoint name this identity may register as.
    pub endpoint: String,
    /// Its pre-shared key.
    pub psk: PskInfo,
}

/// Why security information was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityError {
    /// The identity is already bound to another endpoint (Leshan: NonUniqueSecurityInfo).
    IdentityInUse {
        /// The identity asked for.
        identity: String,
        /// The endpoint that holds it.
        endpoint: String,
    },
    /// The text is not a valid `ENDPOINT:IDENTITY:HEXKEY` or SecurityInfo JSON.
    Malformed(String),
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdentityInUse { identity, endpoint } => write!(
                f,
                "PSK identity '{identity}' is already used by endpoint '{endpoint}'"
            ),
            Self::Malformed(why) => write!(f, "invalid security info: {why}"),
        }
    }
}

impl std::error::Error for SecurityError {}

/// Where security information lives; shared by the DTLS handshake, the registration interface
/// and the REST API.
pub trait SecurityStore: Send + Sync {
    /// Adds or replaces the information of `info.endpoint`; returns the previous one.
    fn put(&self, info: SecurityInfo) -> Result<Option<SecurityInfo>, SecurityError>;
    /// Removes the information of an endpoint.
    fn remove(&self, endpoint: &str) -> Option<SecurityInfo>;
    /// Looks up by endpoint name.
    fn get_by_endpoint(&self, endpoint: &str) -> Option<SecurityInfo>;
    /// Looks up by PSK identity (what the handshake knows).
    fn get_by_identity(&self, identity: &str) -> Option<SecurityInfo>;
    /// Everything, ordered by endpoint name.
    fn all(&self) -> Vec<SecurityInfo>;
}

/// Security store in process memory.
#[derive(Default)]
pub struct InMemorySecurityStore {
    by_endpoint: Mutex<BTreeMap<String, SecurityInfo>>,
}

impl InMemorySecurityStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SecurityInfo>> {
        self.by_endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SecurityStore for InMemorySecurityStore {
    fn put(&self, info: SecurityInfo) -> Result<Option<SecurityInfo>, SecurityError> {
        let mut m = self.map();
        if let Some(other) = m
            .values()
            .find(|i| i.psk.identity == info.psk.identity && i.endpoint != info.endpoint)
        {
            return Err(SecurityError::IdentityInUse {
                identity: info.psk.identity.clone(),
                endpoint: other.endpoint.clone(),
            });
        }
        Ok(m.insert(info.endpoint.clone(), info))
    }

    fn remove(&self, endpoint: &str) -> Option<SecurityInfo> {
        self.map().remove(endpoint)
    }

    fn get_by_endpoint(&self, endpoint: &str) -> Option<SecurityInfo> {
        self.map().get(endpoint).cloned()
    }

    fn get_by_identity(&self, identity: &str) -> Option<SecurityInfo> {
        self.map()
            .values()
            .find(|i| i.psk.identity == identity)
            .cloned()
    }

    fn all(&self) -> Vec<SecurityInfo> {
        self.map().values().cloned().collect()
    }
}

/// The key lookup the DTLS server context calls during a PSK handshake.
pub fn psk_lookup(store: Arc<dyn SecurityStore>) -> PskLookup {
    Arc::new(move |identity: &[u8]| {
        let identity = std::str::from_utf8(identity).ok()?;
        store.get_by_identity(identity).map(|i| i.psk.key)
    })
}

impl SecurityInfo {
    /// Parses the CLI form `ENDPOINT:IDENTITY:HEXKEY`. The key follows the last colon and the
    /// endpoint ends at the first one, so identities may contain colons (endpoint names with
    /// colons, like `urn:imei:...`, go through the JSON file instead).
    pub fn parse_cli(s: &str) -> Result<Self, SecurityError> {
        let bad = || SecurityError::Malformed(format!("'{s}' is not ENDPOINT:IDENTITY:HEXKEY"));
        let (rest, key) = s.rsplit_once(':').ok_or_else(bad)?;
        let (endpoint, identity) = rest.split_once(':').ok_or_else(bad)?;
        Self::new(endpoint, identity, key)
    }

    fn new(endpoint: &str, identity: &str, hex_key: &str) -> Result<Self, SecurityError> {
        if endpoint.is_empty() || identity.is_empty() {
            return Err(SecurityError::Malformed(
                "endpoint and identity must not be empty".into(),
            ));
        }
        let key = unhex(hex_key)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| SecurityError::Malformed("key must be non-empty hex".into()))?;
        Ok(Self {
            endpoint: endpoint.to_string(),
            psk: PskInfo {
                identity: identity.to_string(),
                key,
            },
        })
    }

    /// Parses Leshan's SecurityInfo JSON: `{"endpoint":..,"psk":{"identity":..,"key":"hex"}}`.
    pub fn from_json(v: &Value) -> Result<Self, SecurityError> {
        let field = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| SecurityError::Malformed(format!("missing string field '{k}'")))
        };
        let endpoint = field(v, "endpoint")?;
        let psk = v.get("psk").ok_or_else(|| {
            SecurityError::Malformed("only PSK security info is supported ('psk')".into())
        })?;
        Self::new(&endpoint, &field(psk, "identity")?, &field(psk, "key")?)
    }

    /// Leshan's SecurityInfo JSON shape.
    pub fn to_json(&self) -> Value {
        json!({
            "endpoint": self.endpoint,
            "psk": { "identity": self.psk.identity, "key": hex(&self.psk.key) },
        })
    }

    /// Parses a security file: one SecurityInfo object or an array of them.
    pub fn parse_file(text: &str) -> Result<Vec<Self>, SecurityError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| SecurityError::Malformed(e.to_string()))?;
        match v {
            Value::Array(items) => items.iter().map(Self::from_json).collect(),
            one => Ok(vec![Self::from_json(&one)?]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ep: &str, id: &str) -> SecurityInfo {
        SecurityInfo::parse_cli(&format!("{ep}:{id}:00112233")).unwrap()
    }

    #[test]
    fn cli_form_splits_endpoint_identity_and_key() {
        let i = SecurityInfo::parse_cli("dev1:id:with:colons:0aff").unwrap();
        assert_eq!(i.endpoint, "dev1");
        assert_eq!(i.psk.identity, "id:with:colons");
        assert_eq!(i.psk.key, vec![0x0a, 0xff]);
        for bad in [
            "dev1:0aff",
            "dev1:id:zz",
            ":id:00",
            "dev1::00",
            "dev1:id:",
            "x",
        ] {
            assert!(SecurityInfo::parse_cli(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_round_trips_and_files_take_one_or_many() {
        let i = info("dev1", "id1");
        assert_eq!(SecurityInfo::from_json(&i.to_json()).unwrap(), i);
        let many = format!("[{}, {}]", i.to_json(), info("dev2", "id2").to_json());
        assert_eq!(SecurityInfo::parse_file(&many).unwrap().len(), 2);
        assert_eq!(
            SecurityInfo::parse_file(&i.to_json().to_string()).unwrap(),
            vec![i]
        );
        assert!(SecurityInfo::parse_file(r#"{"endpoint":"e","rpk":{}}"#).is_err());
        assert!(SecurityInfo::parse_file("not json").is_err());
    }

    #[test]
    fn an_identity_binds_to_one_endpoint() {
        let s = InMemorySecurityStore::new();
        assert_eq!(s.put(info("dev1", "id1")).unwrap(), None);
        assert!(matches!(
            s.put(info("dev2", "id1")),
            Err(SecurityError::IdentityInUse { .. })
        ));
        // Re-keying the same endpoint replaces its entry.
        assert!(s.put(info("dev1", "id1b")).unwrap().is_some());
        assert_eq!(s.get_by_identity("id1b").unwrap().endpoint, "dev1");
        assert!(s.get_by_identity("id1").is_none());
        let lookup = psk_lookup(Arc::new(s));
        assert_eq!(lookup(b"id1b"), Some(vec![0x00, 0x11, 0x22, 0x33]));
        assert_eq!(lookup(b"nobody"), None);
        assert_eq!(lookup(&[0xff, 0xfe]), None);
    }
}
