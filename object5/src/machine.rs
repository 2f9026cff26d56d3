//! The Object 5 state machine (OMA LwM2M Firmware Update, object version 1.1).
//!
//! Sans-IO: every operation a server or the download path can cause is a method that checks the
//! current state, moves State / Update Result exactly as the specification's transition table
//! says (OMA LwM2M core TS 1.1, Appendix E.6.1, Firmware Update state machine), and returns the [`Effect`] the caller
//! must carry out (start a pull, discard the stored package, install). Refusals come back as
//! [`Refusal`], which the client turns into a CoAP code; download errors are reported only through
//! Update Result, as the specification requires.

use crate::status::{State, UpdateResult};

/// Maximum length of a Package URI (/5/0/1 is a String of 0..255 bytes).
pub const MAX_URI_LEN: usize = 255;

/// A download protocol, numbered as in /5/0/8 (Firmware Update Protocol Support).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Protocol {
    /// 0: CoAP (RFC 7252) with block-wise transfer.
    Coap = 0,
    /// 1: CoAPS (CoAP over DTLS).
    Coaps = 1,
    /// 2: HTTP 1.1.
    Http = 2,
    /// 3: HTTPS 1.1.
    Https = 3,
    /// 4: CoAP over TCP.
    CoapTcp = 4,
    /// 5: CoAP over TLS.
    CoapTls = 5,
}

impl Protocol {
    /// Every protocol, in /5/0/8 value order.
    pub const ALL: [Protocol; 6] = [
        Protocol::Coap,
        Protocol::Coaps,
        Protocol::Http,
        Protocol::Https,
        Protocol::CoapTcp,
        Protocol::CoapTls,
    ];

    /// The URI scheme that selects this protocol.
    pub const fn scheme(self) -> &'static str {
        match self {
            Protocol::Coap => "coap",
            Protocol::Coaps => "coaps",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::CoapTcp => "coap+tcp",
            Protocol::CoapTls => "coaps+tcp",
        }
    }

    /// The protocol a scheme names (case-insensitive, RFC 3986 §3.1), if any.
    pub fn from_scheme(scheme: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.scheme().eq_ignore_ascii_case(scheme))
    }
}

/// The set of protocols actually built into the device; /5/0/8 lists exactly these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protocols(u8);

impl Protocols {
    /// No protocol: the device accepts only pushed packages.
    pub const NONE: Protocols = Protocols(0);

    /// This set plus `p`.
    pub const fn with(self, p: Protocol) -> Self {
        Protocols(self.0 | (1 << p as u8))
    }

    /// Whether `p` is built in.
    pub const fn contains(self, p: Protocol) -> bool {
        self.0 & (1 << p as u8) != 0
    }

    /// The built-in protocols in /5/0/8 order.
    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

/// Why a Package URI cannot start a download; each maps to its Update Result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriError {
    /// Not a URI this device can parse (Update Result 7).
    Malformed,
    /// A well-formed URI whose scheme is not built in (Update Result 9).
    UnsupportedScheme,
}

impl UriError {
    /// The Update Result this error is reported as.
    pub const fn update_result(self) -> UpdateResult {
        match self {
            UriError::Malformed => UpdateResult::InvalidUri,
            UriError::UnsupportedScheme => UpdateResult::UnsupportedProtocol,
        }
    }
}

/// Checks a Package URI and returns the protocol it selects.
///
/// Accepts `scheme://authority[/path][?query]` with a non-empty host, printable ASCII only and at
/// most [`MAX_URI_LEN`] bytes; the download path parses the details with its own URI parser.
pub fn check_uri(uri: &str, built_in: Protocols) -> Result<Protocol, UriError> {
    if uri.len() > MAX_URI_LEN || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UriError::Malformed);
    }
    let (scheme, rest) = uri.split_once("://").ok_or(UriError::Malformed)?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(UriError::Malformed);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, _)| h).unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err(UriError::Malformed);
    }
    match Protocol::from_scheme(scheme) {
        Some(p) if built_in.contains(p) => Ok(p),
        _ => Err(UriError::UnsupportedScheme),
    }
}

