//! Device management requests from the server: Read, Discover, Write, Write-Attributes,
//! Execute, Create, Delete and Observe, with content negotiation and block-wise transfer.

use super::{Block1Rx, Engine, Event, Pending};
use crate::coap::{self, Seen};
use crate::codec::block::decode_uint_option;
use crate::codec::opaque_stream::Deframer;
use crate::codec::qblock::q_block1;
use crate::codec::{
    cbor, link, lwm2m_cbor, lwm2m_json, senml, text, tlv, BlockOpt, CodecError, ContentFormat,
    Instance, Link, Node, Path, Resource, ResourceType, ResourceValue, Value,
};
use crate::object::{BlockChunk, Completion, OpError, ResourceDef};
use crate::observe::{fingerprint, Observation};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

/// The outcome of a request before it becomes a CoAP response.
pub(crate) enum Answer {
    /// Respond now: code, content format, payload, extra options.
    Now(Packet),
    /// An object deferred the work: empty ACK now, separate response later.
    Later { success: Packet, path: Path },
    /// No response to a NON request (a Q-Block1 block inside its set, RFC 9177 §4.3); a CON
    /// one gets an empty ACK.
    Silent,
}

impl Answer {
    /// The answer to a change an object may have deferred: `success` goes out now, or as the
    /// separate response once the object completes (one rule for write, execute and Block1).
    pub(crate) fn changed(deferred: bool, success: Packet, path: &Path) -> Self {
        if deferred {
            Answer::Later {
                success,
                path: *path,
            }
        } else {
            Answer::Now(success)
        }
    }
}

/// Object, instance and resource id of a request path, 0 where the path stops earlier (the
/// callers have checked the depth they need).
fn ids(path: &Path) -> (u16, u16, u16) {
    (
        path.object_id().unwrap_or(0),
        path.instance_id().unwrap_or(0),
        path.resource_id().unwrap_or(0),
    )
}

/// Whether `r` has the shape its definition gives: multiple-instance resources carry
/// instances (or one value, where the definition also takes that), single ones one value.
pub(crate) fn shape_fits(def: &ResourceDef, r: &Resource) -> bool {
    let multiple = matches!(r.value, ResourceValue::Multiple(_));
    def.multiple == multiple || (def.single_too && !multiple)
}

pub(crate) fn reply(code: ResponseType) -> Packet {
    coap::packet(
        MessageType::Acknowledgement,
        MessageClass::Response(code),
        0,
        &[],
    )
}

fn error(e: OpError) -> Packet {
    let mut p = reply(coap::error_code(e));
    if let OpError::TooLarge { size1: Some(s) } = e {
        coap::set_uint(&mut p, CoapOption::Size1, s);
    }
    p
}

fn codec_error(_: CodecError) -> OpError {
    OpError::BadRequest
}

pub(crate) fn first_uint(p: &Packet, opt: CoapOption) -> Result<Option<u32>, OpError> {
    p.get_first_option(opt)
        .map(|v| decode_uint_option(v).map_err(|_| OpError::BadRequest))
        .transpose()
}

impl<P: Clone + PartialEq> Engine<P> {
    pub(crate) fn on_request(&mut self, now: u64, peer: P, t: MessageType, req: Packet) {
        let mid = req.header.message_id;
        match self.dedup.lookup(&peer, mid) {
            Seen::Answered(bytes) => {
                let data = bytes.to_vec();
                self.transmits.push_back(super::Transmit { peer, data });
                return;
            }
            Seen::Pending => {
                self.send(peer, &coap::empty(MessageType::Acknowledgement, mid));
                return;
            }
            Seen::New => {}
        }
        let expires = now + self.config.tx.exchange_lifetime_ms;
        let token = req.get_token().to_vec();
        match self.answer(now, &peer, &req) {
            Answer::Now(mut resp) => {
                if t == MessageType::Confirmable {
                    resp.header.set_type(MessageType::Acknowledgement);
                    resp.header.message_id = mid;
                } else {
                    resp.header.set_type(MessageType::NonConfirmable);
                    resp.header.message_id = self.mid();
                }
                resp.set_token(token);
                let bytes = self.send(peer.clone(), &resp);
                self.dedup.insert(peer, mid, expires, Some(bytes));
            }
            Answer::Silent => {
                if t == MessageType::Confirmable {
                    let ack = coap::empty(MessageType::Acknowledgement, mid);
                    let bytes = self.send(peer.clone(), &ack);
                    self.dedup.insert(peer, mid, expires, Some(bytes));
                } else {
                    self.dedup.insert(peer, mid, expires, None);
                }
            }
            Answer::Later { success, path } => {
                let id = self.next_deferred;
                self.next_deferred = self.next_deferred.wrapping_add(1);
                if t == MessageType::Confirmable {
                    self.send(
                        peer.clone(),
                        &coap::empty(MessageType::Acknowledgement, mid),
                    );
                }
                self.dedup.insert(peer.clone(), mid, expires, None);
                self.pending.push(Pending {
                    id,
                    peer,
                    token,
                    success,
                });
                self.events.push_back(Event::Deferred { id, path });
            }
        }
    }

