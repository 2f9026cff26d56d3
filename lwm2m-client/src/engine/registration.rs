//! Registration interface (OMA TS Core 1.1 section 6.2): Register, Update before the lifetime
//! runs out or when objects change, Register again when the server forgot us (4.04), retry
//! Registers as the Server object's retry procedure says and bootstrap instead once they keep
//! failing (section 6.2.1.1), Deregister on shutdown.

use super::block1_send::Block1Tx;
use super::{BootstrapCause, Engine, Event, Purpose};
use crate::coap;
use crate::codec::{link, ContentFormat, Link, Path, Value};
use crate::objects::server::RetryPolicy;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};

/// Longest Endpoint Client Name: `ep=` and the name fill one Uri-Query option, at most 255
/// bytes (RFC 7252 §5.10).
pub const MAX_ENDPOINT_LEN: usize = 255 - "ep=".len();

/// Why a name cannot be the Endpoint Client Name ([`check_endpoint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadEndpoint {
    /// No name at all.
    Empty,
    /// Longer than [`MAX_ENDPOINT_LEN`] bytes (its length).
    TooLong(usize),
}

impl core::fmt::Display for BadEndpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => f.write_str("the endpoint name is empty; servers require one"),
            Self::TooLong(n) => write!(
                f,
                "the endpoint name has {n} bytes; at most {MAX_ENDPOINT_LEN} fit the `ep=` \
                 query of a CoAP Register (RFC 7252 §5.10)"
            ),
        }
    }
}

/// Checks `name` as the Endpoint Client Name the Register and the Bootstrap-Request carry in
/// `ep=` (LwM2M 1.1 Core §6.2.1, §6.1.7.5): servers refuse an empty one (Leshan: 4.00
/// "endpoint is mandatory") and an option longer than CoAP allows (Leshan: 4.02 Bad Option),
/// and a device that sends either retries for ever.
pub fn check_endpoint(name: &str) -> Result<(), BadEndpoint> {
    match name.len() {
        0 => Err(BadEndpoint::Empty),
        n if n > MAX_ENDPOINT_LEN => Err(BadEndpoint::TooLong(n)),
        _ => Ok(()),
    }
}

/// Where the client stands with its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegState {
    /// Not registered (not started, waiting to retry, or deregistered).
    Unregistered,
    /// A Register is in flight.
    Registering,
    /// Registered (an Update may be in flight).
    Registered,
    /// Client-initiated bootstrap in progress (request sent or waiting for Bootstrap-Finish).
    Bootstrapping,
    /// Deregistered on request; nothing more is sent.
    Stopped,
}

#[derive(Debug)]
pub(crate) struct Registration {
    location: Option<Vec<String>>,
    pub(crate) in_flight: Option<Purpose>,
    /// When to send the next Register (unregistered) or Update (registered).
    pub(crate) next_at: Option<u64>,
    /// The next retry delay of a Bootstrap-Request or an Update.
    backoff_ms: u64,
    initial_backoff_ms: u64,
    /// Registers that failed since the last registration (refused, unanswered, or no secure
    /// session), over all sequences of the retry procedure.
    failed_registers: u32,
    /// Objects or instances changed since the last Register/Update: send the link payload.
    objects_changed: bool,
    stopped: bool,
    /// Bootstrapping instead of registering.
    pub(crate) bootstrap: bool,
    /// The lifetime the server was last told (Register or Update `lt`).
    announced_lifetime: Option<u32>,
    /// The last Register (or a 1.0 Update's binding) said Queue Mode: the device sleeps
    /// between exchanges.
    pub(crate) queue: bool,
    /// Give up waiting for Bootstrap-Finish at this time and request again.
    pub(crate) bootstrap_deadline: Option<u64>,
    /// Purge the bootstrap account at this time (its Bootstrap-Server Account Timeout).
    pub(crate) bootstrap_account_expiry: Option<u64>,
    /// The server executed Disable: de-register, then stay away this long (ms).
    pub(crate) disable_for: Option<u64>,
    /// Disabled until this time: nothing goes to the server, nothing from it is taken.
    pub(crate) disabled_until: Option<u64>,
    /// A block-wise Bootstrap-Write being received: its path, format and body so far.
    pub(crate) bootstrap_body: Option<(
        crate::codec::Path,
        Option<crate::codec::ContentFormat>,
        Vec<u8>,
    )>,
    /// The Register or Update in flight when it carries a payload: a 4.13 with Block1 sends
    /// it again block-wise.
    pub(crate) last_request: Option<Packet>,
    /// The block-wise transfer of `last_request` under way.
    pub(crate) block1_tx: Option<Block1Tx>,
}