/// An operation the state machine refuses; the client answers it with the CoAP code named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 4.05 Method Not Allowed: e.g. Execute Update outside Downloaded, anything while Updating.
    MethodNotAllowed,
    /// 4.00 Bad Request: e.g. a second Package URI while a download is under way.
    BadRequest,
}

/// What the caller must do after an accepted operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond storing the new State / Update Result.
    None,
    /// Start pulling the package from the URI just written, with this protocol.
    StartPull(Protocol),
    /// Open the candidate slot for a pushed package (first Block1 block).
    StartPush,
    /// Stop any transfer and erase the stored package (reset or cancel).
    DiscardPackage,
    /// Install the stored package now: mark it pending and reboot.
    Install,
    /// The user deferred the update: install automatically at this time (seconds).
    InstallAt(u64),
}

/// Persistent configuration and status of Object 5 besides the package itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    state: State,
    result: UpdateResult,
    last_state_change: u64,
    /// /5/0/11 Severity: 0 critical, 1 mandatory (default), 2 optional.
    pub severity: u8,
    /// /5/0/13 Maximum Defer Period in seconds; 0 forbids deferral.
    pub max_defer_period: u32,
    /// /5/0/14 Automatic Upgrade at Download.
    pub auto_upgrade: bool,
    /// Simulated user choice: defer the next Execute Update (result 11) when allowed.
    pub defer_next_update: bool,
    /// Protocols built in, for /5/0/8 and for URI checks.
    pub protocols: Protocols,
}

impl Machine {
    /// A fresh machine: Idle, result 0, severity mandatory, no deferral.
    pub const fn new(protocols: Protocols) -> Self {
        Machine {
            state: State::Idle,
            result: UpdateResult::Initial,
            last_state_change: 0,
            severity: 1,
            max_defer_period: 0,
            auto_upgrade: false,
            defer_next_update: false,
            protocols,
        }
    }

    /// Restores State / Update Result after a reboot.
    ///
    /// The specification says that after a reboot State is Downloaded if a valid package that is
    /// not installed is present, else Idle, and that Update Result keeps its value. A download
    /// that was under way continues (as Anjay's persisted resume does) when the caller can go
    /// on with it (`can_continue`: a pull, resumed or started again); an interrupted transfer
    /// that cannot (a push) ends as "connection lost" (4).
    /// `Updating` is not restored here: the boot outcome decides it through
    /// [`Machine::install_finished`].
    pub fn restore(
        stored_state: Option<State>,
        stored_result: Option<UpdateResult>,
        package_valid: bool,
        can_continue: bool,
        protocols: Protocols,
    ) -> Self {
        let mut m = Machine::new(protocols);
        // An unknown stored result is reported as 0 rather than invented.
        m.result = stored_result.unwrap_or(UpdateResult::Initial);
        m.state = match stored_state {
            Some(State::Downloading) if can_continue => State::Downloading,
            Some(State::Downloading) => {
                m.result = UpdateResult::ConnectionLost;
                State::Idle
            }
            Some(State::Updating) => State::Updating,
            _ if package_valid => State::Downloaded,
            _ => State::Idle,
        };
        m
    }

    /// /5/0/3 State.
    pub const fn state(&self) -> State {
        self.state
    }

    /// /5/0/5 Update Result.
    pub const fn result(&self) -> UpdateResult {
        self.result
    }

    /// /5/0/12 Last State Change Time (seconds since the epoch).
    pub const fn last_state_change(&self) -> u64 {
        self.last_state_change
    }

    fn set_state(&mut self, state: State, now: u64) {
        if state != self.state {
            self.last_state_change = now;
            self.state = state;
        }
    }

    fn reset(&mut self, now: u64) -> Result<Effect, Refusal> {
        if self.state == State::Updating {
            return Err(Refusal::MethodNotAllowed);
        }
        self.set_state(State::Idle, now);
        self.result = UpdateResult::Initial;
        Ok(Effect::DiscardPackage)
    }

