//! The configuration a bootstrap server provisioned (the Security and Server objects), for the
//! host to keep across resets: a client bootstraps when it has no server account it can use
//! (LwM2M 1.1 Core §6.1), and one that forgot its configuration at each reset would send its
//! whole fleet to the bootstrap server after every update. Anjay and Zephyr's client keep
//! these objects too. A kept configuration that stopped working (a key rotated meanwhile) is
//! repaired by Bootstrap on Registration Failure.
//!
//! Layout: `LWC1`, then per object its id (u16), the length (u32) and the object in TLV
//! (big-endian integers). What is read back is untrusted: it is decoded and checked as a
//! Bootstrap-Write is, and anything refused leaves the objects as they were.

use super::bootstrap::Instances;
use super::Engine;
use crate::codec::{ContentFormat, Path};
use crate::object::OpError;
use crate::objects::security::{Credentials, Inconsistency};
use alloc::string::String;
use alloc::vec::Vec;

const MAGIC: &[u8; 4] = b"LWC1";
/// Security and Server: what a bootstrap server provisions.
const OBJECTS: [u16; 2] = [0, 1];

/// Objects' instances: each object id with its instances.
type Objects = Vec<(u16, Instances)>;

/// Why a saved configuration was not taken (the objects are as they were).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// Not a saved configuration: truncated, or another layout.
    Format,
    /// An object refused what was saved (4.00 and the like, as to a Bootstrap-Write).
    Refused(OpError),
    /// Its bootstrap account is for another bootstrap server than the device's (the device was
    /// moved): the URI it names.
    OtherBootstrapServer(String),
    /// It holds no management server account.
    NoServer,
    /// Its management server account cannot be used ([`super::Config::credentials_check`]).
    Unusable(Inconsistency),
}

impl core::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Format => f.write_str("not a saved configuration (truncated or another layout)"),
            Self::Refused(e) => write!(f, "the objects refused it ({e})"),
            Self::OtherBootstrapServer(uri) => {
                write!(f, "it is from another bootstrap server ({uri})")
            }
            Self::NoServer => f.write_str("it holds no management server account"),
            Self::Unusable(why) => write!(f, "its server account cannot be used: {why}"),
        }
    }
}

impl<P: Clone + PartialEq> Engine<P> {
    /// The Security and Server objects as they are, in the layout
    /// [`Engine::restore_config`] reads; secret keys included, so the host stores it where
    /// only the device may read it.
    pub fn saved_config(&mut self) -> Result<Vec<u8>, OpError> {
        let mut out = MAGIC.to_vec();
        for oid in OBJECTS {
            let path = Path::object(oid);
            let node = self.read_node(0, &path)?;
            let tlv = Self::encode(&node, &path, ContentFormat::Tlv)?;
            let len = u32::try_from(tlv.len()).map_err(|_| OpError::Internal)?;
            out.extend_from_slice(&oid.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&tlv);
        }
        Ok(out)
    }

    /// Replaces the Security and Server objects with a [`Engine::saved_config`], when it was
    /// provisioned by the bootstrap server at `bootstrap_uri` and its management server
    /// account is usable (also when the bootstrap account's timeout purged it); that account's
    /// URI and credentials (point the engine and the transport there, then
    /// [`Engine::start`]). On any error the objects are as they were.
    pub fn restore_config(
        &mut self,
        now: u64,
        saved: &[u8],
        bootstrap_uri: &str,
    ) -> Result<(String, Credentials), RestoreError> {
        let parsed = parse(saved).ok_or(RestoreError::Format)?;
        let mut objects = Vec::new();
        for (oid, tlv) in parsed {
            let instances = self
                .checked_instances(tlv, &Path::object(oid), Some(ContentFormat::Tlv))
                .map_err(RestoreError::Refused)?;
            objects.push((oid, instances));
        }
        let before = self.snapshot().map_err(RestoreError::Refused)?;
        let taken = self
            .replace_objects(now, objects)
            .map_err(RestoreError::Refused)
            .and_then(|()| self.usable_accounts(bootstrap_uri));
        match &taken {
            Ok(_) => self.arm_bootstrap_account_timeout(now),
            // Read from these objects a moment ago: they take it back.
            Err(_) => {
                let _ = self.replace_objects(now, before);
            }
        }
        taken
    }

    /// The objects' instances as they are now.
    fn snapshot(&mut self) -> Result<Objects, OpError> {
        let mut objects = Vec::new();
        for oid in OBJECTS {
            let crate::codec::Node::Object { instances, .. } =
                self.read_node(0, &Path::object(oid))?
            else {
                return Err(OpError::Internal);
            };
            let instances = instances.into_iter().map(|i| (i.id, i.resources)).collect();
            objects.push((oid, instances));
        }
        Ok(objects)
    }

    /// Deletes every instance of each object (the bootstrap account too), then writes these.
    fn replace_objects(&mut self, now: u64, objects: Objects) -> Result<(), OpError> {
        for (oid, instances) in objects {
            let obj = self.object(oid)?;
            for iid in obj.instances() {
                obj.delete(iid)?;
            }
            self.write_instances(now, oid, instances)?;
        }
        Ok(())
    }

    /// The management account of the objects now, if the bootstrap account, when there is
    /// one, is `bootstrap_uri`'s and the management account passes the credentials check.
    fn usable_accounts(
        &mut self,
        bootstrap_uri: &str,
    ) -> Result<(String, Credentials), RestoreError> {
        // No bootstrap account at all: its timeout purged it (/0/x/12), and so it stays.
        match self.server_account(true) {
            Some((uri, _)) if !same_server(&uri, bootstrap_uri) => {
                return Err(RestoreError::OtherBootstrapServer(uri))
            }
            _ => {}
        }
        let (uri, credentials) = self.server_account(false).ok_or(RestoreError::NoServer)?;
        self.config
            .credentials_check
            .check(&uri, &credentials)
            .map_err(RestoreError::Unusable)?;
        Ok((uri, credentials))
    }
}

/// Whether two server URIs name the same endpoint: scheme, host (any case) and port, the
/// default port spelt out or not (a bootstrap server may write its own URI with the port the
/// device's factory setting left out).
fn same_server(a: &str, b: &str) -> bool {
    use crate::pull::coap::CoapUri;
    match (CoapUri::parse(a), CoapUri::parse(b)) {
        (Ok(a), Ok(b)) => {
            (a.secure, a.port) == (b.secure, b.port) && a.host.eq_ignore_ascii_case(&b.host)
        }
        _ => a == b,
    }
}

/// The (object id, TLV) parts of a saved configuration: exactly [`OBJECTS`], in order, and
/// nothing after them.
fn parse(mut b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    b = b.strip_prefix(MAGIC)?;
    let mut parts = Vec::new();
    for oid in OBJECTS {
        let (head, rest) = b.split_at_checked(6)?;
        let id = u16::from_be_bytes([head[0], head[1]]);
        let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
        let (tlv, rest) = rest.split_at_checked(usize::try_from(len).ok()?)?;
        if id != oid {
            return None;
        }
        parts.push((id, tlv));
        b = rest;
    }
    b.is_empty().then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::same_server;

    #[test]
    fn a_server_is_the_same_with_its_default_port_spelt_out_or_not() {
        assert!(same_server("coaps://BS.example", "coaps://bs.example:5684"));
        assert!(same_server("coap://[::1]", "coap://[::1]:5683/"));
        assert!(!same_server("coap://bs.example", "coaps://bs.example"));
        assert!(!same_server("coap://bs.example", "coap://bs.example:5684"));
        assert!(same_server("sms://1", "sms://1"));
    }
}
