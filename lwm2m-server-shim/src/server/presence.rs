//! Presence of queue-mode clients (LwM2M core TS 1.1 section 6.5, Queue Mode; transport TS 1.1
//! section 5.2.2): a client registered with queue mode (`b=UQ` in 1.0, the `Q` parameter in
//! 1.1) is reachable only for a while after it sent something, then sleeps until it sends an
//! Update or another message. The server must not send it requests while it sleeps. Sans-IO:
//! what the client sent and the time go in; whether it woke up or fell asleep comes out.

use std::collections::HashMap;
use std::net::SocketAddr;
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
    /// Where the client registered from: its answers come from there.
    address: SocketAddr,
}

#[derive(Debug, Default)]
struct Clients {
    by_endpoint: HashMap<String, Entry>,
    by_address: HashMap<SocketAddr, String>,
}

impl Clients {
    fn remove(&mut self, endpoint: &str) -> Option<Entry> {
        let e = self.by_endpoint.remove(endpoint)?;
        if self
            .by_address
            .get(&e.address)
            .is_some_and(|ep| ep == endpoint)
        {
            self.by_address.remove(&e.address);
        }
        Some(e)
    }
}

/// The awake / sleeping state of every queue-mode client, by endpoint name and by the
/// address it registered from.
#[derive(Debug)]
pub struct Presence {
    awake_time: Duration,
    clients: Mutex<Clients>,
}