    /// Write to /5/0/1 Package URI. `""` resets; a bad URI is accepted (2.04) and reported as
    /// Update Result 7 or 9 after passing through Downloading, as the specification requires.
    pub fn write_package_uri(&mut self, uri: &str, now: u64) -> Result<Effect, Refusal> {
        if uri.is_empty() {
            return self.reset(now);
        }
        match self.state {
            State::Idle => {}
            State::Updating => return Err(Refusal::MethodNotAllowed),
            State::Downloading | State::Downloaded => return Err(Refusal::BadRequest),
        }
        self.result = UpdateResult::Initial;
        self.set_state(State::Downloading, now);
        match check_uri(uri, self.protocols) {
            Ok(p) => Ok(Effect::StartPull(p)),
            Err(e) => {
                self.download_failed(e.update_result(), now);
                Ok(Effect::None)
            }
        }
    }

    /// The first block of a Package write (/5/0/0). A single `\0` byte as the whole package
    /// resets. A new block 0 while a push is under way restarts it (RFC 7959 §2.5).
    pub fn package_write_started(
        &mut self,
        whole_payload_is_nul: bool,
        now: u64,
    ) -> Result<Effect, Refusal> {
        if whole_payload_is_nul {
            return self.reset(now);
        }
        match self.state {
            State::Idle | State::Downloading => {}
            State::Updating => return Err(Refusal::MethodNotAllowed),
            State::Downloaded => return Err(Refusal::BadRequest),
        }
        self.result = UpdateResult::Initial;
        self.set_state(State::Downloading, now);
        Ok(Effect::StartPush)
    }

    /// The whole package arrived and verified: Downloaded, or straight to installing when
    /// Automatic Upgrade at Download (/5/0/14) is set.
    pub fn download_finished(&mut self, now: u64) -> Effect {
        if self.state != State::Downloading {
            return Effect::None;
        }
        self.set_state(State::Downloaded, now);
        if self.auto_upgrade {
            self.set_state(State::Updating, now);
            return Effect::Install;
        }
        Effect::None
    }

    /// A download ended in error: Idle with that result (2, 3, 4, 5, 6, 7 or 9).
    pub fn download_failed(&mut self, result: UpdateResult, now: u64) {
        if self.state == State::Downloading {
            self.result = result;
            self.set_state(State::Idle, now);
        }
    }

    /// Execute /5/0/2 Update: only in Downloaded (4.05 otherwise, State and result unchanged).
    pub fn execute_update(&mut self, now: u64) -> Result<Effect, Refusal> {
        if self.state != State::Downloaded {
            return Err(Refusal::MethodNotAllowed);
        }
        // Critical updates (severity 0) cannot be deferred.
        if self.defer_next_update && self.max_defer_period > 0 && self.severity != 0 {
            self.defer_next_update = false;
            self.result = UpdateResult::Deferred;
            return Ok(Effect::InstallAt(now + u64::from(self.max_defer_period)));
        }
        self.result = UpdateResult::Initial;
        self.set_state(State::Updating, now);
        Ok(Effect::Install)
    }

    /// The deferral period ended: install without asking again.
    pub fn defer_expired(&mut self, now: u64) -> Effect {
        if self.state == State::Downloaded && self.result == UpdateResult::Deferred {
            self.result = UpdateResult::Initial;
            self.set_state(State::Updating, now);
            return Effect::Install;
        }
        Effect::None
    }

    /// Execute /5/0/10 Cancel: Idle with result 10 from Downloading or Downloaded; 4.05 while
    /// Updating and when there is nothing to cancel.
    pub fn cancel(&mut self, now: u64) -> Result<Effect, Refusal> {
        match self.state {
            State::Downloading | State::Downloaded => {
                self.result = UpdateResult::Cancelled;
                self.set_state(State::Idle, now);
                Ok(Effect::DiscardPackage)
            }
            State::Idle | State::Updating => Err(Refusal::MethodNotAllowed),
        }
    }

    /// The outcome of an install, known after the reboot: Idle/1 on success; on failure the
    /// package stays stored and State returns to Downloaded with result 8 (ETS 1.0-int-779),
    /// or to Idle with result 5 when the package itself failed its integrity re-check.
    pub fn install_finished(&mut self, outcome: InstallOutcome, now: u64) {
        if self.state != State::Updating {
            return;
        }
        let (state, result) = match outcome {
            InstallOutcome::Success => (State::Idle, UpdateResult::Success),
            InstallOutcome::Reverted => (State::Downloaded, UpdateResult::UpdateFailed),
            InstallOutcome::IntegrityFailure => (State::Idle, UpdateResult::IntegrityFailure),
        };
        self.result = result;
        self.set_state(state, now);
    }
}

