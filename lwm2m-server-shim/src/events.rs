//! Server events (registrations and notifications) fanned out to every listener, e.g. the SSE
//! stream `GET /api/event` and, later, campaigns.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::jobs::JobStatus;
use crate::registration_json::{registration_json, update_json};
use crate::store::{Registration, RegistrationUpdate};

/// Something a listener may want to know about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
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
    /// An observed resource changed.
    Notification {
        /// Endpoint name of the notifying client.
        endpoint: String,
        /// Observed path, e.g. `/5/0/3`.
        path: String,
        /// The notified node in Leshan's JSON shape.
        value: Value,
    },
    /// A firmware job changed (phase, State, Update Result).
    Firmware(JobStatus),
}

impl Event {
    /// The SSE event name Leshan uses.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Registration(_) => "REGISTRATION",
            Self::Updated { .. } => "UPDATED",
            Self::Deregistration(_) => "DEREGISTRATION",
            Self::Notification { .. } => "NOTIFICATION",
            Self::Firmware(_) => "FIRMWARE",
        }
    }

    /// The endpoint the event concerns (for `?ep=` filtering).
    pub fn endpoint(&self) -> &str {
        match self {
            Self::Registration(r) | Self::Deregistration(r) => &r.endpoint,
            Self::Updated { registration, .. } => &registration.endpoint,
            Self::Notification { endpoint, .. } => endpoint,
            Self::Firmware(j) => &j.ep,
        }
    }

    /// The SSE `data` JSON, shaped as Leshan's EventServlet sends it.
    pub fn data(&self) -> Value {
        match self {
            Self::Registration(r) | Self::Deregistration(r) => registration_json(r),
            Self::Updated {
                registration,
                update,
            } => json!({
                "registration": registration_json(registration),
                "update": update_json(&registration.id, update),
            }),
            Self::Notification {
                endpoint,
                path,
                value,
            } => json!({"ep": endpoint, "kind": "single", "res": path, "val": value}),
            Self::Firmware(j) => j.to_json(),
        }
    }

    /// The event as one `text/event-stream` record.
    pub fn to_sse(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name(), self.data())
    }
}

/// Broadcasts events to any number of subscribers; slow subscribers lose the oldest events
/// instead of slowing the CoAP loop.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl EventBus {
    /// A bus keeping up to `capacity` undelivered events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// Publishes an event; having no subscriber is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(Arc::new(event));
    }

    /// A new subscription that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}
