//! Observations the server holds (LwM2M core TS section 6.4.5, RFC 7641): which endpoint and
//! path each token belongs to and the task forwarding its notifications as events.

use std::collections::HashMap;
use std::sync::Mutex;

use coap_lite::CoapOption;
use lwm2m_client::codec::block::decode_uint_option;
use lwm2m_client::codec::{ContentFormat, Path};
use tokio::task::JoinHandle;

use crate::coap::endpoint::ObservationStream;
use crate::content;
use crate::server::events::ServerEvent;
use crate::server::readings::{ObserveSequence, ReadingStamp};
use crate::server::requests::{CompositePaths, DeviceHandle, DmResponse};

/// One observation the server forwards notifications of.
pub(crate) struct ActiveObservation {
    /// Its token, to forget it in the CoAP endpoint.
    pub(crate) token: Vec<u8>,
    /// Ends by itself once the token is forgotten and what arrived before is reported.
    task: JoinHandle<()>,
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

    /// Records an observation; returns the one it replaces (same endpoint and target).
    pub(crate) fn insert(
        &self,
        endpoint: &str,
        target: &Observed,
        o: ActiveObservation,
    ) -> Option<ActiveObservation> {
        self.lock()
            .entry(endpoint.to_string())
            .or_default()
            .insert(target.key(), o)
    }

    /// Whether the observation of `target` at `endpoint` is recorded and still forwarding.
    pub(crate) fn is_active(&self, endpoint: &str, target: &Observed) -> bool {
        self.lock()
            .get(endpoint)
            .and_then(|m| m.get(&target.key()))
            .is_some_and(|o| !o.task.is_finished())
    }

    /// The token of the observation of `target` at `endpoint`, if one is recorded.
    pub(crate) fn token(&self, endpoint: &str, target: &Observed) -> Option<Vec<u8>> {
        self.lock()
            .get(endpoint)
            .and_then(|m| m.get(&target.key()))
            .map(|o| o.token.clone())
    }

    /// Removes one observation.
    pub(crate) fn remove(&self, endpoint: &str, target: &Observed) -> Option<ActiveObservation> {
        let mut m = self.lock();
        let old = m
            .get_mut(endpoint)
            .and_then(|paths| paths.remove(&target.key()));
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
                o.task.abort();
            }
        }
    }
}

/// What an observation watches: one path (Observe, RFC 7641) or several at once
/// (Observe-Composite, OMA TS Core 1.1 section 6.4.3).
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// One path.
    Path(Path),
    /// The paths of a composite observation.
    Composite(CompositePaths),
}

impl Observed {
    /// The key observations are recorded under: the path, or the composite's paths.
    fn key(&self) -> String {
        match self {
            Self::Path(p) => p.to_string(),
            Self::Composite(c) => {
                let paths: Vec<String> = c.paths.iter().map(Path::to_string).collect();
                format!("composite:{}", paths.join(","))
            }
        }
    }
}

/// Starts forwarding the notifications of `stream` (an observation of `target` at
/// `endpoint`) as NOTIFICATION events to `emit`, until the stream ends or `emit` returns
/// `false` (the server is gone). A notification larger than one block is completed with
/// Block2 requests through `device` (RFC 7959 section 3.4). A composite observation's answers
/// are always SenML, so `accept` is what its notifications are decoded as.
pub(crate) fn forward(
    endpoint: &str,
    target: Observed,
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
            let whole = match &target {
                Observed::Path(path) => device.complete_notification(path, accept, n.packet).await,
                Observed::Composite(c) => {
                    let accept = accept.unwrap_or(c.format);
                    device
                        .complete_composite_notification(c, accept, n.packet)
                        .await
                }
            };
            let whole = match whole {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(endpoint = %ep, target = %target.key(), error = %e, "incomplete notification");
                    continue;
                }
            };
            let Some(event) = notification_event(&ep, &target, &whole, stamp) else {
                tracing::debug!(endpoint = %ep, target = %target.key(), "undecodable notification");
                continue;
            };
            if !emit(event) {
                return;
            }
        }
    });
    ActiveObservation { token, task }
}

/// The NOTIFICATION event of a completed notification; `None` for an error code or a payload
/// that does not decode.
fn notification_event(
    endpoint: &str,
    target: &Observed,
    r: &DmResponse,
    stamp: ReadingStamp,
) -> Option<ServerEvent> {
    if !r.is_success() {
        return None;
    }
    // Without Content-Format a single value is text/plain, as for read answers.
    let cf = r.content_format.unwrap_or(ContentFormat::Text);
    Some(match target {
        Observed::Path(path) => ServerEvent::Notification {
            endpoint: endpoint.to_string(),
            path: *path,
            node: content::decode(cf, path, &r.payload).ok()?,
            stamp,
        },
        Observed::Composite(c) => ServerEvent::CompositeNotification {
            endpoint: endpoint.to_string(),
            paths: c.paths.clone(),
            content: content::decode_composite(cf, &c.paths, &r.payload).ok()?,
            stamp,
        },
    })
}
