//! Client-initiated Bootstrap (OMA TS Core 1.1 section 6.1.3): Bootstrap-Request (POST /bs),
//! then the bootstrap server's Bootstrap-Delete, Bootstrap-Write and Bootstrap-Discover, until
//! Bootstrap-Finish (POST /bs). Writes here may create instances and set resources that are
//! read-only to management servers (Security, Server SSID).

use super::dm::Answer;
use super::{Engine, Event, Purpose};
use crate::coap;
use crate::codec::block::BlockOpt;
use crate::codec::{link, ContentFormat, Link, Node, Path, Resource, ResourceValue, Value};
use crate::object::OpError;
use crate::objects::security::{CertificateUsage, Credentials, MatchingType, SecurityMode};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

/// Instances to write: each id with its resources.
pub(crate) type Instances = Vec<(u16, Vec<Resource>)>;

fn reply(code: ResponseType) -> Packet {
    coap::packet(
        MessageType::Acknowledgement,
        MessageClass::Response(code),
        0,
        &[],
    )
}

impl<P: Clone + PartialEq> Engine<P> {
    /// Starts client-initiated bootstrap with the engine's server (the one given at
    /// construction, or [`Engine::set_server`]'s: the bootstrap server). [`Event::Bootstrapped`]
    /// carries the management server's URI at the end; then call [`Engine::set_server`] and
    /// [`Engine::start`].
    ///
    /// The Bootstrap-Request goes out after the bootstrap account's Client Hold Off Time
    /// (/0/x/11, which LwM2M 1.1 Core E.1 has a client doing client-initiated bootstrap honour).
    pub fn bootstrap(&mut self, now: u64) {
        // From scratch: a registered client that bootstraps again (the Bootstrap-Request
        // Trigger) leaves its registration behind.
        self.reg = super::registration::Registration::new(self.config.backoff_initial_ms);
        self.reg.bootstrap = true;
        self.reg.bootstrap_deadline = None;
        let hold_off_ms = self.bootstrap_account_seconds(11).saturating_mul(1000);
        self.reg.schedule(now.saturating_add(hold_off_ms));
        self.registration_timer(now);
    }

