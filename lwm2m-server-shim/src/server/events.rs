//! Server events (registrations and notifications) fanned out to every listener, e.g. the SSE
//! stream `GET /api/event` ([`EventBus`]), and routed per endpoint to the firmware jobs
//! following that endpoint ([`EndpointEvents`]), so a job does not wake up for the events of
//! every other device. The REST layer gives them their Leshan JSON shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lwm2m_client::codec::{Node, Path};
use tokio::sync::broadcast;

use crate::server::readings::ReadingStamp;
use crate::server::registration::store::{Registration, RegistrationUpdate};

/// What happened at the server that a listener may want to know about.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// A client registered.
    Registration(Registration),
    /// A client sent a registration Update.
    Updated {
        /// The registration after the update.
        registration: Registration,
        /// What the update carried.
        update: RegistrationUpdate,
    },
    /// A client de-registered or its lifetime expired.
    Deregistration(Registration),
    /// A queue-mode client sent something and can be reached again (its endpoint name).
    Awake(String),
    /// A queue-mode client's awake time passed: requests to it wait (its endpoint name).
    Sleeping(String),
    /// An observed resource changed.
    Notification {
        /// Endpoint name of the notifying client.
        endpoint: String,
        /// Observed path, e.g. `/5/0/3`.
        path: Path,
        /// The notified node, decoded from its content format.
        node: Node,
        /// When it arrived and its Observe number, to order it against other readings.
        stamp: ReadingStamp,
    },
    /// Paths observed together (Observe-Composite) changed.
    CompositeNotification {
        /// Endpoint name of the notifying client.
        endpoint: String,
        /// The observed paths.
        paths: Vec<Path>,
        /// The node under each observed path, `None` where the client sent no value.
        content: Vec<(Path, Option<Node>)>,
        /// When it arrived and its Observe number.
        stamp: ReadingStamp,
    },
}

impl ServerEvent {
    /// Leshan's name for this kind of event (its SSE event name), also used in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Registration(_) => "REGISTRATION",
            Self::Updated { .. } => "UPDATED",
            Self::Deregistration(_) => "DEREGISTRATION",
            Self::Awake(_) => "AWAKE",
            Self::Sleeping(_) => "SLEEPING",
            Self::Notification { .. } | Self::CompositeNotification { .. } => "NOTIFICATION",
        }
    }

    /// The endpoint the event concerns (for `?ep=` filtering).
    pub fn endpoint(&self) -> &str {
        match self {
            Self::Registration(r) | Self::Deregistration(r) => &r.endpoint,
            Self::Updated { registration, .. } => &registration.endpoint,
            Self::Awake(ep) | Self::Sleeping(ep) => ep,
            Self::Notification { endpoint, .. } | Self::CompositeNotification { endpoint, .. } => {
                endpoint
            }
        }
    }
}

/// Broadcasts events to any number of subscribers; slow subscribers lose the oldest events
/// instead of slowing the CoAP loop.
pub struct EventBus<E> {
    sender: broadcast::Sender<Arc<E>>,
}

impl<E> Clone for EventBus<E> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

/// Events an event-stream subscriber may fall behind by before it loses any: a fleet of
/// 10 000 devices produces about 4 000 events/s (phases, notifications, registrations), so
/// this is a few seconds of slack for an operator's script; the ring costs a few MiB.
pub const EVENT_BACKLOG: usize = 16 * 1024;

impl<E> Default for EventBus<E> {
    fn default() -> Self {
        Self::new(EVENT_BACKLOG)
    }
}

impl<E> EventBus<E> {
    /// A bus keeping up to `capacity` undelivered events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// Publishes an event; having no subscriber is fine.
    pub fn publish(&self, event: E) {
        self.publish_shared(Arc::new(event));
    }

    /// Publishes an event already shared with other listeners.
    pub fn publish_shared(&self, event: Arc<E>) {
        let _ = self.sender.send(event);
    }

    /// A new subscription that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<E>> {
        self.sender.subscribe()
    }
}

