//! Presence of queue-mode clients (LwM2M core TS 1.1 section 6.5, Queue Mode; transport TS 1.1
//! section 5.2.2): a client registered with queue mode (`b=UQ` in 1.0, the `Q` parameter in
//! 1.1) is reachable only for a while after it sent something, then sleeps until it sends an
//! Update or another message. The server must not send it requests while it sleeps. Sans-IO:
//! what the client sent and the time go in; whether it woke up or fell asleep comes out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a queue-mode client stays reachable after it last sent something, when nothing
/// else is configured: CoAP's MAX_TRANSMIT_WAIT (93 s, RFC 7252 section 4.8.2), the time the
/// transport TS recommends and Leshan's default.
pub const DEFAULT_AWAKE_TIME: Duration = Duration::from_secs(93);

#[derive(Debug, Clone, Copy)]
struct Entry {
    awake_until: Instant,
    sleeping: bool,
}

/// The awake / sleeping state of every queue-mode client, by endpoint name.
#[derive(Debug)]
pub struct Presence {
    awake_time: Duration,
    clients: Mutex<HashMap<String, Entry>>,
}

impl Presence {
    /// Clients stay awake for `awake_time` after each message.
    pub fn new(awake_time: Duration) -> Self {
        Self {
            awake_time,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `endpoint` registered in queue mode at `now` (it is awake); returns `true` when that
    /// wakes it (it was not known or was sleeping), so AWAKE is announced.
    pub fn registered(&self, endpoint: &str, now: Instant) -> bool {
        let entry = Entry {
            awake_until: now + self.awake_time,
            sleeping: false,
        };
        self.lock()
            .insert(endpoint.to_string(), entry)
            .is_none_or(|e| e.sleeping)
    }

    /// `endpoint` sent something at `now`: it is awake for the awake time from now. Returns
    /// `true` when it was sleeping; `false` as well for a client not in queue mode.
    pub fn heard_from(&self, endpoint: &str, now: Instant) -> bool {
        let mut m = self.lock();
        let Some(e) = m.get_mut(endpoint) else {
            return false;
        };
        let woke = e.sleeping;
        e.sleeping = false;
        e.awake_until = e.awake_until.max(now + self.awake_time);
        woke
    }

    /// Whether `endpoint` is a queue-mode client that sleeps now.
    pub fn is_sleeping(&self, endpoint: &str) -> bool {
        self.lock().get(endpoint).is_some_and(|e| e.sleeping)
    }

    /// Whether `endpoint` is tracked (registered in queue mode).
    pub fn tracks(&self, endpoint: &str) -> bool {
        self.lock().contains_key(endpoint)
    }

    /// The clients whose awake time ended at or before `now`: they sleep from now on (each
    /// is returned once, so SLEEPING is announced once).
    pub fn fall_asleep(&self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for (ep, e) in self.lock().iter_mut() {
            if !e.sleeping && e.awake_until <= now {
                e.sleeping = true;
                out.push(ep.clone());
            }
        }
        out.sort();
        out
    }

    /// Stops tracking `endpoint` (de-registered, or no longer in queue mode).
    pub fn forget(&self, endpoint: &str) {
        self.lock().remove(endpoint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_sleep_after_the_awake_time_and_wake_when_heard_from() {
        let p = Presence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(p.registered("a", t0), "a new queue-mode client is awake");
        assert!(!p.heard_from("plain", t0), "untracked clients never sleep");
        assert!(!p.tracks("plain"));
        assert!(p.fall_asleep(t0 + Duration::from_secs(9)).is_empty());
        // A message at 5 s keeps it awake until 15 s.
        assert!(!p.heard_from("a", t0 + Duration::from_secs(5)));
        assert!(p.fall_asleep(t0 + Duration::from_secs(14)).is_empty());
        assert_eq!(p.fall_asleep(t0 + Duration::from_secs(15)), ["a"]);
        assert!(p.is_sleeping("a"));
        assert!(
            p.fall_asleep(t0 + Duration::from_secs(60)).is_empty(),
            "announced once"
        );
        assert!(p.heard_from("a", t0 + Duration::from_secs(61)), "woke up");
        assert!(!p.is_sleeping("a"));
        assert!(
            !p.registered("a", t0 + Duration::from_secs(62)),
            "already awake"
        );
        p.forget("a");
        assert!(!p.tracks("a") && !p.is_sleeping("a"));
    }
}
