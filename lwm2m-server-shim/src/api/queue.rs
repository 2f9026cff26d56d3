//! Requests to sleeping queue-mode clients, as Leshan 2.0's demo server handles them (its
//! `QueueHandler`): a REST call on `/api/clients/{ep}/...` for a queue-mode client that sleeps
//! (LwM2M core TS 1.1 section 6.5: the server must not send it anything then) is answered at
//! once with `{"ep":..,"path":..,"requestId":..,"delayed":true}` and kept; when the client
//! wakes up (an Update or any other message, the AWAKE event) the kept calls are sent in the
//! order they came, and each answer arrives as a REQUEST_RESPONSE event carrying the same
//! `requestId` and the response a direct call would have returned.
//!
//! Unlike Leshan, which keeps only the last request per client, up to [`MAX_WAITING`] calls
//! wait per client (a firmware update is a Write then an Execute); more are refused with 503.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::api::clients::ClientCall;
use crate::api::http_server::{json, text, Body};
use crate::server::events::{EventBus, ServerEvent};
use crate::server::shim::Shim;

/// Calls that may wait for one client.
pub const MAX_WAITING: usize = 32;

/// A REST call kept until its client wakes up: everything needed to run it then.
#[derive(Debug, Clone)]
pub struct WaitingCall {
    /// Path segments after `/api/clients/{ep}`.
    pub rest: Vec<String>,
    /// HTTP method.
    pub method: Method,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Lower-cased Content-Type of the body.
    pub content_type: String,
    /// Request body.
    pub body: Bytes,
}

impl WaitingCall {
    /// The LwM2M path the call addresses (`/3/0/1`), none for composite calls.
    fn lwm2m_path(&self) -> Option<String> {
        let ids: Vec<&str> = self
            .rest
            .iter()
            .map(String::as_str)
            .filter(|s| !matches!(*s, "observe" | "discover" | "attributes"))
            .collect();
        (ids.first() != Some(&"composite")).then(|| format!("/{}", ids.join("/")))
    }

    /// Whether the call needs the device at all: a passive observe cancel only forgets.
    pub(crate) fn needs_device(&self) -> bool {
        let passive_cancel = self.method == Method::DELETE
            && self.rest.last().map(String::as_str) == Some("observe")
            && !self.query.iter().any(|(k, _)| k == "active");
        !passive_cancel
    }
}

/// The answer to a kept call, for the REQUEST_RESPONSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayedResponse {
    /// The client's endpoint name.
    pub endpoint: String,
    /// The event data: `ep`, `path`, `requestId`, `response` (or `error`), `delayed`.
    pub data: Value,
}

struct Waiting {
    id: String,
    call: WaitingCall,
}

/// The calls waiting for their clients to wake up, and the REQUEST_RESPONSE events of their
/// answers.
pub struct RequestQueue {
    waiting: Mutex<HashMap<String, VecDeque<Waiting>>>,
    /// REQUEST_RESPONSE events.
    pub events: EventBus<DelayedResponse>,
    counter: AtomicU64,
    salt: u64,
}

impl Default for RequestQueue {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(HashMap::new()),
            events: EventBus::default(),
            counter: AtomicU64::new(0),
            salt: std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        }
    }
}

