//! Registration store behind a trait, so a shared store (as Leshan's Redis cluster mode) can later
//! back several shim instances; [`InMemoryStore`] is the single-instance implementation.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Default registration lifetime when the client sends no `lt` (LwM2M core, 86400 s).
pub const DEFAULT_LIFETIME_S: u32 = 86_400;

/// One registered LwM2M client, as the registration interface recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Registration id; also the Location-Path `rd/<id>` handed to the client.
    pub id: String,
    /// Endpoint client name (`ep`).
    pub endpoint: String,
    /// Source address of the last Register/Update: where device-management requests go.
    pub address: SocketAddr,
    /// Lifetime in seconds (`lt`).
    pub lifetime_s: u32,
    /// LwM2M enabler version (`lwm2m`), "1.0" when absent.
    pub lwm2m_version: String,
    /// Binding mode (`b`), "U" when absent.
    pub binding: String,
    /// MSISDN (`sms`), if any.
    pub sms_number: Option<String>,
    /// Queue mode: the `Q` parameter (LwM2M 1.1) or a binding with `Q` (LwM2M 1.0 `b=UQ`).
    pub queue_mode: bool,
    /// Raw CoRE link-format payload listing objects and instances.
    pub object_links: String,
    /// Query parameters the registration interface does not interpret.
    pub additional_attributes: BTreeMap<String, String>,
    /// When the client registered.
    pub registration_date: SystemTime,
    /// When the client last registered or updated; the lifetime counts from here.
    pub last_update: SystemTime,
    /// Whether the client registered over coaps (DTLS): its device management and package
    /// downloads go over coaps too.
    pub secure: bool,
}

impl Registration {
    /// The moment after which the registration has expired.
    pub fn expires_at(&self) -> SystemTime {
        self.last_update + Duration::from_secs(u64::from(self.lifetime_s))
    }
}

/// Fields a registration Update may change; `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistrationUpdate {
    /// New source address (NAT rebinding).
    pub address: Option<SocketAddr>,
    /// New lifetime (`lt`).
    pub lifetime_s: Option<u32>,
    /// New binding mode (`b`).
    pub binding: Option<String>,
    /// New MSISDN (`sms`).
    pub sms_number: Option<String>,
    /// New object links, when the client sent a payload.
    pub object_links: Option<String>,
    /// New queue mode, when the update's binding says (LwM2M 1.0 `b=UQ` / `b=U`).
    pub queue_mode: Option<bool>,
    /// Query parameters the registration interface does not interpret; they are added to
    /// (or replace those of the same name in) the registration's.
    pub additional_attributes: BTreeMap<String, String>,
    /// Time of the update.
    pub at: Option<SystemTime>,
}