/// How an install ended, as the boot path observed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The new image booted, registered and confirmed itself.
    Success,
    /// The new image did not confirm (self-test failed or reset before confirmation) and the
    /// old one runs again.
    Reverted,
    /// The bootloader refused the stored package.
    IntegrityFailure,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Protocols = Protocols::NONE
        .with(Protocol::Coap)
        .with(Protocol::Coaps)
        .with(Protocol::Http);

    fn downloaded() -> Machine {
        let mut m = Machine::new(ALL);
        assert_eq!(
            m.write_package_uri("coap://127.0.0.1:5683/fw", 1),
            Ok(Effect::StartPull(Protocol::Coap))
        );
        assert_eq!(m.download_finished(2), Effect::None);
        assert_eq!(
            (m.state(), m.result()),
            (State::Downloaded, UpdateResult::Initial)
        );
        m
    }

    #[test]
    fn uri_checks_map_to_results_7_and_9() {
        assert_eq!(check_uri("coap://h/fw", ALL), Ok(Protocol::Coap));
        assert_eq!(check_uri("HTTP://[::1]:80/a?b", ALL), Ok(Protocol::Http));
        assert_eq!(check_uri("coaps://u@h:1", ALL), Ok(Protocol::Coaps));
        assert_eq!(
            check_uri("https://h/fw", ALL),
            Err(UriError::UnsupportedScheme)
        );
        assert_eq!(
            check_uri("ftp://h/fw", ALL),
            Err(UriError::UnsupportedScheme)
        );
        for bad in [
            "fw.bin",
            "coap:/h",
            "coap:///fw",
            "coap://[::1/x",
            "1a://h",
            "coap://h/ x",
        ] {
            assert_eq!(check_uri(bad, ALL), Err(UriError::Malformed), "{bad}");
        }
        let long = [b'a'; 300];
        let long = core::str::from_utf8(&long).unwrap();
        assert_eq!(check_uri(long, ALL), Err(UriError::Malformed));
    }

    #[test]
    fn bad_uri_is_accepted_then_reported_through_update_result() {
        let mut m = Machine::new(ALL);
        assert_eq!(m.write_package_uri("not a uri", 5), Ok(Effect::None));
        assert_eq!(
            (m.state(), m.result()),
            (State::Idle, UpdateResult::InvalidUri)
        );
        assert_eq!(m.write_package_uri("https://h/fw", 6), Ok(Effect::None));
        assert_eq!(m.result(), UpdateResult::UnsupportedProtocol);
        // A new download resets the result to 0.
        assert!(m.write_package_uri("coap://h/fw", 7).is_ok());
        assert_eq!(
            (m.state(), m.result()),
            (State::Downloading, UpdateResult::Initial)
        );
    }

    #[test]
    fn execute_outside_downloaded_is_405_and_changes_nothing() {
        let mut m = Machine::new(ALL);
        m.download_failed(UpdateResult::ConnectionLost, 1); // ignored: not downloading
        let before = m;
        assert_eq!(m.execute_update(3), Err(Refusal::MethodNotAllowed));
        assert_eq!(m, before);
        m.write_package_uri("coap://h/fw", 4).unwrap();
        let before = m;
        assert_eq!(m.execute_update(5), Err(Refusal::MethodNotAllowed));
        assert_eq!(m, before);
    }

    #[test]
    fn reset_works_in_every_state_but_updating() {
        let mut m = downloaded();
        assert_eq!(m.write_package_uri("", 9), Ok(Effect::DiscardPackage));
        assert_eq!(
            (m.state(), m.result()),
            (State::Idle, UpdateResult::Initial)
        );
        assert_eq!(m.last_state_change(), 9);
        let mut m = downloaded();
        assert_eq!(m.execute_update(3), Ok(Effect::Install));
        assert_eq!(m.state(), State::Updating);
        assert_eq!(m.write_package_uri("", 4), Err(Refusal::MethodNotAllowed));
        assert_eq!(
            m.package_write_started(true, 4),
            Err(Refusal::MethodNotAllowed)
        );
        assert_eq!(m.cancel(4), Err(Refusal::MethodNotAllowed));
        assert_eq!(m.state(), State::Updating);
    }

    #[test]
    fn cancel_gives_idle_with_result_10() {
        let mut m = downloaded();
        assert_eq!(m.cancel(5), Ok(Effect::DiscardPackage));
        assert_eq!(
            (m.state(), m.result()),
            (State::Idle, UpdateResult::Cancelled)
        );
        assert_eq!(m.cancel(6), Err(Refusal::MethodNotAllowed));
    }

    #[test]
    fn push_restarts_on_block_zero_and_is_refused_in_downloaded() {
        let mut m = Machine::new(ALL);
        assert_eq!(m.package_write_started(false, 1), Ok(Effect::StartPush));
        assert_eq!(m.package_write_started(false, 2), Ok(Effect::StartPush));
        m.download_finished(3);
        assert_eq!(m.package_write_started(false, 4), Err(Refusal::BadRequest));
        assert_eq!(m.package_write_started(true, 5), Ok(Effect::DiscardPackage));
        assert_eq!(m.state(), State::Idle);
    }

    #[test]
    fn install_outcomes_follow_the_object_text() {
        for (outcome, state, result) in [
            (InstallOutcome::Success, State::Idle, UpdateResult::Success),
            (
                InstallOutcome::Reverted,
                State::Downloaded,
                UpdateResult::UpdateFailed,
            ),
            (
                InstallOutcome::IntegrityFailure,
                State::Idle,
                UpdateResult::IntegrityFailure,
            ),
        ] {
            let mut m = downloaded();
            m.execute_update(10).unwrap();
            m.install_finished(outcome, 11);
            assert_eq!((m.state(), m.result()), (state, result));
        }
    }

    #[test]
    fn deferral_keeps_downloaded_with_result_11_unless_critical() {
        let mut m = downloaded();
        m.max_defer_period = 60;
        m.defer_next_update = true;
        assert_eq!(m.execute_update(100), Ok(Effect::InstallAt(160)));
        assert_eq!(
            (m.state(), m.result()),
            (State::Downloaded, UpdateResult::Deferred)
        );
        assert_eq!(m.defer_expired(160), Effect::Install);
        assert_eq!(
            (m.state(), m.result()),
            (State::Updating, UpdateResult::Initial)
        );

        let mut m = downloaded();
        m.max_defer_period = 60;
        m.defer_next_update = true;
        m.severity = 0;
        assert_eq!(m.execute_update(100), Ok(Effect::Install));
    }

    #[test]
    fn automatic_upgrade_installs_when_the_download_finishes() {
        let mut m = Machine::new(ALL);
        m.auto_upgrade = true;
        m.write_package_uri("coap://h/fw", 1).unwrap();
        assert_eq!(m.download_finished(2), Effect::Install);
        assert_eq!(m.state(), State::Updating);
    }

    #[test]
    fn reboot_restores_per_spec() {
        let r = Some(UpdateResult::IntegrityFailure);
        let m = Machine::restore(Some(State::Idle), r, true, false, ALL);
        assert_eq!(
            (m.state(), m.result()),
            (State::Downloaded, UpdateResult::IntegrityFailure)
        );
        let m = Machine::restore(Some(State::Downloaded), r, false, false, ALL);
        assert_eq!(m.state(), State::Idle);
        let m = Machine::restore(Some(State::Downloading), None, false, true, ALL);
        assert_eq!(
            (m.state(), m.result()),
            (State::Downloading, UpdateResult::Initial)
        );
        let m = Machine::restore(Some(State::Downloading), None, false, false, ALL);
        assert_eq!(
            (m.state(), m.result()),
            (State::Idle, UpdateResult::ConnectionLost)
        );
        let m = Machine::restore(None, None, false, false, ALL);
        assert_eq!(
            (m.state(), m.result()),
            (State::Idle, UpdateResult::Initial)
        );
    }

    #[test]
    fn protocol_list_is_what_is_built_in() {
        let listed: [Option<Protocol>; 4] = {
            let mut it = ALL.iter();
            [it.next(), it.next(), it.next(), it.next()]
        };
        assert_eq!(
            listed,
            [
                Some(Protocol::Coap),
                Some(Protocol::Coaps),
                Some(Protocol::Http),
                None
            ]
        );
    }
}