impl Registration {
    pub(crate) fn new(initial_backoff_ms: u64) -> Self {
        Self {
            location: None,
            in_flight: None,
            next_at: None,
            backoff_ms: initial_backoff_ms,
            initial_backoff_ms,
            failed_registers: 0,
            objects_changed: false,
            stopped: false,
            bootstrap: false,
            bootstrap_deadline: None,
            bootstrap_account_expiry: None,
            disable_for: None,
            disabled_until: None,
            bootstrap_body: None,
            announced_lifetime: None,
            queue: false,
            last_request: None,
            block1_tx: None,
        }
    }
    pub(crate) fn schedule(&mut self, at: u64) {
        if !self.stopped {
            self.next_at = Some(self.next_at.map_or(at, |t| t.min(at)));
        }
    }
    pub(crate) fn deadline(&self) -> Option<u64> {
        if self.in_flight.is_some() {
            None
        } else {
            match (self.next_at, self.bootstrap_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
    }
    pub(crate) fn state(&self) -> RegState {
        if self.stopped {
            RegState::Stopped
        } else if self.bootstrap {
            RegState::Bootstrapping
        } else if self.location.is_some() {
            RegState::Registered
        } else if self.in_flight == Some(Purpose::Register) {
            RegState::Registering
        } else {
            RegState::Unregistered
        }
    }
}

fn code_string(c: MessageClass) -> String {
    format!("{c}")
}

impl<P: Clone + PartialEq> Engine<P> {
    /// The link-format payload announcing objects, versions and the preferred content format.
    /// Security (object 0) is never announced. `ct` carries exactly one number, unquoted, as
    /// the Register examples of OMA TS Core 1.1 section 6.2.1 do (`</>;rt="oma.lwm2m";ct=11543`):
    /// strict servers refuse a quoted list with 4.00.
    pub fn registration_payload(&self) -> String {
        let mut links = Vec::new();
        let ct = self.config.preferred_format.number();
        links.push(
            Link::new("/")
                .attr("rt", "oma.lwm2m")
                .attr("ct", format!("{ct}")),
        );
        for o in self.objects.iter().filter(|o| o.id() != 0) {
            let id = o.id();
            let instances = o.instances();
            if let Some(v) = o.version().filter(|v| *v != "1.0") {
                links.push(Link::new(format!("/{id}")).attr("ver", v));
            } else if instances.is_empty() {
                links.push(Link::new(format!("/{id}")));
            }
            for i in instances {
                links.push(Link::new(format!("/{id}/{i}")));
            }
        }
        link::encode(&links)
    }

    /// Lifetime in seconds: the Server object's (resource 1/0/1) when present.
    pub(crate) fn lifetime_s(&mut self) -> u32 {
        match self.read_value(0, &Path::resource(1, 0, 1)) {
            Ok(Value::Integer(lt)) if lt > 0 => u32::try_from(lt).unwrap_or(u32::MAX),
            _ => self.config.lifetime_s,
        }
    }

    /// Update well before expiry: leave MAX_TRANSMIT_WAIT (93 s) when the lifetime allows,
    /// else half of it.
    fn update_interval_ms(&mut self) -> u64 {
        let lt_ms = u64::from(self.lifetime_s()) * 1000;
        if lt_ms > 186_000 {
            lt_ms - 93_000
        } else {
            (lt_ms / 2).max(1000)
        }
    }

    /// Sends an Update now (objects or settings changed).
    pub fn trigger_update(&mut self, now: u64) {
        self.schedule_update(now);
        self.registration_timer(now);
    }

    /// Marks the object list changed and sends an Update carrying the link payload.
    pub fn objects_changed(&mut self, now: u64) {
        self.reg.objects_changed = true;
        self.trigger_update(now);
    }

    /// Marks the object list changed; the Update goes out after the current response.
    pub(crate) fn reg_objects_changed(&mut self, now: u64) {
        self.reg.objects_changed = true;
        self.schedule_update(now);
    }

    /// Schedules an Update for `now`; it goes out after the current request's response.
    pub(crate) fn schedule_update(&mut self, now: u64) {
        if self.reg.location.is_some() {
            self.reg.schedule(now);
        }
    }

    /// Deregisters (DELETE on the registration) and stops; [`Event::Deregistered`] follows
    /// when the server answers, gives up, or at once if not registered.
    pub fn deregister(&mut self, now: u64) {
        self.reg.stopped = true;
        self.reg.next_at = None;
        self.outgoing
            .retain(|o| !matches!(o.purpose, Purpose::Register | Purpose::Update));
        let Some(location) = self.reg.location.take() else {
            self.reg.in_flight = None;
            self.events.push_back(Event::Deregistered);
            return;
        };
        self.send_deregister(now, location);
    }

    /// Sends the De-register (DELETE on the registration's `location`).
    fn send_deregister(&mut self, now: u64, location: Vec<String>) {
        let mut p = self.new_request(RequestType::Delete);
        for seg in location {
            p.add_option(CoapOption::UriPath, seg.into_bytes());
        }
        self.reg.in_flight = Some(Purpose::Deregister);
        let server = self.server.clone();
        self.send_confirmable(now, server, p, Purpose::Deregister);
    }

    /// The server executed Disable (/1/0/4): once its 2.04 is out, de-register and stay away
    /// for the Disable Timeout (/1/0/5, a day by default; LwM2M 1.1 Core E.2).
    pub(crate) fn disable(&mut self, now: u64) {
        let timeout_s = match self.read_value(0, &Path::resource(1, 0, 5)) {
            Ok(Value::Integer(s)) => u64::try_from(s).unwrap_or(0),
            _ => u64::from(crate::objects::server::DEFAULT_DISABLE_TIMEOUT_S),
        };
        self.reg.disable_for = Some(timeout_s.saturating_mul(1000));
        self.reg.next_at = Some(now);
    }

    /// The De-register of a Disable is done (answered or not): away for `for_ms`. The
    /// server's observations ended with the registration; nothing is sent to it meanwhile.
    fn disabled(&mut self, now: u64, for_ms: u64) {
        self.reg.disable_for = None;
        self.reg.in_flight = None;
        self.reg.location = None;
        let until = now.saturating_add(for_ms);
        self.reg.disabled_until = Some(until);
        self.reg.next_at = None;
        self.reg.schedule(until);
        self.observations.clear();
        self.outgoing.retain(|o| o.purpose != Purpose::Notify);
        self.events.push_back(Event::Disabled { for_ms });
    }

    /// A De-register ended (answered or given up on): the client is disabled if a Disable
    /// asked for it, else deregistered.
    fn deregistered(&mut self, now: u64) {
        match self.reg.disable_for {
            Some(for_ms) if !self.reg.stopped => self.disabled(now, for_ms),
            _ => {
                self.reg.in_flight = None;
                self.reg.location = None;
                self.events.push_back(Event::Deregistered);
            }
        }
    }

    pub(crate) fn registration_timer(&mut self, now: u64) {
        if self.reg.stopped || self.reg.in_flight.is_some() {
            return;
        }
        if self.reg.bootstrap {
            return self.bootstrap_timer(now);
        }
        match self.reg.next_at {
            Some(t) if t <= now => {}
            _ => return,
        }
        self.reg.next_at = None;
        if let Some(for_ms) = self.reg.disable_for {
            // Disable executed (its 2.04 went out first): de-register, then stay away.
            match self.reg.location.take() {
                Some(location) => self.send_deregister(now, location),
                None => self.disabled(now, for_ms),
            }
            return;
        }
        self.reg.disabled_until = None;
        let mut p = self.new_request(RequestType::Post);
        // Queue Mode is the `Q` flag in LwM2M 1.1 (Core §6.2.1), a `Q` in the binding in
        // 1.0 (`b=UQ`). A Binding written since the last Register can change it: a 1.0 Update
        // carries the new binding; a 1.1 Update has no `Q`, so the device registers again.
        let queue = self.queue_wanted();
        let v1_0 = self.config.lwm2m_version == "1.0";
        if queue != self.reg.queue && !v1_0 {
            self.reg.location = None;
        }
        let binding = if queue && v1_0 { "b=UQ" } else { "b=U" };
        let purpose = if let Some(location) = self.reg.location.clone() {
            for seg in location {
                p.add_option(CoapOption::UriPath, seg.into_bytes());
            }
            // The server must learn a changed lifetime, or it expires us on the old one.
            let lt = self.lifetime_s();
            if self.reg.announced_lifetime != Some(lt) {
                p.add_option(CoapOption::UriQuery, format!("lt={lt}").into_bytes());
                self.reg.announced_lifetime = Some(lt);
            }
            if queue != self.reg.queue {
                p.add_option(CoapOption::UriQuery, binding.as_bytes().to_vec());
            }
            if self.reg.objects_changed {
                coap::set_uint(
                    &mut p,
                    CoapOption::ContentFormat,
                    u32::from(ContentFormat::LinkFormat.number()),
                );
                p.payload = self.registration_payload().into_bytes();
            }
            Purpose::Update
        } else {
            p.add_option(CoapOption::UriPath, b"rd".to_vec());
            let lt = self.lifetime_s();
            self.reg.announced_lifetime = Some(lt);
            for q in [
                format!("ep={}", self.config.endpoint),
                format!("lt={lt}"),
                format!("lwm2m={}", self.config.lwm2m_version),
                String::from(binding),
            ] {
                p.add_option(CoapOption::UriQuery, q.into_bytes());
            }
            if queue && !v1_0 {
                p.add_option(CoapOption::UriQuery, b"Q".to_vec());
            }
            coap::set_uint(
                &mut p,
                CoapOption::ContentFormat,
                u32::from(ContentFormat::LinkFormat.number()),
            );
            p.payload = self.registration_payload().into_bytes();
            Purpose::Register
        };
        self.reg.objects_changed = false;
        self.reg.queue = queue;
        self.reg.in_flight = Some(purpose.clone());
        self.reg.block1_tx = None;
        self.reg.last_request = (!p.payload.is_empty()).then(|| p.clone());
        let server = self.server.clone();
        self.send_confirmable(now, server, p, purpose);
    }

    /// A registration-interface request failed (`code`) or timed out (`None`).
    pub(crate) fn registration_failed(
        &mut self,
        now: u64,
        purpose: Purpose,
        code: Option<MessageClass>,
    ) {
        if self.reg.bootstrap && purpose != Purpose::Bootstrap {
            // A Register or Update of before a Bootstrap-Request Trigger: that server is gone.
            return;
        }
        self.reg.in_flight = None;
        match purpose {
            Purpose::Deregister => self.deregistered(now),
            Purpose::Update if code == Some(MessageClass::Response(ResponseType::NotFound)) => {
                // The server no longer knows this registration: register again at once.
                self.reg.location = None;
                self.reg.objects_changed = false;
                self.reg.schedule(now);
            }
            _ => {
                self.reg.location = None;
                let (retry, registration_failed) = if purpose == Purpose::Register {
                    self.register_retry()
                } else {
                    let retry = self.reg.backoff_ms;
                    self.reg.backoff_ms = (retry * 2).min(self.config.backoff_max_ms);
                    (retry, None)
                };
                self.reg.schedule(now.saturating_add(retry));
                let code = code.map(code_string);
                self.events.push_back(if purpose == Purpose::Bootstrap {
                    Event::BootstrapFailed {
                        code,
                        retry_in_ms: retry,
                    }
                } else {
                    Event::RegistrationFailed {
                        code,
                        retry_in_ms: retry,
                    }
                });
                if let Some(attempts) = registration_failed {
                    self.bootstrap_on_registration_failure(attempts);
                }
            }
        }
    }

    /// The Server object's retry procedure (resources 17-20, LwM2M 1.1 Core §6.2.1.1), the
    /// spec's defaults for what it does not hold.
    fn retry_policy(&mut self) -> RetryPolicy {
        let mut setting = |r: u16, default: u32| match self.read_value(0, &Path::resource(1, 0, r))
        {
            Ok(Value::Unsigned(n)) => u32::try_from(n).unwrap_or(u32::MAX),
            Ok(Value::Integer(n)) => u32::try_from(n).unwrap_or(u32::MAX),
            _ => default,
        };
        let d = RetryPolicy::default();
        RetryPolicy {
            count: setting(17, d.count),
            timer_s: setting(18, d.timer_s),
            sequence_delay_s: setting(19, d.sequence_delay_s),
            sequence_count: setting(20, d.sequence_count),
        }
    }

    /// One more failed Register under the retry procedure: within a sequence of Communication
    /// Retry Count Registers the n-th is retried after Communication Retry Timer·2^(n-1) s;
    /// a failed sequence is followed by the next after the Sequence Delay Timer. Returns that
    /// delay (ms) and, when this failure ended the last of Sequence Retry Count sequences,
    /// the Registers that failed: the registration failed. Timers of 0 count as 1 s, so a
    /// server that refuses at once is not asked in a tight loop; no delay exceeds the
    /// longest a timer resource can say, 2^32 - 1 s.
    fn register_retry(&mut self) -> (u64, Option<u32>) {
        const LONGEST_MS: u64 = u32::MAX as u64 * 1000;
        let p = self.retry_policy();
        self.reg.failed_registers = self.reg.failed_registers.saturating_add(1);
        let failed = self.reg.failed_registers;
        let count = p.count.max(1);
        let in_sequence = (failed - 1) % count + 1;
        if in_sequence < count {
            let base = u64::from(p.timer_s.max(1)) * 1000;
            let delay = base.saturating_mul(1 << (in_sequence - 1).min(32));
            return (delay.min(LONGEST_MS), None);
        }
        let sequences = failed / count;
        let delay = u64::from(p.sequence_delay_s.max(1)) * 1000;
        (
            delay,
            sequences
                .is_multiple_of(p.sequence_count.max(1))
                .then_some(failed),
        )
    }

    /// The host could not reach the current server at all: a DTLS handshake failed (wrong
    /// key, no answer). That counts as a failed Register, or a failed Bootstrap-Request while
    /// bootstrapping (with the same retry delays and events). Returns the delay before the
    /// host tries the handshake again.
    pub fn transport_failed(&mut self, now: u64) -> u64 {
        if self.reg.stopped {
            return self.reg.backoff_ms;
        }
        let purpose = if self.reg.bootstrap {
            Purpose::Bootstrap
        } else {
            Purpose::Register
        };
        // Requests of the lost session die with it rather than time out later and count twice.
        self.outgoing.retain(|o| {
            !matches!(
                o.purpose,
                Purpose::Bootstrap | Purpose::Register | Purpose::Update
            )
        });
        self.reg.next_at = None;
        self.registration_failed(now, purpose, None);
        self.reg.next_at.map_or(0, |at| at.saturating_sub(now))
    }

    /// The host set the link to the server up again with a full handshake where it offered
    /// the last session for resumption (a device waking, or sending after a quiet spell, to a
    /// server that lost the session): a new security context, after which the client registers again (LwM2M 1.1.1
    /// Transport §6.4.3). A resumed session keeps the registration, as Anjay does. The
    /// Register or Update that waited for the link is dropped, unsent, and the Register goes
    /// out at once.
    pub fn new_session(&mut self, now: u64) {
        if self.reg.stopped || self.reg.bootstrap {
            return;
        }
        let mut dropped = Vec::new();
        self.outgoing.retain_mut(|o| {
            let registration = matches!(o.purpose, Purpose::Register | Purpose::Update);
            if registration {
                dropped.push(core::mem::take(&mut o.bytes));
            }
            !registration
        });
        self.transmits.retain(|t| !dropped.contains(&t.data));
        self.reg.in_flight = None;
        self.reg.location = None;
        self.reg.objects_changed = false;
        self.reg.schedule(now);
        self.handle_timeout(now);
    }

    /// LwM2M 1.1 Core §6.2.1.1: once the registration failed (`attempts` Registers in all
    /// the retry procedure's sequences), a client whose Bootstrap on Registration Failure
    /// (/1/0/16) is set bootstraps, so a bootstrap server can repair a server account that
    /// stopped working (a rotated key, a moved server). The retry keeps its schedule until
    /// the host calls [`Engine::bootstrap`]: without a bootstrap account the client goes on
    /// with one sequence per Sequence Delay Timer (the spec leaves open what follows; a
    /// client that fell silent until rebooted would lose a fleet to one long outage).
    fn bootstrap_on_registration_failure(&mut self, attempts: u32) {
        let enabled = !matches!(
            self.read_value(0, &Path::resource(1, 0, 16)),
            Ok(Value::Boolean(false))
        );
        if !enabled {
            return;
        }
        if let Some((server_uri, credentials)) = self.server_account(true) {
            self.events.push_back(Event::BootstrapTriggered {
                server_uri,
                credentials,
                cause: BootstrapCause::RegistrationFailed { attempts },
            });
        }
    }

    pub(crate) fn on_response(&mut self, now: u64, purpose: Purpose, resp: &Packet) {
        if self.reg.bootstrap && purpose != Purpose::Bootstrap {
            // See registration_failed: an answer from before the Bootstrap-Request Trigger.
            return;
        }
        if matches!(purpose, Purpose::Register | Purpose::Update)
            && self.registration_block1(now, &purpose, resp)
        {
            return;
        }
        let code = resp.header.code;
        match (&purpose, code) {
            (Purpose::Register, MessageClass::Response(ResponseType::Created)) => {
                let location: Vec<String> = resp
                    .get_option(CoapOption::LocationPath)
                    .map(|l| {
                        l.iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                if location.is_empty() {
                    return self.registration_failed(now, purpose, Some(code));
                }
                self.reg.in_flight = None;
                self.reg.backoff_ms = self.reg.initial_backoff_ms;
                self.reg.failed_registers = 0;
                let joined = location.join("/");
                self.reg.location = Some(location);
                let next = now + self.update_interval_ms();
                self.reg.schedule(next);
                self.events
                    .push_back(Event::Registered { location: joined });
            }
            (Purpose::Update, MessageClass::Response(ResponseType::Changed)) => {
                self.reg.in_flight = None;
                let next = now + self.update_interval_ms();
                self.reg.schedule(next);
                self.events.push_back(Event::Updated);
            }
            (Purpose::Deregister, MessageClass::Response(ResponseType::Deleted)) => {
                self.deregistered(now);
            }
            (Purpose::Bootstrap, MessageClass::Response(ResponseType::Changed)) => {
                self.bootstrap_accepted(now);
            }
            (Purpose::Bootstrap | Purpose::Register | Purpose::Update | Purpose::Deregister, _) => {
                self.registration_failed(now, purpose, Some(code))
            }
            // Responses to notifications or separate responses carry nothing to act on.
            _ => {}
        }
    }
}
