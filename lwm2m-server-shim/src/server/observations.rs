//! Observations the server holds (LwM2M core TS section 6.4.5, RFC 7641): which endpoint and
//! path each token belongs to and the task forwarding its notifications as events.

use std::collections::HashMap;
use std::sync::Mutex;

use coap_lite::CoapOption;
use lwm2m_client::codec::block::decode_uint_option;
use lwm2m_client::codec::{ContentFormat, Node, Path};
use tokio::task::JoinHandle;

use crate::coap::endpoint::ObservationStream;
use crate::content;
use crate::server::events::ServerEvent;
use crate::server::readings::{ObserveSequence, ReadingStamp};
use crate::server::requests::{DeviceHandle, DmResponse};

/// One observation the server forwards notifications of.
pub(crate) struct ActiveObservation {
    /// Its token, to forget it in the CoAP endpoint.
    pub(crate) token: Vec<u8>,
    task: JoinHandle<()>,
}

impl ActiveObservation {
    /// Stops forwarding its notifications.
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

type ByEndpoint = HashMap<String, HashMap<String, ActiveObservation>>;

/// Active observations by endpoint, then by path. Dropping it stops their tasks (they hold
/// the CoAP socket).
#[derive(Default)]
pub(crate) struct Observations {
    active: Mutex<ByEndpoint>,
}

impl Observations {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByEndpoint> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an observation; returns the one it replaces (same endpoint and path).
    pub(crate) fn insert(
        &self,
        endpoint: &str,
        path: &Path,
        o: ActiveObservation,
    ) -> Option<ActiveObservation> {
        self.lock()
            .entry(endpoint.to_string())
            .or_default()
            .insert(path.to_string(), o)
    }

    /// Whether the observation of `path` at `endpoint` is recorded and still forwarding.
    pub(crate) fn is_active(&self, endpoint: &str, path: &Path) -> bool {
        self.lock()
            .get(endpoint)
            .and_then(|m| m.get(&path.to_string()))
            .is_some_and(|o| !o.task.is_finished())
    }

    /// The token of the observation of `path` at `endpoint`, if one is recorded.
    pub(crate) fn token(&self, endpoint: &str, path: &Path) -> Option<Vec<u8>> {
        self.lock()
            .get(endpoint)
            .and_then(|m| m.get(&path.to_string()))
            .map(|o| o.token.clone())
    }

    /// Removes one observation.
    pub(crate) fn remove(&self, endpoint: &str, path: &Path) -> Option<ActiveObservation> {
        let mut m = self.lock();
        let old = m
            .get_mut(endpoint)
            .and_then(|paths| paths.remove(&path.to_string()));
        if m.get(endpoint).is_some_and(HashMap::is_empty) {
            m.remove(endpoint);
        }
        old
    }

    /// Removes every observation of `endpoint`.
    pub(crate) fn remove_endpoint(&self, endpoint: &str) -> Vec<ActiveObservation> {
        self.lock()
            .remove(endpoint)
            .map(|paths| paths.into_values().collect())
            .unwrap_or_default()
    }
}

impl Drop for Observations {
    fn drop(&mut self) {
        let m = self.active.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, paths) in m.drain() {
            for (_, o) in paths {
                o.abort();
            }
        }
    }
}

/// Starts forwarding the notifications of `stream` (an observation of `path` at `endpoint`) as
/// NOTIFICATION events to `emit`, until the stream ends or `emit` returns `false` (the server
/// is gone). A notification larger than one block is completed with Block2 requests through
/// `device` (RFC 7959 section 3.4).
pub(crate) fn forward(
    endpoint: &str,
    path: Path,
    mut stream: ObservationStream,
    device: DeviceHandle,
    accept: Option<ContentFormat>,
    emit: impl Fn(ServerEvent) -> bool + Send + 'static,
) -> ActiveObservation {
    let token = stream.token().to_vec();
    let ep = endpoint.to_string();
    let observation = token.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
    let task = tokio::spawn(async move {
        while let Some(n) = stream.next().await {
            let stamp = ReadingStamp {
                received: n.received,
                observe: n
                    .packet
                    .get_first_option(CoapOption::Observe)
                    .and_then(|v| decode_uint_option(v).ok())
                    .map(|number| ObserveSequence {
                        observation,
                        number,
                    }),
            };
            let whole = match device.complete_notification(&path, accept, n.packet).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(endpoint = %ep, %path, error = %e, "incomplete notification");
                    continue;
                }
            };
            let Some(node) = decode_notification(&whole, &path) else {
                tracing::debug!(endpoint = %ep, %path, "undecodable notification");
                continue;
            };
            let event = ServerEvent::Notification {
                endpoint: ep.clone(),
                path,
                node,
                stamp,
            };
            if !emit(event) {
                return;
            }
        }
    });
    ActiveObservation { token, task }
}

fn decode_notification(r: &DmResponse, path: &Path) -> Option<Node> {
    if !r.is_success() {
        return None;
    }
    // Without Content-Format a single value is text/plain, as for read answers.
    let cf = r.content_format.unwrap_or(ContentFormat::Text);
    content::decode(cf, path, &r.payload).ok()
}