    fn answer(&mut self, now: u64, peer: &P, req: &Packet) -> Answer {
        match self.try_answer(now, peer, req) {
            Ok(a) => a,
            Err(e) => Answer::Now(error(e)),
        }
    }

    fn try_answer(&mut self, now: u64, peer: &P, req: &Packet) -> Result<Answer, OpError> {
        let segs: Vec<&str> = match req.get_option(CoapOption::UriPath) {
            Some(list) => list
                .iter()
                .map(|s| core::str::from_utf8(s).map_err(|_| OpError::NotFound))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let segs: Vec<&str> = segs.into_iter().filter(|s| !s.is_empty()).collect();
        if self.reg.bootstrap {
            let accept =
                first_uint(req, CoapOption::Accept)?.map(|n| ContentFormat::from_number(n as u16));
            let cf = first_uint(req, CoapOption::ContentFormat)?
                .map(|n| ContentFormat::from_number(n as u16));
            return self.bootstrap_answer(now, req, &segs, cf, accept);
        }
        self.check_critical_options(req)?;
        let path = Path::from_segments(segs).map_err(|_| OpError::NotFound)?;
        if path.depth() == 0 {
            if let MessageClass::Request(m @ (RequestType::Fetch | RequestType::IPatch)) =
                req.header.code
            {
                return self.composite(now, req, m);
            }
        }
        let oid = path.object_id().ok_or(OpError::MethodNotAllowed)?;
        if oid == 0 {
            // The Security object is not accessible to a management server.
            return Err(OpError::Unauthorized);
        }
        if !self.objects.iter().any(|o| o.id() == oid) {
            return Err(OpError::NotFound);
        }
        let MessageClass::Request(method) = req.header.code else {
            return Err(OpError::BadRequest);
        };
        let accept =
            first_uint(req, CoapOption::Accept)?.map(|n| ContentFormat::from_number(n as u16));
        let cf = first_uint(req, CoapOption::ContentFormat)?
            .map(|n| ContentFormat::from_number(n as u16));
        let queries: Vec<String> = req
            .get_option(CoapOption::UriQuery)
            .map(|l| {
                l.iter()
                    .map(|q| String::from_utf8_lossy(q).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        match method {
            RequestType::Get if accept == Some(ContentFormat::LinkFormat) => {
                let body = self.discover(&path)?;
                let mut p = reply(ResponseType::Content);
                coap::set_uint(&mut p, CoapOption::ContentFormat, 40);
                p.payload = body.into_bytes();
                self.block2(req, p).map(Answer::Now)
            }
            RequestType::Get => self.read_request(now, peer, req, &path, accept),
            RequestType::Put | RequestType::Post if req.get_option(q_block1()).is_some() => {
                self.qblock1_write(now, peer, req, &path, cf)
            }
            RequestType::Put
                if req.payload.is_empty()
                    && cf.is_none()
                    && req.get_option(CoapOption::Block1).is_none() =>
            {
                if queries.is_empty() {
                    return Err(OpError::BadRequest);
                }
                let mut a = self.attrs.get(&path);
                a.apply(queries.iter().map(String::as_str))
                    .map_err(|_| OpError::BadRequest)?;
                self.ensure_exists(now, &path)?;
                self.attrs.set(path, a);
                Ok(Answer::Now(reply(ResponseType::Changed)))
            }
            RequestType::Put | RequestType::Post
                if req.get_option(CoapOption::Block1).is_some() =>
            {
                self.block1_write(now, peer, req, &path, cf)
            }
            RequestType::Put if path.depth() >= 2 => self.write_request(now, req, &path, cf),
            RequestType::Post if path.depth() == 3 && self.def(&path)?.multiple => {
                self.merge_instances(now, req, &path, cf)
            }
            RequestType::Post if path.depth() == 3 => self.execute_request(now, req, &path),
            RequestType::Post if path.depth() == 2 => self.write_request(now, req, &path, cf),
            RequestType::Post if path.depth() == 1 => self.create_request(now, req, &path, cf),
            RequestType::Delete if path.depth() == 2 => {
                let iid = path.instance_id().unwrap_or(0);
                self.object(oid)?.delete(iid)?;
                self.reg_objects_changed(now);
                Ok(Answer::Now(reply(ResponseType::Deleted)))
            }
            _ => Err(OpError::MethodNotAllowed),
        }
    }

    pub(super) fn object(
        &mut self,
        oid: u16,
    ) -> Result<&mut alloc::boxed::Box<dyn crate::object::ObjectHandler>, OpError> {
        self.objects
            .iter_mut()
            .find(|o| o.id() == oid)
            .ok_or(OpError::NotFound)
    }

    fn def(&mut self, path: &Path) -> Result<ResourceDef, OpError> {
        let (oid, iid, rid) = ids(path);
        let obj = self.object(oid)?;
        if !obj.instances().contains(&iid) {
            return Err(OpError::NotFound);
        }
        let def = obj.def(rid).ok_or(OpError::NotFound)?;
        if !obj.has_resource(iid, rid) {
            return Err(OpError::NotFound);
        }
        Ok(def)
    }

    fn ensure_exists(&mut self, _now: u64, path: &Path) -> Result<(), OpError> {
        let oid = path.object_id().ok_or(OpError::NotFound)?;
        if let Some(iid) = path.instance_id() {
            if !self.object(oid)?.instances().contains(&iid) {
                return Err(OpError::NotFound);
            }
        }
        if path.resource_id().is_some() {
            self.def(path)?;
        }
        Ok(())
    }

    /// Reads the single value at a resource or resource-instance path.
    pub(crate) fn read_value(&mut self, now: u64, path: &Path) -> Result<Value, OpError> {
        match self.read_node(now, path)? {
            Node::Resource(Resource {
                value: ResourceValue::Single(v),
                ..
            })
            | Node::ResourceInstance { value: v, .. } => Ok(v),
            _ => Err(OpError::MethodNotAllowed),
        }
    }

    fn read_instance(&mut self, now: u64, oid: u16, iid: u16) -> Result<Instance, OpError> {
        let obj = self.object(oid)?;
        let mut resources = Vec::new();
        for d in obj.model().iter().filter(|d| d.ops.read()) {
            if !obj.has_resource(iid, d.id) {
                continue;
            }
            match obj.read(now, iid, d.id) {
                Ok(value) => resources.push(Resource { id: d.id, value }),
                Err(OpError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Instance { id: iid, resources })
    }

    /// Reads the node a path names.
    pub(crate) fn read_node(&mut self, now: u64, path: &Path) -> Result<Node, OpError> {
        let oid = path.object_id().ok_or(OpError::MethodNotAllowed)?;
        match path.depth() {
            1 => {
                let mut instances = Vec::new();
                for iid in self.object(oid)?.instances() {
                    instances.push(self.read_instance(now, oid, iid)?);
                }
                Ok(Node::Object { id: oid, instances })
            }
            2 => {
                let iid = path.instance_id().unwrap_or(0);
                if !self.object(oid)?.instances().contains(&iid) {
                    return Err(OpError::NotFound);
                }
                Ok(Node::Instance(self.read_instance(now, oid, iid)?))
            }
            _ => {
                let def = self.def(path)?;
                if !def.ops.read() {
                    return Err(OpError::MethodNotAllowed);
                }
                let (iid, rid) = (
                    path.instance_id().unwrap_or(0),
                    path.resource_id().unwrap_or(0),
                );
                let value = self.object(oid)?.read(now, iid, rid)?;
                match (path.resource_instance_id(), value) {
                    (None, value) => Ok(Node::Resource(Resource { id: rid, value })),
                    (Some(ri), ResourceValue::Multiple(items)) => items
                        .into_iter()
                        .find(|(id, _)| *id == ri)
                        .map(|(id, value)| Node::ResourceInstance { id, value })
                        .ok_or(OpError::NotFound),
                    (Some(_), ResourceValue::Single(_)) => Err(OpError::NotFound),
                }
            }
        }
    }

    /// Picks the response format: the Accept if supported (else 4.06). Without Accept a single
    /// value goes as text/opaque (the formats every server reads, OMA TS Core 1.1 section
    /// 7.4.1-7.4.2), anything else in the preferred format announced at registration, or TLV
    /// (mandatory in LwM2M 1.0) when that format carries single values only.
    fn pick_format(
        &self,
        node: &Node,
        accept: Option<ContentFormat>,
    ) -> Result<ContentFormat, OpError> {
        let single = match node {
            Node::Resource(Resource {
                value: ResourceValue::Single(v),
                ..
            })
            | Node::ResourceInstance { value: v, .. } => Some(v),
            _ => None,
        };
        match accept {
            None => Ok(match single {
                Some(Value::Opaque(_)) => ContentFormat::Opaque,
                Some(_) => ContentFormat::Text,
                None if self.config.preferred_format.carries_nodes() => {
                    self.config.preferred_format
                }
                None => ContentFormat::Tlv,
            }),
            Some(ContentFormat::Text) if single.is_some_and(|v| !matches!(v, Value::Opaque(_))) => {
                Ok(ContentFormat::Text)
            }
            Some(ContentFormat::Opaque) if matches!(single, Some(Value::Opaque(_))) => {
                Ok(ContentFormat::Opaque)
            }
            Some(ContentFormat::Cbor) if single.is_some() => Ok(ContentFormat::Cbor),
            Some(f) if f.carries_nodes() => Ok(f),
            Some(_) => Err(OpError::NotAcceptable),
        }
    }

    /// Encodes a node in a format [`Engine::pick_format`] chose.
    pub(crate) fn encode(node: &Node, path: &Path, f: ContentFormat) -> Result<Vec<u8>, OpError> {
        let single = match node {
            Node::Resource(Resource {
                value: ResourceValue::Single(v),
                ..
            })
            | Node::ResourceInstance { value: v, .. } => Some(v),
            _ => None,
        };
        match (f, single) {
            (ContentFormat::Text, Some(v)) => Ok(text::encode(v)),
            (ContentFormat::Opaque, Some(v)) => {
                text::encode_opaque(v).map_err(|_| OpError::NotAcceptable)
            }
            (ContentFormat::Cbor, Some(_)) => {
                cbor::encode(node, path).map_err(|_| OpError::Internal)
            }
            (ContentFormat::Tlv | ContentFormat::LegacyTlv, _) => {
                tlv::encode(node).map_err(|_| OpError::Internal)
            }
            (ContentFormat::SenmlJson, _) => {
                senml::encode_json(node, path).map_err(|_| OpError::Internal)
            }
            (ContentFormat::SenmlCbor, _) => {
                senml::encode_cbor(node, path).map_err(|_| OpError::Internal)
            }
            (ContentFormat::LwM2mJson, _) => {
                lwm2m_json::encode(node, path).map_err(|_| OpError::Internal)
            }
            (ContentFormat::LwM2mCbor, _) => {
                lwm2m_cbor::encode(node, path).map_err(|_| OpError::Internal)
            }
            _ => Err(OpError::NotAcceptable),
        }
    }

    /// Read, possibly registering or cancelling an observation.
    fn read_request(
        &mut self,
        now: u64,
        peer: &P,
        req: &Packet,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        let observe = first_uint(req, CoapOption::Observe)?;
        let token = req.get_token().to_vec();
        if observe == Some(1) {
            self.cancel_observation(peer, &token);
        }
        let node = self.read_node(now, path)?;
        let (mut p, format) = self.content(&node, path, accept)?;
        if observe == Some(0) {
            self.observations
                .retain(|o| !(o.peer == *peer && o.token == token));
            if self.observations.len() < self.config.max_observations {
                let last_value = match &node {
                    Node::Resource(Resource {
                        value: ResourceValue::Single(v),
                        ..
                    }) => v.as_f64(),
                    _ => None,
                };
                self.observations.push(Observation {
                    peer: peer.clone(),
                    token,
                    path: *path,
                    format,
                    seq: 0,
                    last_sent_ms: now,
                    last_hash: fingerprint(&p.payload),
                    last_value,
                    dirty: false,
                    in_flight: None,
                });
                coap::set_uint(&mut p, CoapOption::Observe, 0);
                self.events.push_back(Event::ObserveStarted { path: *path });
            }
        }
        self.block2(req, p).map(Answer::Now)
    }

    /// A 2.05 Content carrying `node` (read at `path`) in the format `accept` asks for, or the
    /// device's preferred one; and that format.
    pub(super) fn content(
        &self,
        node: &Node,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Result<(Packet, ContentFormat), OpError> {
        let format = self.pick_format(node, accept)?;
        let mut p = reply(ResponseType::Content);
        coap::set_uint(
            &mut p,
            CoapOption::ContentFormat,
            u32::from(format.number()),
        );
        p.payload = Self::encode(node, path, format)?;
        Ok((p, format))
    }

    /// Cuts a response body into the block the request asked for (RFC 7959 Block2), with
    /// Size2 on the first block; bodies that fit one block pass unchanged.
    pub(super) fn block2(&mut self, req: &Packet, mut p: Packet) -> Result<Packet, OpError> {
        let asked = req
            .get_first_option(CoapOption::Block2)
            .map(|v| BlockOpt::decode(v).map_err(|_| OpError::BadRequest))
            .transpose()?;
        let szx = asked.map_or(self.config.max_block_szx, |b| {
            b.szx.min(self.config.max_block_szx)
        });
        let size = 1usize << (szx + 4);
        let num = match asked {
            // A smaller block size than the request's: scale its NUM to the same byte offset.
            Some(b) => u32::try_from(b.offset() >> (szx + 4)).map_err(|_| OpError::BadRequest)?,
            None => 0,
        };
        if asked.is_none() && p.payload.len() <= size {
            return Ok(p);
        }
        let total = p.payload.len();
        let start =
            usize::try_from(u64::from(num) << (szx + 4)).map_err(|_| OpError::BadRequest)?;
        if start >= total && !(start == 0 && total == 0) {
            return Err(OpError::BadRequest);
        }
        let end = start.saturating_add(size).min(total);
        let more = end < total;
        let block = BlockOpt::new(num, more, szx).map_err(|_| OpError::BadRequest)?;
        p.payload = p
            .payload
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        p.add_option(CoapOption::Block2, block.encode());
        if num == 0 {
            coap::set_uint(
                &mut p,
                CoapOption::Size2,
                u32::try_from(total).unwrap_or(u32::MAX),
            );
        }
        Ok(p)
    }

    fn discover(&mut self, path: &Path) -> Result<String, OpError> {
        let oid = path.object_id().ok_or(OpError::MethodNotAllowed)?;
        if path.depth() > 3 {
            return Err(OpError::MethodNotAllowed);
        }
        self.ensure_exists(0, path)?;
        let mut links = Vec::new();
        let obj = self.object(oid)?;
        let version = obj.version();
        let instances: Vec<u16> = match path.instance_id() {
            Some(i) => alloc::vec![i],
            None => obj.instances(),
        };
        let mut entries: Vec<(Path, Option<usize>)> = Vec::new();
        if path.depth() == 1 {
            entries.push((*path, None));
        }
        for iid in instances {
            if path.depth() <= 2 {
                entries.push((Path::instance(oid, iid), None));
            }
            for d in obj.model() {
                if path.resource_id().is_some_and(|r| r != d.id) || !obj.has_resource(iid, d.id) {
                    continue;
                }
                let dim = if d.multiple {
                    match obj.read(0, iid, d.id) {
                        Ok(ResourceValue::Multiple(items)) => Some(items.len()),
                        _ => Some(0),
                    }
                } else {
                    None
                };
                entries.push((Path::resource(oid, iid, d.id), dim));
                if path.depth() == 3 && d.multiple {
                    if let Ok(ResourceValue::Multiple(items)) = obj.read(0, iid, d.id) {
                        for (ri, _) in items {
                            entries.push((Path::resource_instance(oid, iid, d.id, ri), None));
                        }
                    }
                }
            }
        }
        for (p, dim) in entries {
            let mut l = Link::new(format!("{p}"));
            if p.depth() == 1 {
                if let Some(v) = version.filter(|v| *v != "1.0") {
                    l = l.attr("ver", v);
                }
            }
            if let Some(n) = dim {
                l = l.attr("dim", format!("{n}"));
            }
            let a = self.attrs.get(&p);
            for (name, v) in [
                ("pmin", a.pmin.map(f64::from)),
                ("pmax", a.pmax.map(f64::from)),
                ("gt", a.gt),
                ("lt", a.lt),
                ("st", a.st),
            ] {
                if let Some(v) = v {
                    l = l.attr(name, format!("{v}"));
                }
            }
            links.push(l);
        }
        Ok(link::encode(&links))
    }

    /// Decodes a write payload for `path` in content format `cf`.
    pub(crate) fn decode_payload(
        &mut self,
        path: &Path,
        cf: Option<ContentFormat>,
        payload: &[u8],
    ) -> Result<Node, OpError> {
        let oid = path.object_id().ok_or(OpError::NotFound)?;
        let model = self.object(oid)?.model();
        let types = move |o: u16, r: u16| {
            if o == oid {
                model.iter().find(|d| d.id == r).map(|d| d.ty)
            } else {
                None
            }
        };
        let cf = cf.ok_or(OpError::UnsupportedFormat)?;
        match cf {
            ContentFormat::Text | ContentFormat::Opaque => {
                let rid = path.resource_id().ok_or(OpError::BadRequest)?;
                let def = self.def(path)?;
                let value = if cf == ContentFormat::Opaque {
                    if def.ty != ResourceType::Opaque {
                        return Err(OpError::UnsupportedFormat);
                    }
                    Value::Opaque(payload.to_vec())
                } else {
                    text::decode(payload, def.ty).map_err(codec_error)?
                };
                Ok(match path.resource_instance_id() {
                    Some(ri) => Node::ResourceInstance { id: ri, value },
                    None => Node::Resource(Resource {
                        id: rid,
                        value: ResourceValue::Single(value),
                    }),
                })
            }
            ContentFormat::Tlv | ContentFormat::LegacyTlv => {
                tlv::decode(payload, path, &types).map_err(codec_error)
            }
            ContentFormat::SenmlJson => {
                senml::decode_json(payload, path, &types).map_err(codec_error)
            }
            ContentFormat::SenmlCbor => {
                senml::decode_cbor(payload, path, &types).map_err(codec_error)
            }
            ContentFormat::Cbor => cbor::decode(payload, path, &types).map_err(codec_error),
            ContentFormat::LwM2mJson => {
                lwm2m_json::decode(payload, path, &types).map_err(codec_error)
            }
            ContentFormat::LwM2mCbor => {
                lwm2m_cbor::decode(payload, path, &types).map_err(codec_error)
            }
            _ => Err(OpError::UnsupportedFormat),
        }
    }

    /// Write (replace on PUT, partial update on POST): every resource must be writable.
    fn write_request(
        &mut self,
        now: u64,
        req: &Packet,
        path: &Path,
        cf: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        self.ensure_exists(now, path)?;
        let node = self.decode_payload(path, cf, &req.payload)?;
        let oid = path.object_id().unwrap_or(0);
        let iid = path.instance_id().unwrap_or(0);
        let resources: Vec<Resource> = match node {
            Node::Instance(inst) => inst.resources,
            Node::Resource(r) => {
                if Some(r.id) != path.resource_id() {
                    return Err(OpError::BadRequest);
                }
                alloc::vec![r]
            }
            Node::ResourceInstance { id, value } => {
                alloc::vec![Resource {
                    id: path.resource_id().unwrap_or(0),
                    value: ResourceValue::Multiple(alloc::vec![(id, value)])
                }]
            }
            Node::Object { .. } => return Err(OpError::BadRequest),
        };
        for r in &resources {
            let def = self.def(&Path::resource(oid, iid, r.id))?;
            if !def.ops.write() {
                return Err(OpError::MethodNotAllowed);
            }
            if !shape_fits(&def, r) {
                return Err(OpError::BadRequest);
            }
        }
        let mut deferred = false;
        for r in &resources {
            deferred |= self.object(oid)?.write(now, iid, r)? == Completion::Deferred;
        }
        self.after_change(now, path, resources.iter().map(|r| r.id));
        self.events.push_back(Event::Written { path: *path });
        let ok = reply(ResponseType::Changed);
        Ok(Answer::changed(deferred, ok, path))
    }

    /// What a successful change implies: settings of object 1 trigger an Update, and
    /// observations of the object re-check their values.
    fn after_change(&mut self, now: u64, path: &Path, resources: impl Iterator<Item = u16>) {
        if path.object_id() == Some(1) {
            let rs: Vec<u16> = resources.collect();
            if rs.iter().any(|r| matches!(r, 1 | 7)) {
                self.schedule_update(now);
            }
        }
        self.mark_all_dirty();
    }

    /// Partial update of a multiple resource (POST /o/i/r, OMA TS Core 1.1 section 6.3.3):
    /// the given resource instances are added or replaced, the others kept.
    fn merge_instances(
        &mut self,
        now: u64,
        req: &Packet,
        path: &Path,
        cf: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        let def = self.def(path)?;
        if !def.ops.write() {
            return Err(OpError::MethodNotAllowed);
        }
        let Node::Resource(Resource {
            id,
            value: ResourceValue::Multiple(new),
        }) = self.decode_payload(path, cf, &req.payload)?
        else {
            return Err(OpError::BadRequest);
        };
        let (oid, iid, _) = ids(path);
        let mut items = match self.object(oid)?.read(now, iid, id) {
            Ok(ResourceValue::Multiple(items)) => items,
            // Write-only resources cannot be read back: the update is then the whole content.
            _ => Vec::new(),
        };
        for (ri, v) in new {
            match items.iter_mut().find(|(i, _)| *i == ri) {
                Some(slot) => slot.1 = v,
                None => items.push((ri, v)),
            }
        }
        items.sort_by_key(|(i, _)| *i);
        let r = Resource {
            id,
            value: ResourceValue::Multiple(items),
        };
        let c = self.object(oid)?.write(now, iid, &r)?;
        self.after_change(now, path, core::iter::once(id));
        self.events.push_back(Event::Written { path: *path });
        let ok = reply(ResponseType::Changed);
        Ok(Answer::changed(c == Completion::Deferred, ok, path))
    }

    fn execute_request(&mut self, now: u64, req: &Packet, path: &Path) -> Result<Answer, OpError> {
        let def = self.def(path)?;
        if !def.ops.exec() {
            return Err(OpError::MethodNotAllowed);
        }
        let (oid, iid, rid) = ids(path);
        // The Bootstrap-Request Trigger needs a bootstrap account to bootstrap with.
        let bootstrap_account = if (oid, rid) == (1, 9) {
            Some(self.server_account(true).ok_or(OpError::MethodNotAllowed)?)
        } else {
            None
        };
        let c = self.object(oid)?.execute(now, iid, rid, &req.payload)?;
        if (oid, rid) == (1, 8) {
            self.schedule_update(now);
        }
        if (oid, rid) == (1, 4) {
            self.disable(now);
        }
        self.mark_all_dirty();
        self.events.push_back(Event::Executed { path: *path });
        if let Some((server_uri, credentials)) = bootstrap_account {
            self.events.push_back(Event::BootstrapTriggered {
                server_uri,
                credentials,
                cause: super::BootstrapCause::Trigger,
            });
        }
        let ok = reply(ResponseType::Changed);
        Ok(Answer::changed(c == Completion::Deferred, ok, path))
    }

    fn create_request(
        &mut self,
        now: u64,
        req: &Packet,
        path: &Path,
        cf: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        let oid = path.object_id().unwrap_or(0);
        let node = self.decode_payload(path, cf, &req.payload)?;
        let Node::Object { instances, .. } = node else {
            return Err(OpError::BadRequest);
        };
        let mut created = None;
        for inst in instances {
            let id = if req.payload.is_empty() {
                None
            } else {
                Some(inst.id)
            };
            created = Some(self.object(oid)?.create(id, &inst.resources)?);
        }
        let iid = match created {
            Some(i) => i,
            None => self.object(oid)?.create(None, &[])?,
        };
        self.reg_objects_changed(now);
        let mut p = reply(ResponseType::Created);
        p.add_option(CoapOption::LocationPath, format!("{oid}").into_bytes());
        p.add_option(CoapOption::LocationPath, format!("{iid}").into_bytes());
        Ok(Answer::Now(p))
    }

    /// One Block1 block of a write (RFC 7959 section 2.5): in order or 4.08, block 0 restarts,
    /// each block goes straight to the object, 2.31 Continue until the last one. An opaque
    /// value may come framed as TLV or SenML (OMA TS Core 1.1 section 7.4): the framing is
    /// stripped block by block and only the value reaches the object; a malformed frame ends
    /// the transfer with 4.00 and the object's [`ObjectHandler::abort_block_write`].
    ///
    /// [`ObjectHandler::abort_block_write`]: crate::ObjectHandler::abort_block_write
    fn block1_write(
        &mut self,
        now: u64,
        peer: &P,
        req: &Packet,
        path: &Path,
        cf: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        let b = req
            .get_first_option(CoapOption::Block1)
            .map(|v| BlockOpt::decode(v))
            .transpose()
            .map_err(|_| OpError::BadRequest)?;
        let b = b.ok_or(OpError::BadRequest)?;
        let c = self.write_block(now, peer, req, b, path, cf)?;
        let offset = b.offset();
        // Ask for smaller blocks when the server's exceed ours: the reply's SZX is ours and
        // its NUM is this block's number at our size (the server continues from the offset).
        let szx = b.szx.min(self.config.max_block_szx);
        let num = u32::try_from(offset >> (szx + 4)).map_err(|_| OpError::BadRequest)?;
        let mut ok = reply(if b.more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        });
        ok.add_option(
            CoapOption::Block1,
            BlockOpt::new(num, b.more, szx)
                .map_err(|_| OpError::BadRequest)?
                .encode(),
        );
        Ok(Answer::changed(c == Completion::Deferred, ok, path))
    }

    /// Hands block `b` of a block-wise write (Block1, or Q-Block1 in order) to the object:
    /// block 0 starts the body, any other must continue it at the offset reached; the
    /// framing of a TLV or SenML body is stripped here. Events tell the application.
    pub(crate) fn write_block(
        &mut self,
        now: u64,
        peer: &P,
        req: &Packet,
        b: BlockOpt,
        path: &Path,
        cf: Option<ContentFormat>,
    ) -> Result<Completion, OpError> {
        let def = self.def(path)?;
        if path.depth() != 3 || !def.ops.write() || def.ty != ResourceType::Opaque {
            self.block1 = None;
            return Err(OpError::MethodNotAllowed);
        }
        if b.more && req.payload.len() != b.size() {
            self.block1 = None;
            return Err(OpError::BadRequest);
        }
        let offset = b.offset();
        let mut rx = if b.num == 0 {
            let deframer = match cf {
                None | Some(ContentFormat::Opaque) => None,
                Some(f) => match Deframer::new(f, path) {
                    Some(d) => Some(d),
                    None => {
                        self.block1 = None;
                        return Err(OpError::UnsupportedFormat);
                    }
                },
            };
            Block1Rx {
                peer: peer.clone(),
                path: *path,
                format: cf,
                next_offset: 0,
                deframer,
                value_offset: 0,
            }
        } else {
            match self.block1.take() {
                Some(s)
                    if s.peer == *peer
                        && s.path == *path
                        && s.next_offset == offset
                        && s.format == cf =>
                {
                    s
                }
                other => {
                    self.block1 = other;
                    return Err(OpError::Incomplete);
                }
            }
        };
        let (oid, iid, rid) = ids(path);
        let mut value = Vec::new();
        if let Some(d) = rx.deframer.as_mut() {
            let framed =
                d.feed(&req.payload, &mut value)
                    .and_then(|()| if b.more { Ok(()) } else { d.finish() });
            if framed.is_err() {
                self.block1 = None;
                self.object(oid)?
                    .abort_block_write(now, iid, rid, b.num == 0)?;
                self.mark_all_dirty();
                return Err(OpError::BadRequest);
            }
        }
        let (data, total) = match &rx.deframer {
            None => (&req.payload[..], first_uint(req, CoapOption::Size1)?),
            Some(d) => (
                &value[..],
                d.value_len().and_then(|n| u32::try_from(n).ok()),
            ),
        };
        // A block that carried only framing reaches the object when it starts or ends the body.
        let c = if data.is_empty() && b.num != 0 && b.more {
            Completion::Done
        } else {
            let chunk = BlockChunk {
                first: b.num == 0,
                offset: rx.value_offset,
                data,
                last: !b.more,
                total,
            };
            match self.object(oid)?.write_block(now, iid, rid, &chunk) {
                Ok(c) => c,
                Err(e) => {
                    self.block1 = None;
                    return Err(e);
                }
            }
        };
        rx.value_offset += data.len() as u64;
        rx.next_offset = offset + req.payload.len() as u64;
        self.block1 = b.more.then_some(rx);
        self.events.push_back(Event::BlockReceived {
            path: *path,
            offset,
            len: req.payload.len(),
            last: !b.more,
        });
        if !b.more {
            self.events.push_back(Event::Written { path: *path });
        }
        self.mark_all_dirty();
        Ok(c)
    }

    /// Read-Composite (FETCH /) and Write-Composite (iPATCH /) with SenML JSON or CBOR
    /// (OMA TS Core 1.1 sections 6.3.8, 6.3.9): the request names paths in any objects except
    /// Security; a read answers every leaf under each path with full names.
    fn composite(&mut self, now: u64, req: &Packet, m: RequestType) -> Result<Answer, OpError> {
        let cf = first_uint(req, CoapOption::ContentFormat)?
            .map(|n| ContentFormat::from_number(n as u16));
        let accept =
            first_uint(req, CoapOption::Accept)?.map(|n| ContentFormat::from_number(n as u16));
        if m == RequestType::IPatch {
            let leaves = match cf {
                Some(ContentFormat::SenmlJson) => senml::decode_json_leaves(&req.payload),
                Some(ContentFormat::SenmlCbor) => senml::decode_cbor_leaves(&req.payload),
                _ => return Err(OpError::UnsupportedFormat),
            }
            .map_err(codec_error)?;
            // Check everything first so a rejected request changes nothing.
            let mut writes = Vec::new();
            for (p, v) in leaves {
                if p.depth() != 3 || p.object_id() == Some(0) {
                    return Err(OpError::BadRequest);
                }
                let def = self.def(&p)?;
                if !def.ops.write() || def.multiple {
                    return Err(OpError::MethodNotAllowed);
                }
                let v = v.coerce(def.ty).map_err(codec_error)?;
                writes.push((p, v));
            }
            for (p, v) in writes {
                let (oid, iid) = (p.object_id().unwrap_or(0), p.instance_id().unwrap_or(0));
                let r = Resource {
                    id: p.resource_id().unwrap_or(0),
                    value: ResourceValue::Single(v),
                };
                self.object(oid)?.write(now, iid, &r)?;
                self.after_change(now, &p, core::iter::once(r.id));
                self.events.push_back(Event::Written { path: p });
            }
            return Ok(Answer::Now(reply(ResponseType::Changed)));
        }
        let paths = match cf {
            Some(ContentFormat::SenmlJson) => senml::decode_json_paths(&req.payload),
            Some(ContentFormat::SenmlCbor) => senml::decode_cbor_paths(&req.payload),
            _ => return Err(OpError::UnsupportedFormat),
        }
        .map_err(codec_error)?;
        let format = accept.or(cf).unwrap_or(ContentFormat::SenmlCbor);
        if !matches!(format, ContentFormat::SenmlJson | ContentFormat::SenmlCbor) {
            return Err(OpError::NotAcceptable);
        }
        let mut nodes = Vec::new();
        for p in paths {
            if p.object_id().is_none_or(|o| o == 0) {
                return Err(OpError::BadRequest);
            }
            match self.read_node(now, &p) {
                Ok(n) => nodes.push((p, n)),
                // A path that does not exist contributes nothing (the others are still read).
                Err(OpError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let mut leaves = Vec::new();
        for (p, n) in &nodes {
            leaves.extend(n.leaves(p).map_err(|_| OpError::Internal)?);
        }
        let body = if format == ContentFormat::SenmlJson {
            senml::encode_json_leaves(&Path::ROOT, &leaves)
        } else {
            senml::encode_cbor_leaves(&Path::ROOT, &leaves)
        }
        .map_err(|_| OpError::Internal)?;
        let mut p = reply(ResponseType::Content);
        coap::set_uint(
            &mut p,
            CoapOption::ContentFormat,
            u32::from(format.number()),
        );
        p.payload = body;
        self.block2(req, p).map(Answer::Now)
    }
}