impl RequestQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Waiting>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request id in UUID form, unique in this process and not guessable from the others.
    fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n ^ self.salt);
        let (a, b) = (h.finish(), n ^ self.salt.rotate_left(17));
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            (b >> 48) & 0xffff,
            b & 0xffff_ffff_ffff
        )
    }

    /// Whether `call` for `endpoint` must wait: its client is in queue mode and sleeps.
    pub fn must_wait(shim: &Shim, endpoint: &str, call: &WaitingCall) -> bool {
        call.needs_device() && shim.presence.is_sleeping(endpoint)
    }

    /// Keeps `call` until `endpoint` wakes up; the immediate answer (Leshan's "delayed").
    pub fn keep(&self, endpoint: &str, call: WaitingCall) -> Response<Body> {
        let id = self.next_id();
        let path = call.lwm2m_path();
        {
            let mut m = self.lock();
            let q = m.entry(endpoint.to_string()).or_default();
            if q.len() >= MAX_WAITING {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{MAX_WAITING} requests already wait for '{endpoint}' to wake up"),
                );
            }
            q.push_back(Waiting {
                id: id.clone(),
                call,
            });
        }
        tracing::debug!(%endpoint, request = %id, "request kept until the client wakes up");
        json(StatusCode::OK, &delayed_json(endpoint, path, &id, None))
    }

    /// How many calls wait for `endpoint`.
    pub fn waiting(&self, endpoint: &str) -> usize {
        self.lock().get(endpoint).map_or(0, VecDeque::len)
    }

    /// Follows the server's events until it goes away: an AWAKE sends the calls kept for that
    /// client, a DEREGISTRATION drops them (each with an `error` REQUEST_RESPONSE).
    pub async fn run(self: Arc<Self>, shim: Weak<Shim>) {
        let Some(mut events) = shim.upgrade().map(|s| s.events.subscribe()) else {
            return;
        };
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            match &*ev {
                ServerEvent::Awake(ep) => {
                    let Some(shim) = shim.upgrade() else { return };
                    tokio::spawn(self.clone().send_waiting(shim, ep.clone()));
                }
                ServerEvent::Deregistration(r) => {
                    let dropped = self.lock().remove(&r.endpoint).unwrap_or_default();
                    for w in dropped {
                        let data = delayed_json(
                            &r.endpoint,
                            w.call.lwm2m_path(),
                            &w.id,
                            Some(Err("the client de-registered before it woke up".into())),
                        );
                        self.publish(&r.endpoint, data);
                    }
                }
                _ => {}
            }
        }
    }

    fn publish(&self, endpoint: &str, data: Value) {
        self.events.publish(DelayedResponse {
            endpoint: endpoint.to_string(),
            data,
        });
    }

    /// Sends the calls kept for `endpoint`, in order, each answer as a REQUEST_RESPONSE.
    async fn send_waiting(self: Arc<Self>, shim: Arc<Shim>, endpoint: String) {
        let kept = self.lock().remove(&endpoint).unwrap_or_default();
        for w in kept {
            let path = w.call.lwm2m_path();
            let answer = run_now(&shim, &endpoint, &w.call).await;
            self.publish(
                &endpoint,
                delayed_json(&endpoint, path, &w.id, Some(answer)),
            );
        }
    }
}

/// Runs a call now; the JSON a direct call would have answered, or the error text.
async fn run_now(shim: &Arc<Shim>, endpoint: &str, call: &WaitingCall) -> Result<Value, String> {
    let Some(reg) = shim.store.get_by_endpoint(endpoint) else {
        return Err(format!("no registered client with id '{endpoint}'"));
    };
    let client_call = ClientCall {
        shim,
        reg: &reg,
        method: &call.method,
        query: &call.query,
        content_type: &call.content_type,
        body: &call.body,
    };
    let response = match client_call.run(&call.rest).await {
        Ok(r) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if status == StatusCode::OK {
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            return Ok(v);
        }
    }
    Err(String::from_utf8_lossy(&body).into_owned())
}

/// Leshan's `ResponseDelayed`: `response` when the answer came, `error` (a shim addition) when
/// the call failed, neither in the immediate answer.
fn delayed_json(
    endpoint: &str,
    path: Option<String>,
    id: &str,
    answer: Option<Result<Value, String>>,
) -> Value {
    let mut m = Map::new();
    m.insert("ep".into(), json!(endpoint));
    if let Some(p) = path {
        m.insert("path".into(), json!(p));
    }
    m.insert("requestId".into(), json!(id));
    match answer {
        Some(Ok(v)) => {
            m.insert("response".into(), v);
        }
        Some(Err(e)) => {
            m.insert("error".into(), json!(e));
        }
        None => {}
    }
    m.insert("delayed".into(), Value::Bool(true));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: Method, rest: &[&str], query: &[(&str, &str)]) -> WaitingCall {
        WaitingCall {
            rest: rest.iter().map(|s| s.to_string()).collect(),
            method,
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: String::new(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn paths_and_passive_cancels() {
        let read = call(Method::GET, &["3", "0", "9"], &[]);
        assert_eq!(read.lwm2m_path().as_deref(), Some("/3/0/9"));
        assert!(read.needs_device());
        let observe = call(Method::POST, &["5", "0", "3", "observe"], &[]);
        assert_eq!(observe.lwm2m_path().as_deref(), Some("/5/0/3"));
        let passive = call(Method::DELETE, &["5", "0", "3", "observe"], &[]);
        assert!(!passive.needs_device());
        let active = call(
            Method::DELETE,
            &["5", "0", "3", "observe"],
            &[("active", "")],
        );
        assert!(active.needs_device());
        let composite = call(Method::GET, &["composite"], &[("paths", "/3/0/9")]);
        assert_eq!(composite.lwm2m_path(), None);
    }

    #[test]
    fn kept_calls_are_bounded_and_ids_unique() {
        let q = RequestQueue::default();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..MAX_WAITING {
            assert_eq!(q.keep("ep", call(Method::GET, &["3"], &[])).status(), 200);
        }
        assert_eq!(q.waiting("ep"), MAX_WAITING);
        assert_eq!(
            q.keep("ep", call(Method::GET, &["3"], &[])).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        for _ in 0..1000 {
            let id = q.next_id();
            assert_eq!(id.len(), 36);
            assert!(ids.insert(id));
        }
    }
}
