//! Registrations in the JSON shape of Leshan's `JacksonRegistrationSerializer`, so scripts
//! written for Leshan's REST API and event stream read them unchanged.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::server::presence::Presence;
use crate::server::registration::object_links::ObjectLinks;
use crate::server::registration::store::{Registration, RegistrationUpdate};

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One registration as Leshan's REST API shows it.
pub fn registration_json(r: &Registration) -> Value {
    let links = ObjectLinks::parse(&r.object_links);
    let mut v = json!({
        "endpoint": r.endpoint,
        "registrationId": r.id,
        "registrationDate": epoch_ms(r.registration_date),
        "lastUpdate": epoch_ms(r.last_update),
        "address": r.address.to_string(),
        "lwM2mVersion": r.lwm2m_version,
        "lifetime": r.lifetime_s,
        "bindingMode": r.binding,
        "rootPath": links.root_path(),
        "objectLinks": links.to_json(),
        "secure": r.secure,
        "additionalRegistrationAttributes": r.additional_attributes,
        "queuemode": r.queue_mode,
        "availableInstances": links.available_instances_json(),
    });
    if let (Some(sms), Some(obj)) = (&r.sms_number, v.as_object_mut()) {
        obj.insert("smsNumber".into(), Value::String(sms.clone()));
    }
    if let (true, Some(obj)) = (r.queue_mode, v.as_object_mut()) {
        // Leshan reports `sleeping` only for queue-mode clients; one that just registered or
        // updated (the events) is awake. [`registration_json_with`] reads the presence.
        obj.insert("sleeping".into(), Value::Bool(false));
    }
    v
}

/// [`registration_json`] with `sleeping` as the presence of queue-mode clients says now.
pub fn registration_json_with(r: &Registration, presence: &Presence) -> Value {
    let mut v = registration_json(r);
    if let (true, Some(obj)) = (r.queue_mode, v.as_object_mut()) {
        obj.insert(
            "sleeping".into(),
            Value::Bool(presence.is_sleeping(&r.endpoint)),
        );
    }
    v
}

/// A registration Update as Leshan 2.0's `JacksonRegistrationUpdateSerializer` shows it in the
/// UPDATED event: `registrationId`, `address`, `lifetime`, `smsNumber` and `objectLinks` when the
/// Update carried them, `secure`, and the `additionalAttributes` it carried (`{}` if none).
/// `lifeTimeInSec` and `bindingMode`, the names Leshan 2.0.0-M4 gave the lifetime and binding,
/// stay for scripts written against it.
pub fn update_json(registration: &Registration, u: &RegistrationUpdate) -> Value {
    let mut m = Map::new();
    m.insert(
        "registrationId".into(),
        Value::String(registration.id.clone()),
    );
    if let Some(a) = u.address {
        m.insert("address".into(), Value::String(a.to_string()));
    }
    if let Some(s) = &u.sms_number {
        m.insert("smsNumber".into(), Value::String(s.clone()));
    }
    if let Some(lt) = u.lifetime_s {
        m.insert("lifetime".into(), json!(lt));
        m.insert("lifeTimeInSec".into(), json!(lt));
    }
    if let Some(b) = &u.binding {
        m.insert("bindingMode".into(), Value::String(b.clone()));
    }
    if let Some(l) = &u.object_links {
        m.insert("objectLinks".into(), ObjectLinks::parse(l).to_json());
    }
    m.insert("secure".into(), Value::Bool(registration.secure));
    m.insert(
        "additionalAttributes".into(),
        json!(u.additional_attributes),
    );
    Value::Object(m)
}