    /// Resource `rid` of the bootstrap account, in seconds (11 Client Hold Off Time, 12
    /// Bootstrap-Server Account Timeout); 0 without one.
    fn bootstrap_account_seconds(&mut self, rid: u16) -> u64 {
        self.bootstrap_account_id()
            .and_then(|i| match self.object_read(0, i, rid) {
                Ok(ResourceValue::Single(Value::Integer(s))) => u64::try_from(s).ok(),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The Security instance holding the bootstrap server's account.
    fn bootstrap_account_id(&mut self) -> Option<u16> {
        let instances = self.object(0).ok()?.instances();
        instances
            .into_iter()
            .find(|&i| self.is_bootstrap_account(0, i))
    }

    /// LwM2M 1.1 Core E.1 resource 12: the client purges the bootstrap account this many
    /// seconds after it got its configuration (0: never), after which no Bootstrap-Request
    /// Trigger or registration failure sends it back to that server. Armed when a bootstrap
    /// ends or a kept configuration is restored.
    pub(crate) fn arm_bootstrap_account_timeout(&mut self, now: u64) {
        let timeout_s = self.bootstrap_account_seconds(12);
        self.reg.bootstrap_account_expiry =
            (timeout_s > 0).then(|| now.saturating_add(timeout_s.saturating_mul(1000)));
    }

    /// Purges the bootstrap account once its timeout passed ([`Event::BootstrapAccountPurged`]).
    pub(crate) fn bootstrap_account_timer(&mut self, now: u64) {
        match self.reg.bootstrap_account_expiry {
            Some(t) if t <= now && !self.reg.bootstrap => {}
            _ => return,
        }
        self.reg.bootstrap_account_expiry = None;
        if let Some(i) = self.bootstrap_account_id() {
            if let Ok(security) = self.object(0) {
                if security.delete(i).is_ok() {
                    self.events.push_back(Event::BootstrapAccountPurged);
                }
            }
        }
    }

    /// Points the engine at another server (e.g. the management server after bootstrap).
    pub fn set_server(&mut self, server: P) {
        self.server = server;
    }

    pub(crate) fn bootstrap_timer(&mut self, now: u64) {
        if let Some(t) = self.reg.bootstrap_deadline {
            if t <= now {
                // Bootstrap-Finish never came: ask again after the back-off.
                self.reg.bootstrap_deadline = None;
                self.registration_failed(now, Purpose::Bootstrap, None);
            }
            return;
        }
        match self.reg.next_at {
            Some(t) if t <= now => {}
            _ => return,
        }
        self.reg.next_at = None;
        let mut p = self.new_request(RequestType::Post);
        p.add_option(CoapOption::UriPath, b"bs".to_vec());
        p.add_option(
            CoapOption::UriQuery,
            format!("ep={}", self.config.endpoint).into_bytes(),
        );
        self.reg.in_flight = Some(Purpose::Bootstrap);
        let server = self.server.clone();
        self.send_confirmable(now, server, p, Purpose::Bootstrap);
    }

    /// The Bootstrap-Request was accepted: wait (bounded) for the server's operations.
    pub(crate) fn bootstrap_accepted(&mut self, now: u64) {
        self.reg.in_flight = None;
        self.reg.bootstrap_deadline = Some(now + self.config.tx.exchange_lifetime_ms);
    }

    /// Answers a request from the bootstrap server.
    pub(crate) fn bootstrap_answer(
        &mut self,
        now: u64,
        req: &Packet,
        segs: &[&str],
        cf: Option<ContentFormat>,
        accept: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        let MessageClass::Request(method) = req.header.code else {
            return Err(OpError::BadRequest);
        };
        if segs == ["bs"] && method == RequestType::Post {
            return Ok(self.bootstrap_finish(now));
        }
        let path = Path::from_segments(segs.iter().copied()).map_err(|_| OpError::NotFound)?;
        // Every operation in this phase restarts the wait for Bootstrap-Finish.
        self.reg.bootstrap_deadline = Some(now + self.config.tx.exchange_lifetime_ms);
        match method {
            RequestType::Delete if path.depth() <= 2 => {
                self.bootstrap_delete(&path);
                Ok(Answer::Now(reply(ResponseType::Deleted)))
            }
            RequestType::Put if path.depth() >= 1 => {
                if let Some(b) = req.get_first_option(CoapOption::Block1) {
                    let b = BlockOpt::decode(b).map_err(|_| OpError::BadRequest)?;
                    return self.bootstrap_block(now, req, b, path, cf);
                }
                self.reg.bootstrap_body = None;
                self.bootstrap_write(now, &req.payload, &path, cf)?;
                Ok(Answer::Now(reply(ResponseType::Changed)))
            }
            RequestType::Get if accept == Some(ContentFormat::LinkFormat) && path.depth() <= 1 => {
                let mut p = reply(ResponseType::Content);
                coap::set_uint(&mut p, CoapOption::ContentFormat, 40);
                p.payload = self.bootstrap_discover(&path).into_bytes();
                Ok(Answer::Now(p))
            }
            RequestType::Get if accept != Some(ContentFormat::LinkFormat) => {
                self.bootstrap_read(now, req, &path, accept)
            }
            _ => Err(OpError::MethodNotAllowed),
        }
    }

    /// Bootstrap-Read (LwM2M 1.1 Core §6.1.7.1; OMA test case int-8): a bootstrap server
    /// reads the Server object, or one instance, to see what a device already holds before
    /// it writes. Only Server and Access Control (which this device lacks: 4.04) may be
    /// read so; the Security object's keys never leave the device (4.00, as Leshan's client
    /// answers).
    fn bootstrap_read(
        &mut self,
        now: u64,
        req: &Packet,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        if !matches!(path.object_id(), Some(1 | 2)) || path.depth() > 2 {
            return Err(OpError::BadRequest);
        }
        let node = self.read_node(now, path)?;
        let (p, _) = self.content(&node, path, accept)?;
        self.block2(req, p).map(Answer::Now)
    }

    fn is_bootstrap_account(&mut self, oid: u16, iid: u16) -> bool {
        oid == 0
            && matches!(
                self.object_read(oid, iid, 1),
                Ok(ResourceValue::Single(Value::Boolean(true)))
            )
    }

    fn object_read(&mut self, oid: u16, iid: u16, rid: u16) -> Result<ResourceValue, OpError> {
        let obj = self
            .objects
            .iter_mut()
            .find(|o| o.id() == oid)
            .ok_or(OpError::NotFound)?;
        obj.read(0, iid, rid)
    }

    /// Deletes instances under `path`, except the bootstrap server's own account; objects
    /// that cannot lose instances (Device, Firmware Update) keep them.
    fn bootstrap_delete(&mut self, path: &Path) {
        let ids: Vec<u16> = self.objects.iter().map(|o| o.id()).collect();
        for oid in ids
            .into_iter()
            .filter(|o| path.object_id().is_none_or(|p| p == *o))
        {
            let instances = self
                .objects
                .iter()
                .find(|o| o.id() == oid)
                .map(|o| o.instances())
                .unwrap_or_default();
            for iid in instances
                .into_iter()
                .filter(|i| path.instance_id().is_none_or(|p| p == *i))
            {
                if self.is_bootstrap_account(oid, iid) {
                    continue;
                }
                if let Some(obj) = self.objects.iter_mut().find(|o| o.id() == oid) {
                    let _ = obj.delete(iid);
                }
            }
        }
    }

    /// One block of a block-wise Bootstrap-Write (RFC 7959 §2.5; Leshan sends a Security
    /// instance with certificates so): the body is gathered, up to
    /// [`Config::bootstrap_body_limit`](super::Config::bootstrap_body_limit), and written
    /// whole once the last block is in. A block that does not continue the body is 4.08.
    fn bootstrap_block(
        &mut self,
        now: u64,
        req: &Packet,
        b: BlockOpt,
        path: Path,
        cf: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        let mut body = match self.reg.bootstrap_body.take() {
            _ if b.num == 0 => Vec::new(),
            Some((p, f, body)) if p == path && f == cf && body.len() as u64 == b.offset() => body,
            _ => return Err(OpError::Incomplete),
        };
        if b.more && req.payload.len() != b.size() {
            return Err(OpError::BadRequest);
        }
        let limit = self.config.bootstrap_body_limit;
        if body.len() + req.payload.len() > limit {
            return Err(OpError::TooLarge {
                size1: u32::try_from(limit).ok(),
            });
        }
        body.extend_from_slice(&req.payload);
        let mut ok = if b.more {
            self.reg.bootstrap_body = Some((path, cf, body));
            reply(ResponseType::Continue)
        } else {
            self.bootstrap_write(now, &body, &path, cf)?;
            reply(ResponseType::Changed)
        };
        ok.add_option(CoapOption::Block1, b.encode());
        Ok(Answer::Now(ok))
    }

    fn bootstrap_write(
        &mut self,
        now: u64,
        payload: &[u8],
        path: &Path,
        cf: Option<ContentFormat>,
    ) -> Result<(), OpError> {
        let oid = path.object_id().ok_or(OpError::BadRequest)?;
        let instances = self.checked_instances(payload, path, cf)?;
        self.write_instances(now, oid, instances)
    }

    /// The instances a Bootstrap-Write body for `path` carries, each resource checked to be
    /// one the object defines, in its shape, before any is written: a refused write leaves
    /// the configuration as it was.
    pub(crate) fn checked_instances(
        &mut self,
        payload: &[u8],
        path: &Path,
        cf: Option<ContentFormat>,
    ) -> Result<Instances, OpError> {
        let oid = path.object_id().ok_or(OpError::BadRequest)?;
        let node = self.decode_payload(path, cf, payload)?;
        let instances: Instances = match node {
            Node::Object { instances, .. } => {
                instances.into_iter().map(|i| (i.id, i.resources)).collect()
            }
            Node::Instance(i) => alloc::vec![(path.instance_id().unwrap_or(i.id), i.resources)],
            Node::Resource(r) => alloc::vec![(path.instance_id().unwrap_or(0), alloc::vec![r])],
            Node::ResourceInstance { .. } => return Err(OpError::MethodNotAllowed),
        };
        let obj = self.object(oid)?;
        let fits = |r: &Resource| obj.def(r.id).is_some_and(|d| super::dm::shape_fits(&d, r));
        if !instances.iter().all(|(_, rs)| rs.iter().all(fits)) {
            return Err(OpError::BadRequest);
        }
        Ok(instances)
    }

    /// Writes [`Engine::checked_instances`]' result into object `oid`: existing instances
    /// resource by resource, the others created.
    pub(crate) fn write_instances(
        &mut self,
        now: u64,
        oid: u16,
        instances: Instances,
    ) -> Result<(), OpError> {
        let obj = self.object(oid)?;
        for (iid, resources) in instances {
            if obj.instances().contains(&iid) {
                for r in &resources {
                    obj.write(now, iid, r)?;
                }
            } else {
                obj.create(Some(iid), &resources)?;
            }
        }
        Ok(())
    }

    fn bootstrap_discover(&mut self, path: &Path) -> String {
        let mut links = alloc::vec![Link::new("/").attr("lwm2m", self.config.lwm2m_version)];
        for o in self
            .objects
            .iter()
            .filter(|o| path.object_id().is_none_or(|p| p == o.id()))
        {
            let instances = o.instances();
            if instances.is_empty() {
                links.push(Link::new(format!("/{}", o.id())));
            }
            for i in instances {
                links.push(Link::new(format!("/{}/{i}", o.id())));
            }
        }
        link::encode(&links)
    }

    /// The URI and credentials of the first Security account that is (`bootstrap`) or is not
    /// the bootstrap server's.
    pub(crate) fn server_account(&mut self, bootstrap: bool) -> Option<(String, Credentials)> {
        let o = self.objects.iter_mut().find(|o| o.id() == 0)?;
        o.instances().into_iter().find_map(|i| {
            let mut single = |r: u16| match o.read(0, i, r) {
                Ok(ResourceValue::Single(v)) => Some(v),
                _ => None,
            };
            let (Some(Value::Boolean(b)), Some(Value::String(uri))) = (single(1), single(0)) else {
                return None;
            };
            if b != bootstrap {
                return None;
            }
            let mode = match single(2) {
                Some(Value::Integer(m)) => SecurityMode::from_code(m)?,
                _ => return None,
            };
            let mut opaque = |r: u16| match single(r) {
                Some(Value::Opaque(o)) => o,
                _ => Vec::new(),
            };
            let mut credentials = Credentials::new(mode, opaque(3), opaque(4), opaque(5));
            if let Some(Value::Integer(m)) = single(13) {
                credentials.matching_type = MatchingType::from_code(m)?;
            }
            if let Some(Value::String(sni)) = single(14) {
                credentials.sni = sni;
            }
            if let Some(Value::Integer(u)) = single(15) {
                credentials.usage = CertificateUsage::from_code(u)?;
            }
            if let Ok(ResourceValue::Multiple(suites)) = o.read(0, i, 16) {
                credentials.cipher_suites = suites
                    .iter()
                    .map(|(_, v)| match v {
                        Value::Unsigned(s) => u16::try_from(*s).ok(),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
            }
            Some((uri, credentials))
        })
    }

    fn bootstrap_finish(&mut self, now: u64) -> Answer {
        let account = self.server_account(false);
        let Some((server_uri, credentials)) = account else {
            // Finish without a management server account: 4.06 per the spec's
            // "Bootstrap-Finish ... Not Acceptable" for an inconsistent configuration.
            return Answer::Now(reply(ResponseType::NotAcceptable));
        };
        // So is an account whose credentials cannot reach its server.
        if let Err(reason) = self
            .config
            .credentials_check
            .check(&server_uri, &credentials)
        {
            self.events.push_back(Event::BootstrapRefused { reason });
            return Answer::Now(reply(ResponseType::NotAcceptable));
        }
        self.reg.bootstrap = false;
        self.reg.bootstrap_deadline = None;
        // A block-wise write the bootstrap server abandoned is not kept past the bootstrap.
        self.reg.bootstrap_body = None;
        self.reg.next_at = None;
        self.arm_bootstrap_account_timeout(now);
        self.events.push_back(Event::Bootstrapped {
            server_uri,
            credentials,
        });
        Answer::Now(reply(ResponseType::Changed))
    }
}