/// Events kept per endpoint channel for a subscriber that has not read them yet; a subscriber
/// that falls further behind sees `Lagged` (polling catches up).
const ENDPOINT_CAPACITY: usize = 64;

type EndpointSenders = HashMap<String, broadcast::Sender<Arc<ServerEvent>>>;

/// Routes the events of one endpoint to the subscribers of that endpoint only: one channel per
/// endpoint with at least one subscriber, created by the first subscription and removed with
/// the last.
#[derive(Clone, Default)]
pub struct EndpointEvents {
    senders: Arc<Mutex<EndpointSenders>>,
}

impl EndpointEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, EndpointSenders> {
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A subscription to the events of `endpoint` routed from now on; it ends when dropped.
    pub fn subscribe(&self, endpoint: &str) -> EndpointSubscription {
        let rx = self
            .lock()
            .entry(endpoint.to_string())
            .or_insert_with(|| broadcast::channel(ENDPOINT_CAPACITY).0)
            .subscribe();
        EndpointSubscription {
            hub: self.clone(),
            endpoint: endpoint.to_string(),
            rx: Some(rx),
        }
    }

    /// Hands `event` to the subscribers of its endpoint, if any.
    pub fn route(&self, event: &Arc<ServerEvent>) {
        if let Some(tx) = self.lock().get(event.endpoint()) {
            let _ = tx.send(event.clone());
        }
    }

    /// How many endpoints have a subscriber.
    pub fn endpoints(&self) -> usize {
        self.lock().len()
    }
}

/// The events of one endpoint (see [`EndpointEvents::subscribe`]).
pub struct EndpointSubscription {
    hub: EndpointEvents,
    endpoint: String,
    /// Always `Some` until dropped.
    rx: Option<broadcast::Receiver<Arc<ServerEvent>>>,
}

impl EndpointSubscription {
    /// The next event; `Lagged` when events were lost because this subscriber fell behind.
    pub async fn recv(&mut self) -> Result<Arc<ServerEvent>, broadcast::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }

    /// Discards the events received but not read yet.
    pub fn clear(&mut self) {
        if let Some(rx) = &mut self.rx {
            *rx = rx.resubscribe();
        }
    }
}

impl Drop for EndpointSubscription {
    fn drop(&mut self) {
        let mut m = self.hub.lock();
        // Dropped under the lock, so a concurrent subscribe cannot get a sender removed here.
        drop(self.rx.take());
        if m.get(&self.endpoint)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            m.remove(&self.endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use lwm2m_client::codec::{Resource, ResourceValue, Value};

    use super::*;

    fn note(ep: &str, path: &str) -> Arc<ServerEvent> {
        let path: Path = path.parse().expect("path");
        Arc::new(ServerEvent::Notification {
            endpoint: ep.into(),
            path,
            node: Node::Resource(Resource {
                id: path.resource_id().unwrap_or(0),
                value: ResourceValue::Single(Value::Integer(1)),
            }),
            stamp: ReadingStamp::polled_now(),
        })
    }

    #[tokio::test]
    async fn endpoint_subscribers_see_only_their_endpoint() {
        let hub = EndpointEvents::default();
        let mut a = hub.subscribe("a");
        let mut a2 = hub.subscribe("a");
        let b = hub.subscribe("b");
        assert_eq!(hub.endpoints(), 2);
        hub.route(&note("c", "/5/0/3"));
        hub.route(&note("a", "/5/0/3"));
        hub.route(&note("a", "/5/0/5"));
        for s in [&mut a, &mut a2] {
            assert_eq!(s.recv().await.unwrap().endpoint(), "a");
            assert!(
                matches!(&*s.recv().await.unwrap(), ServerEvent::Notification { path, .. } if path.to_string() == "/5/0/5")
            );
        }
        drop(b);
        assert_eq!(hub.endpoints(), 1);
        hub.route(&note("a", "/5/0/3"));
        a.clear();
        drop(a2);
        assert_eq!(hub.endpoints(), 1);
        drop(a);
        assert_eq!(hub.endpoints(), 0);
    }
}