impl Presence {
    /// Clients stay awake for `awake_time` after each message.
    pub fn new(awake_time: Duration) -> Self {
        Self {
            awake_time,
            clients: Mutex::new(Clients::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `endpoint` registered, or updated its registration, in queue mode from `address` at
    /// `now`: it is awake for the awake time from now. Returns `true` when that wakes it (it
    /// was not known or was sleeping), so AWAKE is announced.
    pub fn registered(&self, endpoint: &str, address: SocketAddr, now: Instant) -> bool {
        let entry = Entry {
            awake_until: now + self.awake_time,
            sleeping: false,
            address,
        };
        let mut c = self.lock();
        let old = c.remove(endpoint);
        // A client that registered from this address before has moved: answers from here
        // are this one's now; the other is tracked on until its own next Update.
        c.by_address.insert(address, endpoint.to_string());
        c.by_endpoint.insert(endpoint.to_string(), entry);
        old.is_none_or(|e| e.sleeping)
    }

    /// The client at `address` answered at `now`: a queue-mode client there is awake for the
    /// awake time from now. Returns its endpoint name when it was sleeping (AWAKE is due);
    /// `None` as well for an address of no queue-mode client.
    pub fn heard_at(&self, address: SocketAddr, now: Instant) -> Option<String> {
        let mut c = self.lock();
        let c = &mut *c;
        let endpoint = c.by_address.get(&address)?;
        let e = c.by_endpoint.get_mut(endpoint)?;
        let woke = e.sleeping;
        e.sleeping = false;
        e.awake_until = e.awake_until.max(now + self.awake_time);
        woke.then(|| endpoint.clone())
    }

    /// A request to the client at `address` went unanswered: a queue-mode client there sleeps
    /// from now on, whatever its awake time said. Returns its endpoint name when it was awake
    /// (SLEEPING is due); `None` as well for an address of no queue-mode client.
    pub fn silent_at(&self, address: SocketAddr) -> Option<String> {
        let mut c = self.lock();
        let c = &mut *c;
        let endpoint = c.by_address.get(&address)?;
        let e = c.by_endpoint.get_mut(endpoint)?;
        let fell_asleep = !e.sleeping;
        e.sleeping = true;
        fell_asleep.then(|| endpoint.clone())
    }

    /// Whether `endpoint` is a queue-mode client that sleeps now.
    pub fn is_sleeping(&self, endpoint: &str) -> bool {
        self.lock()
            .by_endpoint
            .get(endpoint)
            .is_some_and(|e| e.sleeping)
    }

    /// Whether `endpoint` is tracked (registered in queue mode).
    pub fn tracks(&self, endpoint: &str) -> bool {
        self.lock().by_endpoint.contains_key(endpoint)
    }

    /// The clients whose awake time ended at or before `now`: they sleep from now on (each
    /// is returned once, so SLEEPING is announced once).
    pub fn fall_asleep(&self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for (ep, e) in self.lock().by_endpoint.iter_mut() {
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

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn clients_sleep_after_the_awake_time_and_wake_when_heard_from() {
        let p = Presence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(
            p.registered("a", addr(1), t0),
            "a new queue-mode client is awake"
        );
        assert_eq!(
            p.heard_at(addr(2), t0),
            None,
            "untracked clients never sleep"
        );
        assert!(!p.tracks("plain"));
        assert!(p.fall_asleep(t0 + Duration::from_secs(9)).is_empty());
        // A message at 5 s keeps it awake until 15 s.
        assert_eq!(p.heard_at(addr(1), t0 + Duration::from_secs(5)), None);
        assert!(p.fall_asleep(t0 + Duration::from_secs(14)).is_empty());
        assert_eq!(p.fall_asleep(t0 + Duration::from_secs(15)), ["a"]);
        assert!(p.is_sleeping("a"));
        assert!(
            p.fall_asleep(t0 + Duration::from_secs(60)).is_empty(),
            "announced once"
        );
        let t61 = t0 + Duration::from_secs(61);
        assert_eq!(p.heard_at(addr(1), t61).as_deref(), Some("a"), "woke up");
        assert!(!p.is_sleeping("a"));
        assert!(
            !p.registered("a", addr(1), t0 + Duration::from_secs(62)),
            "already awake"
        );
        p.forget("a");
        assert!(!p.tracks("a") && !p.is_sleeping("a"));
        assert_eq!(p.heard_at(addr(1), t61), None);
    }

    /// A client that sleeps sooner than the awake time says: the request it left unanswered
    /// puts it to sleep at once (announced once), and its next message wakes it.
    #[test]
    fn a_client_that_leaves_a_request_unanswered_sleeps_until_heard_from() {
        let p = Presence::new(Duration::from_secs(93));
        let t0 = Instant::now();
        p.registered("a", addr(1), t0);
        assert_eq!(p.silent_at(addr(2)), None, "no queue-mode client there");
        assert_eq!(p.silent_at(addr(1)).as_deref(), Some("a"));
        assert!(p.is_sleeping("a"));
        assert_eq!(p.silent_at(addr(1)), None, "announced once");
        assert!(p.fall_asleep(t0 + Duration::from_secs(93)).is_empty());
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(p.heard_at(addr(1), t1).as_deref(), Some("a"), "woke up");
        assert!(p.fall_asleep(t1 + Duration::from_secs(92)).is_empty());
        assert_eq!(p.fall_asleep(t1 + Duration::from_secs(93)), ["a"]);
    }

    /// A client that updates from a new address (NAT rebinding, LwM2M core TS 1.1 §6.2.2)
    /// answers from there; its old address is forgotten, and answers from an address another
    /// client registered from later are that client's.
    #[test]
    fn answers_count_from_the_address_of_the_latest_registration() {
        let p = Presence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        p.registered("a", addr(1), t0);
        p.registered("a", addr(2), t0);
        let later = t0 + Duration::from_secs(20);
        assert_eq!(p.fall_asleep(later), ["a"]);
        assert_eq!(p.heard_at(addr(1), later), None);
        assert_eq!(p.heard_at(addr(2), later).as_deref(), Some("a"));
        // "b" now registers from the address "a" had: "a" stays tracked, answers from there
        // are b's, and forgetting "a" leaves them b's.
        p.registered("b", addr(2), later);
        assert!(p.tracks("a") && p.tracks("b"));
        p.forget("a");
        assert!(p.tracks("b"));
        assert_eq!(p.fall_asleep(later + Duration::from_secs(10)), ["b"]);
        assert_eq!(
            p.heard_at(addr(2), later + Duration::from_secs(11))
                .as_deref(),
            Some("b")
        );
    }
}
