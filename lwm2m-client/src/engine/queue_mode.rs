//! LwM2M Queue Mode (OMA TS Core 1.1 §6.2.1, the Register's `Q` parameter; Transport 1.1,
//! Queue Mode operation): a device on a battery turns its radio off between exchanges. It
//! registers with `Q`, stays reachable for an awake window after each exchange with its
//! server (CoAP MAX_TRANSMIT_WAIT, 93 s, by default), then sleeps: what the server sends
//! meanwhile is lost, as it is to a radio that is off, and the server keeps its requests until
//! the device is back. The device wakes to send: a Registration Update first, as the spec's
//! Queue Mode flows show (Leshan takes a queue-mode client for awake on its Register and
//! Update only), then what it had to send, e.g. a notification of a finished download. A
//! package pull runs on its own sockets, so it goes on while the registration sleeps.

use super::{Engine, Event};
use crate::codec::{Path, Value};
use crate::engine::RegState;
use crate::objects::server::binding_queues;

/// Queue Mode settings ([`Config::queue_mode`](super::Config::queue_mode)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueMode {
    /// The device's own choice: it registers in Queue Mode whatever its Server's Binding
    /// says (LwM2M 1.1 leaves Queue Mode to the client). Without it, a Binding with `Q`
    /// (LwM2M 1.0's "UQ", /1/0/7) turns Queue Mode on, and one without turns it off.
    pub always: bool,
    /// How long the device stays reachable after its last exchange with the server.
    pub awake_ms: u64,
}

impl Default for QueueMode {
    /// Off unless the Binding asks, with the awake window of CoAP's MAX_TRANSMIT_WAIT (93 s,
    /// RFC 7252 §4.8.2), which servers such as Leshan assume.
    fn default() -> Self {
        Self {
            always: false,
            awake_ms: 93_000,
        }
    }
}

/// Where a queue-mode device stands.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// End of the awake window while it runs; `None` before the first exchange and once the
    /// window is over (see `window_over`), so no timer is left in the past.
    awake_until: Option<u64>,
    /// The window since the last exchange is over: the device sleeps as soon as nothing of
    /// its own waits for an answer.
    window_over: bool,
    /// The device said it sleeps ([`Event::Sleeping`]) and has not woken since.
    asleep: bool,
}

impl<P: Clone + PartialEq> Engine<P> {
    /// An exchange with the server at `now` (a datagram from it, a message to it): the awake
    /// window starts again.
    pub(crate) fn exchanged(&mut self, now: u64) {
        if !self.reg.queue {
            return;
        }
        let until = now.saturating_add(self.config.queue_mode.awake_ms);
        self.presence.awake_until = Some(self.presence.awake_until.map_or(until, |t| t.max(until)));
        self.presence.window_over = false;
        if self.presence.asleep {
            self.presence.asleep = false;
            self.events.push_back(Event::Awake);
        }
    }

    /// Whether the next Register or Update is in Queue Mode: the device's own choice, or a
    /// `Q` in the Server's Binding.
    pub(crate) fn queue_wanted(&mut self) -> bool {
        self.config.queue_mode.always
            || matches!(
                self.read_value(0, &Path::resource(1, 0, 7)),
                Ok(Value::String(b)) if binding_queues(&b)
            )
    }

    /// Whether the device sleeps at `now`: queue mode, registered, its awake window over and
    /// nothing of its own waiting for an answer (a request in flight keeps the radio on).
    pub(crate) fn sleeping(&self, now: u64) -> bool {
        self.reg.queue
            && self.reg.state() == RegState::Registered
            && self.reg.in_flight.is_none()
            && self.outgoing.is_empty()
            && (self.presence.window_over || self.presence.awake_until.is_some_and(|t| now >= t))
    }

    /// When the awake window ends, for [`Engine::poll_timeout`]; none once it has.
    pub(crate) fn sleep_deadline(&self) -> Option<u64> {
        self.presence.awake_until
    }

    /// At a timer: the window ends, and the device says it sleeps once nothing of its own
    /// waits for an answer (a timer of its retransmissions or a give-up brings it back here).
    pub(crate) fn queue_mode_timer(&mut self, now: u64) {
        if self.presence.awake_until.is_some_and(|t| now >= t) {
            self.presence.awake_until = None;
            self.presence.window_over = true;
        }
        if !self.presence.asleep && self.sleeping(now) {
            self.presence.asleep = true;
            self.events.push_back(Event::Sleeping);
        }
    }

    /// Before the device sends on its own: asleep, it first tells the server it is back with
    /// a Registration Update (the message that follows rides on the same awake window).
    pub(crate) fn wake_to_send(&mut self, now: u64) {
        if self.sleeping(now) {
            self.schedule_update(now);
            self.registration_timer(now);
        }
    }
}