impl RegistrationUpdate {
    /// Applies the update to a registration, returning the new value.
    pub fn apply(&self, reg: &Registration) -> Registration {
        let mut next = reg.clone();
        if let Some(a) = self.address {
            next.address = a;
        }
        if let Some(lt) = self.lifetime_s {
            next.lifetime_s = lt;
        }
        if let Some(b) = &self.binding {
            next.binding = b.clone();
        }
        if let Some(s) = &self.sms_number {
            next.sms_number = Some(s.clone());
        }
        if let Some(q) = self.queue_mode {
            next.queue_mode = q;
        }
        if let Some(l) = &self.object_links {
            next.object_links = l.clone();
        }
        if let Some(t) = self.at {
            next.last_update = t;
        }
        next.additional_attributes.extend(
            self.additional_attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        next
    }
}

/// Where registrations live. Implementations must be safe to share between the CoAP loop, the
/// REST API and the expiry task.
pub trait RegistrationStore: Send + Sync {
    /// Adds a registration; a previous registration of the same endpoint is replaced and returned.
    fn add(&self, reg: Registration) -> Option<Registration>;
    /// Applies an update to the registration with this id; returns (before, after).
    fn update(&self, id: &str, update: &RegistrationUpdate)
        -> Option<(Registration, Registration)>;
    /// Removes the registration with this id.
    fn remove(&self, id: &str) -> Option<Registration>;
    /// Looks a registration up by id.
    fn get_by_id(&self, id: &str) -> Option<Registration>;
    /// Looks a registration up by endpoint name.
    fn get_by_endpoint(&self, endpoint: &str) -> Option<Registration>;
    /// Every registration, ordered by endpoint name.
    fn all(&self) -> Vec<Registration>;
    /// At most `limit` registrations ordered by endpoint name, starting after the endpoint
    /// `after` (from the first without it): a page of [`Self::all`], so a listing of tens of
    /// thousands can be streamed without copying them all at once.
    fn page(&self, after: Option<&str>, limit: usize) -> Vec<Registration>;
    /// Removes and returns every registration that expired at or before `now`.
    fn remove_expired(&self, now: SystemTime) -> Vec<Registration>;
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<String, Registration>,
    id_by_endpoint: BTreeMap<String, String>,
}

/// Registration store in process memory (one shim instance).
#[derive(Default)]
pub struct InMemoryStore {
    maps: Mutex<Maps>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A panic elsewhere while holding the lock leaves consistent maps (each method updates
        // both maps before returning), so a poisoned lock is still usable.
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RegistrationStore for InMemoryStore {
    fn add(&self, reg: Registration) -> Option<Registration> {
        let mut m = self.lock();
        let previous = m
            .id_by_endpoint
            .insert(reg.endpoint.clone(), reg.id.clone())
            .and_then(|old_id| m.by_id.remove(&old_id));
        m.by_id.insert(reg.id.clone(), reg);
        previous
    }

    fn update(
        &self,
        id: &str,
        update: &RegistrationUpdate,
    ) -> Option<(Registration, Registration)> {
        let mut m = self.lock();
        let slot = m.by_id.get_mut(id)?;
        let before = slot.clone();
        *slot = update.apply(&before);
        Some((before, slot.clone()))
    }

    fn remove(&self, id: &str) -> Option<Registration> {
        let mut m = self.lock();
        let reg = m.by_id.remove(id)?;
        if m.id_by_endpoint.get(&reg.endpoint).map(String::as_str) == Some(id) {
            m.id_by_endpoint.remove(&reg.endpoint);
        }
        Some(reg)
    }

    fn get_by_id(&self, id: &str) -> Option<Registration> {
        self.lock().by_id.get(id).cloned()
    }

    fn get_by_endpoint(&self, endpoint: &str) -> Option<Registration> {
        let m = self.lock();
        m.id_by_endpoint
            .get(endpoint)
            .and_then(|id| m.by_id.get(id))
            .cloned()
    }

    fn all(&self) -> Vec<Registration> {
        let m = self.lock();
        m.id_by_endpoint
            .values()
            .filter_map(|id| m.by_id.get(id))
            .cloned()
            .collect()
    }

    fn page(&self, after: Option<&str>, limit: usize) -> Vec<Registration> {
        let m = self.lock();
        let from = match after {
            Some(ep) => Bound::Excluded(ep),
            None => Bound::Unbounded,
        };
        m.id_by_endpoint
            .range::<str, _>((from, Bound::Unbounded))
            .filter_map(|(_, id)| m.by_id.get(id))
            .take(limit)
            .cloned()
            .collect()
    }

    fn remove_expired(&self, now: SystemTime) -> Vec<Registration> {
        let mut m = self.lock();
        let expired: Vec<String> = m
            .by_id
            .values()
            .filter(|r| r.expires_at() <= now)
            .map(|r| r.id.clone())
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for id in expired {
            if let Some(reg) = m.by_id.remove(&id) {
                if m.id_by_endpoint.get(&reg.endpoint) == Some(&id) {
                    m.id_by_endpoint.remove(&reg.endpoint);
                }
                out.push(reg);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str, ep: &str, lt: u32, at: SystemTime) -> Registration {
        Registration {
            id: id.into(),
            endpoint: ep.into(),
            address: "127.0.0.1:5000".parse().expect("literal address"),
            lifetime_s: lt,
            lwm2m_version: "1.1".into(),
            binding: "U".into(),
            sms_number: None,
            queue_mode: false,
            object_links: "</3/0>".into(),
            additional_attributes: BTreeMap::new(),
            registration_date: at,
            last_update: at,
            secure: false,
        }
    }

    #[test]
    fn re_register_replaces_previous_registration_of_endpoint() {
        let s = InMemoryStore::new();
        let t = SystemTime::UNIX_EPOCH;
        assert!(s.add(reg("a", "dev", 60, t)).is_none());
        let old = s.add(reg("b", "dev", 60, t)).expect("replaced");
        assert_eq!(old.id, "a");
        assert!(s.get_by_id("a").is_none());
        assert_eq!(s.get_by_endpoint("dev").map(|r| r.id), Some("b".into()));
        assert_eq!(s.all().len(), 1);
    }

    #[test]
    fn update_changes_only_given_fields_and_restarts_lifetime() {
        let s = InMemoryStore::new();
        let t = SystemTime::UNIX_EPOCH;
        s.add(reg("a", "dev", 60, t));
        let later = t + Duration::from_secs(50);
        let u = RegistrationUpdate {
            lifetime_s: Some(30),
            at: Some(later),
            ..Default::default()
        };
        let (before, after) = s.update("a", &u).expect("known id");
        assert_eq!(before.lifetime_s, 60);
        assert_eq!(after.lifetime_s, 30);
        assert_eq!(after.binding, "U");
        assert_eq!(after.expires_at(), later + Duration::from_secs(30));
        assert!(s.update("zz", &u).is_none());
    }

    #[test]
    fn pages_follow_endpoint_order() {
        let s = InMemoryStore::new();
        let t = SystemTime::UNIX_EPOCH;
        for (id, ep) in [("1", "c"), ("2", "a"), ("3", "d"), ("4", "b")] {
            s.add(reg(id, ep, 60, t));
        }
        let eps = |v: Vec<Registration>| v.into_iter().map(|r| r.endpoint).collect::<Vec<_>>();
        assert_eq!(eps(s.page(None, 3)), ["a", "b", "c"]);
        assert_eq!(eps(s.page(Some("c"), 3)), ["d"]);
        assert_eq!(eps(s.page(Some("bb"), 10)), ["c", "d"]);
        assert!(s.page(Some("d"), 3).is_empty());
    }

    #[test]
    fn remove_expired_takes_only_expired() {
        let s = InMemoryStore::new();
        let t = SystemTime::UNIX_EPOCH;
        s.add(reg("a", "short", 10, t));
        s.add(reg("b", "long", 100, t));
        let gone = s.remove_expired(t + Duration::from_secs(10));
        assert_eq!(
            gone.iter().map(|r| r.endpoint.as_str()).collect::<Vec<_>>(),
            ["short"]
        );
        assert!(s.get_by_endpoint("short").is_none());
        assert!(s.get_by_endpoint("long").is_some());
        assert!(s.remove("b").is_some());
        assert!(s.all().is_empty());
    }
}
