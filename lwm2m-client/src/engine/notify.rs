//! Observe notifications (RFC 7641): sent as confirmable messages when a value changed and
//! pmin has passed (and gt/lt/st agree), or when pmax passes without one.

use super::{Engine, Event, Purpose};
use crate::coap;
use crate::codec::{Node, Resource, ResourceValue};
use crate::observe::{fingerprint, Attributes};
use alloc::vec::Vec;
use coap_lite::{CoapOption, MessageClass, MessageType, ResponseType};

impl<P: Clone + PartialEq> Engine<P> {
    /// Server defaults for observations (Server object resources 2 and 3).
    fn default_attributes(&mut self) -> Attributes {
        let read = |e: &mut Self, r| match e.read_value(0, &crate::codec::Path::resource(1, 0, r)) {
            Ok(crate::codec::Value::Integer(v)) => u32::try_from(v).ok().filter(|v| *v > 0),
            _ => None,
        };
        Attributes {
            pmin: read(self, 2),
            pmax: read(self, 3),
            ..Attributes::default()
        }
    }

    fn periods(
        &self,
        path: &crate::codec::Path,
        defaults: &Attributes,
    ) -> (u64, Option<u64>, Attributes) {
        let a = self.attrs.effective(path, defaults);
        let pmin = u64::from(a.pmin.unwrap_or(0)) * 1000;
        let pmax = a.pmax.filter(|p| *p > 0).map(|p| u64::from(p) * 1000);
        (pmin, pmax, a)
    }

    pub(crate) fn observation_deadline(&self) -> Option<u64> {
        // Server defaults as read at the last processing (every datagram and timer refreshes them).
        let defaults = self.obs_defaults;
        self.observations
            .iter()
            .filter(|o| o.in_flight.is_none())
            .filter_map(|o| {
                let (pmin, pmax, _) = self.periods(&o.path, &defaults);
                let due_dirty = o.dirty.then_some(o.last_sent_ms + pmin);
                let due_max = pmax.map(|p| o.last_sent_ms + p);
                match (due_dirty, due_max) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    pub(crate) fn mark_all_dirty(&mut self) {
        for o in &mut self.observations {
            o.dirty = true;
        }
    }

    pub(crate) fn notification_acked(&mut self, token: &[u8]) {
        for o in &mut self.observations {
            if o.token == token {
                o.in_flight = None;
            }
        }
    }

    pub(crate) fn cancel_observation(&mut self, peer: &P, token: &[u8]) {
        let mut cancelled = Vec::new();
        self.observations.retain(|o| {
            let hit = o.peer == *peer && o.token == token;
            if hit {
                cancelled.push(o.path);
            }
            !hit
        });
        for path in cancelled {
            self.events.push_back(Event::ObserveCancelled { path });
        }
    }

    pub(crate) fn process_observations(&mut self, now: u64) {
        if self.observations.is_empty() {
            return;
        }
        let defaults = self.default_attributes();
        self.obs_defaults = defaults;
        let szx = self.config.max_block_szx.min(6);
        let mut i = 0;
        while i < self.observations.len() {
            let Some(o) = self.observations.get(i) else {
                break;
            };
            if o.in_flight.is_some() {
                i += 1;
                continue;
            }
            let (pmin, pmax, attrs) = self.periods(&o.path, &defaults);
            let since = now.saturating_sub(o.last_sent_ms);
            let pmax_due = pmax.is_some_and(|p| since >= p);
            let change_due = o.dirty && since >= pmin;
            if !pmax_due && !change_due {
                i += 1;
                continue;
            }
            let (path, format, last_hash, last_value) =
                (o.path, o.format, o.last_hash, o.last_value);
            let read = self
                .read_node(now, &path)
                .and_then(|n| Self::encode(&n, &path, format).map(|b| (n, b)));
            let Ok((node, payload)) = read else {
                // The observed entity is gone: tell the server with an error notification.
                self.wake_to_send(now);
                let o = self.observations.remove(i);
                let mid = self.mid();
                let p = coap::packet(
                    MessageType::Confirmable,
                    MessageClass::Response(ResponseType::NotFound),
                    mid,
                    &o.token,
                );
                self.send_confirmable(now, o.peer, p, Purpose::Notify);
                self.events.push_back(Event::ObserveCancelled { path });
                continue;
            };
            let hash = fingerprint(&payload);
            let value = match &node {
                Node::Resource(Resource {
                    value: ResourceValue::Single(v),
                    ..
                }) => v.as_f64(),
                _ => None,
            };
            let changed = hash != last_hash && attrs.value_passes(last_value, value);
            if !pmax_due && !changed {
                if let Some(o) = self.observations.get_mut(i) {
                    o.dirty = false;
                }
                i += 1;
                continue;
            }
            self.wake_to_send(now);
            let mid = self.mid();
            let Some(o) = self.observations.get_mut(i) else {
                break;
            };
            o.seq = (o.seq + 1) & 0x00ff_ffff;
            o.last_sent_ms = now;
            o.last_hash = hash;
            o.last_value = value;
            o.dirty = false;
            o.in_flight = Some(mid);
            let mut p = coap::packet(
                MessageType::Confirmable,
                MessageClass::Response(ResponseType::Content),
                mid,
                &o.token,
            );
            coap::set_uint(&mut p, CoapOption::Observe, o.seq);
            coap::set_uint(
                &mut p,
                CoapOption::ContentFormat,
                u32::from(format.number()),
            );
            // A body larger than one block goes out as its first Block2 block; the server
            // fetches the rest with GET + Block2 (RFC 7959 section 2.6).
            let size = 1usize << (szx + 4);
            let mut payload = payload;
            if payload.len() > size {
                let total = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                payload.truncate(size);
                if let Ok(b) = crate::codec::BlockOpt::new(0, true, szx) {
                    p.add_option(CoapOption::Block2, b.encode());
                }
                coap::set_uint(&mut p, CoapOption::Size2, total);
            }
            p.payload = payload;
            let peer = o.peer.clone();
            self.send_confirmable(now, peer, p, Purpose::Notify);
            i += 1;
        }
    }
}
