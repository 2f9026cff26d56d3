//! Device-management requests from the server to one registered client (Read, Write, Execute,
//! Discover, Write-Attributes, Create, Delete, Observe), with block-wise transfer: Block2
//! reassembly of large reads and Block1 pushes that renegotiate a smaller block size on 4.13 or
//! on a smaller SZX in 2.31, or Q-Block1 pushes of firmware packages ([`qblock1_push`]) to
//! devices that take them. Each block is its own exchange with its own timeout, so a large push
//! never times out while it is moving (Leshan #302).

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwm2m_client::codec::block::{decode_uint_option, uint_option, MAX_NUM};
use lwm2m_client::codec::{senml, BlockOpt, ContentFormat, Path};

use crate::coap::endpoint::{CoapEndpoint, ExchangeError, ObservationStream};
use crate::packages::qblock::QBlockSenderParams;
use crate::server::qblock1_push::{self, PushError, Pushed};

/// Largest body a Block2 read may reassemble (keeps a misbehaving client from exhausting memory).
pub const MAX_READ_BODY: usize = 16 * 1024 * 1024;

/// What the device answered.
#[derive(Debug, Clone, PartialEq)]
pub struct DmResponse {
    /// CoAP response code.
    pub code: ResponseType,
    /// Raw code byte (class << 5 | detail), for codes coap-lite does not name.
    pub raw_code: u8,
    /// Content-Format of the payload, if given.
    pub content_format: Option<ContentFormat>,
    /// Whole payload (reassembled when the device used Block2).
    pub payload: Vec<u8>,
    /// Location-Path segments (Create).
    pub location: Vec<String>,
}

impl DmResponse {
    fn from_packet(p: &Packet, payload: Vec<u8>) -> Self {
        let code = match p.header.code {
            MessageClass::Response(r) => r,
            _ => ResponseType::UnKnown,
        };
        Self {
            code,
            raw_code: p.header.code.into(),
            content_format: p
                .get_first_option(CoapOption::ContentFormat)
                .and_then(|v| ContentFormat::from_option(v)),
            payload,
            location: p
                .get_option(CoapOption::LocationPath)
                .map(|l| {
                    l.iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether the code is a 2.xx success.
    pub fn is_success(&self) -> bool {
        self.raw_code >> 5 == 2
    }

    /// The code as `c.dd`.
    pub fn code_string(&self) -> String {
        format!("{}.{:02}", self.raw_code >> 5, self.raw_code & 0x1f)
    }
}

/// Why a device-management request has no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum DmError {
    /// The CoAP exchange failed (timeout, reset, socket).
    Exchange(ExchangeError),
    /// The device broke the block-wise protocol (wrong block number, changed ETag, ...).
    Blockwise(&'static str),
    /// A Block2 body grew beyond [`MAX_READ_BODY`].
    BodyTooLarge,
}

impl fmt::Display for DmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exchange(e) => write!(f, "{e}"),
            Self::Blockwise(why) => write!(f, "block-wise transfer failed: {why}"),
            Self::BodyTooLarge => write!(f, "response body larger than {MAX_READ_BODY} bytes"),
        }
    }
}

impl std::error::Error for DmError {}

impl From<PushError> for DmError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Exchange(e) => Self::Exchange(e),
            PushError::Protocol(why) => Self::Blockwise(why),
        }
    }
}

impl From<ExchangeError> for DmError {
    fn from(e: ExchangeError) -> Self {
        Self::Exchange(e)
    }
}

/// The paths a composite operation names (Read-Composite, Observe-Composite, OMA TS Core 1.1
/// sections 6.3.8 and 6.4.3) and the request body naming them, in SenML JSON or CBOR.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositePaths {
    /// The paths, in the order the caller gave them.
    pub paths: Vec<Path>,
    /// The body's content format (SenML JSON or SenML CBOR).
    pub format: ContentFormat,
    /// The body: one SenML record per path, names only.
    pub body: Vec<u8>,
}

impl CompositePaths {
    /// Encodes `paths` in `format`; `None` unless `format` is SenML JSON or SenML CBOR.
    pub fn new(paths: Vec<Path>, format: ContentFormat) -> Option<Self> {
        let body = match format {
            ContentFormat::SenmlJson => senml::encode_json_paths(&paths),
            ContentFormat::SenmlCbor => senml::encode_cbor_paths(&paths).ok()?,
            _ => return None,
        };
        Some(Self {
            paths,
            format,
            body,
        })
    }
}

/// Requests to one device at `peer`.
#[derive(Clone)]
pub struct DeviceHandle {
    endpoint: CoapEndpoint,
    peer: SocketAddr,
    root: Vec<String>,
    /// Timeout of each exchange (each block restarts it).
    pub timeout: Duration,
    /// Preferred Block1 size for pushes (16..=1024, rounded down to a power of two).
    pub block_size: usize,
    /// Push firmware packages (/5/0/0) with Q-Block1 (RFC 9177), `None` with Block1 only.
    pub push_qblock: Option<Arc<PushQBlock>>,
}

/// Registrations remembered as not taking Q-Block1.
const MAX_REMEMBERED_WITHOUT_QBLOCK1: usize = 65_536;

/// Q-Block1 pushes of firmware packages to one registration, and what is known of its
/// support: a device that answered 4.02 is pushed with Block1 from then on (RFC 9177 §4.1),
/// until it registers again (a new registration may run new firmware).
#[derive(Clone, Debug)]
pub struct PushQBlock {
    /// RFC 9177 §7.2 parameters of the pusher.
    pub params: QBlockSenderParams,
    /// Id of the registration the handle reaches.
    pub registration: String,
    /// Registrations known not to take Q-Block1.
    pub without: Arc<Mutex<HashSet<String>>>,
}

impl PushQBlock {
    fn supported(&self) -> bool {
        !self
            .without
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&self.registration)
    }

    fn unsupported(&self) {
        let mut without = self.without.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: past this many (mostly expired) registrations, devices are probed again.
        if without.len() >= MAX_REMEMBERED_WITHOUT_QBLOCK1 {
            without.clear();
        }
        without.insert(self.registration.clone());
    }
}

fn block_option(p: &Packet, which: CoapOption) -> Result<Option<BlockOpt>, DmError> {
    match p.get_first_option(which) {
        None => Ok(None),
        Some(v) => BlockOpt::decode(v)
            .map(Some)
            .map_err(|_| DmError::Blockwise("undecodable block option")),
    }
}

impl DeviceHandle {
    /// Requests to the client at `peer` whose LwM2M root is `root_path` (usually `/`).
    pub fn new(
        endpoint: CoapEndpoint,
        peer: SocketAddr,
        root_path: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            peer,
            root: root_path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            timeout,
            block_size: 1024,
            push_qblock: None,
        }
    }

    fn base(&self, method: RequestType, path: &Path) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(method);
        for seg in self.root.iter().cloned().chain(path.segments()) {
            p.add_option(CoapOption::UriPath, seg.into_bytes());
        }
        p
    }

    /// Read (GET), reassembling Block2 responses.
    pub async fn read(
        &self,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Result<DmResponse, DmError> {
        let mut req = self.base(RequestType::Get, path);
        if let Some(cf) = accept {
            req.add_option(CoapOption::Accept, cf.to_option());
        }
        let first = self
            .endpoint
            .request(self.peer, req.clone(), self.timeout)
            .await?;
        self.complete_block2(req, first).await
    }

    /// Discover (GET with Accept: link-format).
    pub async fn discover(&self, path: &Path) -> Result<DmResponse, DmError> {
        self.read(path, Some(ContentFormat::LinkFormat)).await
    }

    /// Write: PUT (replace) or POST (partial update), with Block1 when the payload exceeds the
    /// block size.
    pub async fn write(
        &self,
        path: &Path,
        replace: bool,
        format: ContentFormat,
        payload: &[u8],
    ) -> Result<DmResponse, DmError> {
        let method = if replace {
            RequestType::Put
        } else {
            RequestType::Post
        };
        let mut req = self.base(method, path);
        req.add_option(CoapOption::ContentFormat, format.to_option());
        let package = path.depth() == 3
            && (path.object_id(), path.instance_id(), path.resource_id())
                == (Some(5), Some(0), Some(0));
        let szx = BlockOpt::szx_for_size(self.block_size);
        match &self.push_qblock {
            Some(q) if package && replace && payload.len() > 1usize << (szx + 4) => {
                if q.supported() {
                    match qblock1_push::push(
                        &self.endpoint,
                        self.peer,
                        &req,
                        payload,
                        szx,
                        &q.params,
                        self.timeout,
                    )
                    .await
                    .map_err(DmError::from)?
                    {
                        Pushed::Answered(p) => {
                            return Ok(DmResponse::from_packet(&p, p.payload.clone()))
                        }
                        Pushed::Unsupported => {
                            tracing::debug!(peer = %self.peer, "no Q-Block1: pushing with Block1");
                            q.unsupported();
                        }
                    }
                }
                self.send_body(req, payload).await
            }
            _ => self.send_body(req, payload).await,
        }
    }

    /// Execute (POST with optional arguments).
    pub async fn execute(&self, path: &Path, args: &[u8]) -> Result<DmResponse, DmError> {
        let mut req = self.base(RequestType::Post, path);
        if !args.is_empty() {
            req.add_option(CoapOption::ContentFormat, ContentFormat::Text.to_option());
        }
        self.send_body(req, args).await
    }

    /// Create (POST on an object) with an instance payload.
    pub async fn create(
        &self,
        path: &Path,
        format: ContentFormat,
        payload: &[u8],
    ) -> Result<DmResponse, DmError> {
        let mut req = self.base(RequestType::Post, path);
        req.add_option(CoapOption::ContentFormat, format.to_option());
        self.send_body(req, payload).await
    }

    /// Delete an object instance.
    pub async fn delete(&self, path: &Path) -> Result<DmResponse, DmError> {
        let req = self.base(RequestType::Delete, path);
        let resp = self.endpoint.request(self.peer, req, self.timeout).await?;
        Ok(DmResponse::from_packet(&resp, resp.payload.clone()))
    }

    /// Write-Attributes: PUT with one Uri-Query per attribute (`pmin=2`, ...) and no payload.
    pub async fn write_attributes(
        &self,
        path: &Path,
        attributes: &[(String, String)],
    ) -> Result<DmResponse, DmError> {
        let mut req = self.base(RequestType::Put, path);
        for (k, v) in attributes {
            let q = if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            };
            req.add_option(CoapOption::UriQuery, q.into_bytes());
        }
        let resp = self.endpoint.request(self.peer, req, self.timeout).await?;
        Ok(DmResponse::from_packet(&resp, resp.payload.clone()))
    }

    /// Observe (GET with Observe = 0): the first answer, and the stream of later notifications
    /// (raw packets; large notifications carry only their first block).
    pub async fn observe(
        &self,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Result<(DmResponse, Option<ObservationStream>), DmError> {
        let mut req = self.base(RequestType::Get, path);
        req.add_option(CoapOption::Observe, Vec::new());
        if let Some(cf) = accept {
            req.add_option(CoapOption::Accept, cf.to_option());
        }
        self.start_observation(req).await
    }

    /// Active cancel of an observation (RFC 7641 section 3.6, LwM2M core TS 1.1 section
    /// 6.4.6): a GET of `path` with Observe = 1 and the observation's `token`. The device
    /// answers it as a Read and stops notifying.
    pub async fn cancel_observe(
        &self,
        path: &Path,
        token: &[u8],
        accept: Option<ContentFormat>,
    ) -> Result<DmResponse, DmError> {
        let mut req = self.base(RequestType::Get, path);
        req.add_option(CoapOption::Observe, vec![1]);
        if let Some(cf) = accept {
            req.add_option(CoapOption::Accept, cf.to_option());
        }
        self.send_cancel(req, token).await
    }

    /// A FETCH of the LwM2M root naming `paths` (composite operations), answered in `accept`.
    fn fetch(&self, paths: &CompositePaths, accept: ContentFormat) -> Packet {
        let mut req = self.base(RequestType::Fetch, &Path::ROOT);
        req.add_option(CoapOption::ContentFormat, paths.format.to_option());
        req.add_option(CoapOption::Accept, accept.to_option());
        req.payload = paths.body.clone();
        req
    }

    /// Read-Composite (OMA TS Core 1.1 section 6.3.8): FETCH of the root with the paths in the
    /// body, the values of all of them in one answer (reassembled when it uses Block2).
    pub async fn read_composite(
        &self,
        paths: &CompositePaths,
        accept: ContentFormat,
    ) -> Result<DmResponse, DmError> {
        let req = self.fetch(paths, accept);
        let first = self
            .endpoint
            .request(self.peer, req.clone(), self.timeout)
            .await?;
        self.complete_block2(req, first).await
    }

    /// Write-Composite (OMA TS Core 1.1 section 6.3.9): iPATCH of the root with SenML records
    /// carrying the new values, block-wise when the body exceeds the block size.
    pub async fn write_composite(
        &self,
        format: ContentFormat,
        payload: &[u8],
    ) -> Result<DmResponse, DmError> {
        let mut req = self.base(RequestType::IPatch, &Path::ROOT);
        req.add_option(CoapOption::ContentFormat, format.to_option());
        self.send_body(req, payload).await
    }

    /// Observe-Composite (OMA TS Core 1.1 section 6.4.3): a FETCH of the paths with Observe = 0;
    /// the first answer and the stream of later notifications, as [`Self::observe`].
    pub async fn observe_composite(
        &self,
        paths: &CompositePaths,
        accept: ContentFormat,
    ) -> Result<(DmResponse, Option<ObservationStream>), DmError> {
        let mut req = self.fetch(paths, accept);
        req.add_option(CoapOption::Observe, Vec::new());
        self.start_observation(req).await
    }

    /// Sends an Observe registration (`req` carries Observe = 0): the whole first answer, and
    /// the notification stream when the device accepted (it answered 2.xx with Observe).
    async fn start_observation(
        &self,
        mut req: Packet,
    ) -> Result<(DmResponse, Option<ObservationStream>), DmError> {
        let (first, stream) = self
            .endpoint
            .observe(self.peer, req.clone(), self.timeout)
            .await?;
        let established = first.get_first_option(CoapOption::Observe).is_some();
        req.clear_option(CoapOption::Observe);
        let resp = self.complete_block2(req, first).await?;
        if established && resp.is_success() {
            Ok((resp, Some(stream)))
        } else {
            self.endpoint.forget_observation(stream.token());
            Ok((resp, None))
        }
    }

    /// Sends an active cancel (`req` carries Observe = 1) with the observation's `token`; the
    /// whole answer.
    async fn send_cancel(&self, mut req: Packet, token: &[u8]) -> Result<DmResponse, DmError> {
        let first = self
            .endpoint
            .request_with_token(self.peer, req.clone(), self.timeout, token)
            .await?;
        req.clear_option(CoapOption::Observe);
        self.complete_block2(req, first).await
    }

    /// Active cancel of a composite observation: the same FETCH with Observe = 1 and the
    /// observation's `token` (RFC 7641 section 3.6, as for [`Self::cancel_observe`]).
    pub async fn cancel_observe_composite(
        &self,
        paths: &CompositePaths,
        token: &[u8],
        accept: ContentFormat,
    ) -> Result<DmResponse, DmError> {
        let mut req = self.fetch(paths, accept);
        req.add_option(CoapOption::Observe, vec![1]);
        self.send_cancel(req, token).await
    }

    /// Completes a notification of a composite observation (the remaining blocks are fetched
    /// with the observation's FETCH, RFC 8132 section 2.3.2 with RFC 7959 section 3.4).
    pub async fn complete_composite_notification(
        &self,
        paths: &CompositePaths,
        accept: ContentFormat,
        notification: Packet,
    ) -> Result<DmResponse, DmError> {
        self.complete_block2(self.fetch(paths, accept), notification)
            .await
    }

    /// Completes a notification of an observation of `path`: when it carries only the first
    /// block (Block2, M=1), the rest is fetched with GET requests (RFC 7959 section 3.4).
    pub async fn complete_notification(
        &self,
        path: &Path,
        accept: Option<ContentFormat>,
        notification: Packet,
    ) -> Result<DmResponse, DmError> {
        let mut req = self.base(RequestType::Get, path);
        if let Some(cf) = accept {
            req.add_option(CoapOption::Accept, cf.to_option());
        }
        self.complete_block2(req, notification).await
    }

    /// Fetches the remaining blocks of a Block2 response, re-sending `req` with increasing NUM.
    async fn complete_block2(&self, req: Packet, first: Packet) -> Result<DmResponse, DmError> {
        let Some(mut opt) = block_option(&first, CoapOption::Block2)? else {
            return Ok(DmResponse::from_packet(&first, first.payload.clone()));
        };
        if !opt.more {
            return Ok(DmResponse::from_packet(&first, first.payload.clone()));
        }
        let etag = first.get_first_option(CoapOption::ETag).cloned();
        let mut body = first.payload.clone();
        while opt.more {
            if body.len() as u64 != opt.offset() + opt.size() as u64 {
                return Err(DmError::Blockwise(
                    "intermediate block shorter than its size",
                ));
            }
            let num = opt
                .num
                .checked_add(1)
                .filter(|n| *n <= MAX_NUM)
                .ok_or(DmError::Blockwise("block number beyond 2^20-1"))?;
            let next =
                BlockOpt::new(num, false, opt.szx).map_err(|_| DmError::Blockwise("bad block"))?;
            let mut r = req.clone();
            r.clear_option(CoapOption::Block2);
            r.add_option(CoapOption::Block2, next.encode());
            let resp = self.endpoint.request(self.peer, r, self.timeout).await?;
            if !matches!(
                resp.header.code,
                MessageClass::Response(ResponseType::Content)
            ) {
                // The device answered with an error mid-transfer: report that answer.
                return Ok(DmResponse::from_packet(&resp, resp.payload.clone()));
            }
            if etag.is_some() && resp.get_first_option(CoapOption::ETag) != etag.as_ref() {
                return Err(DmError::Blockwise(
                    "resource changed during the transfer (ETag)",
                ));
            }
            let got = block_option(&resp, CoapOption::Block2)?
                .ok_or(DmError::Blockwise("block response without Block2"))?;
            if got.offset() != next.offset() {
                return Err(DmError::Blockwise(
                    "device sent a different block than requested",
                ));
            }
            if body.len().saturating_add(resp.payload.len()) > MAX_READ_BODY {
                return Err(DmError::BodyTooLarge);
            }
            body.extend_from_slice(&resp.payload);
            opt = got;
        }
        Ok(DmResponse::from_packet(&first, body))
    }

    /// Sends `payload` with `req`, block-wise when it exceeds the block size.
    async fn send_body(&self, req: Packet, payload: &[u8]) -> Result<DmResponse, DmError> {
        let mut szx = BlockOpt::szx_for_size(self.block_size);
        if payload.len() <= 1usize << (szx + 4) {
            let mut r = req.clone();
            r.payload = payload.to_vec();
            let resp = self.endpoint.request(self.peer, r, self.timeout).await?;
            if resp.header.code != MessageClass::Response(ResponseType::RequestEntityTooLarge) {
                return self.complete_block2(req, resp).await;
            }
            // 4.13 on a single-datagram body: retry block-wise if the device named a size.
            match renegotiate(&resp, szx, payload.len()) {
                Some(s) => szx = s,
                None => return Ok(DmResponse::from_packet(&resp, resp.payload.clone())),
            }
        }
        let total = payload.len();
        let mut offset = 0usize;
        loop {
            let size = 1usize << (szx + 4);
            let end = offset.saturating_add(size).min(total);
            let chunk = payload
                .get(offset..end)
                .ok_or(DmError::Blockwise("offset past the body"))?;
            let more = end < total;
            let num = u32::try_from(offset / size)
                .ok()
                .filter(|n| *n <= MAX_NUM)
                .ok_or(DmError::Blockwise("body needs more than 2^20 blocks"))?;
            let opt = BlockOpt::new(num, more, szx).map_err(|_| DmError::Blockwise("bad block"))?;
            let mut r = req.clone();
            r.add_option(CoapOption::Block1, opt.encode());
            if num == 0 {
                r.add_option(
                    CoapOption::Size1,
                    uint_option(u32::try_from(total).unwrap_or(u32::MAX)),
                );
            }
            r.payload = chunk.to_vec();
            let resp = self.endpoint.request(self.peer, r, self.timeout).await?;
            let code = resp.header.code;
            if code == MessageClass::Response(ResponseType::RequestEntityTooLarge) {
                match renegotiate(&resp, szx, total) {
                    // Resend from the same offset (aligned: sizes only shrink by powers of two).
                    Some(s) => {
                        szx = s;
                        continue;
                    }
                    None => return Ok(DmResponse::from_packet(&resp, resp.payload.clone())),
                }
            }
            let success = u8::from(code) >> 5 == 2;
            if !success || !more {
                return self.complete_block2(req, resp).await;
            }
            let ack = block_option(&resp, CoapOption::Block1)?.ok_or(DmError::Blockwise(
                "device ignored Block1 on an intermediate block",
            ))?;
            if ack.num != num {
                return Err(DmError::Blockwise("device acknowledged a different block"));
            }
            offset = end;
            // Late negotiation (RFC 7959 2.3): a smaller SZX in the answer applies from now on.
            if ack.szx < szx {
                szx = ack.szx;
            }
        }
    }
}

/// The smaller SZX a 4.13 asks for: its Block1 SZX, else one fitting Size1; `None` if neither
/// is smaller than the current size (the body itself is too large for the device).
fn renegotiate(resp: &Packet, szx: u8, total: usize) -> Option<u8> {
    if let Ok(Some(b)) = block_option(resp, CoapOption::Block1) {
        if b.szx < szx {
            return Some(b.szx);
        }
    }
    let size1 = resp
        .get_first_option(CoapOption::Size1)
        .and_then(|v| decode_uint_option(v).ok())?;
    let size1 = usize::try_from(size1).ok()?;
    if size1 >= 16 && size1 < (1usize << (szx + 4)) && size1 < total {
        Some(BlockOpt::szx_for_size(size1))
    } else {
        None
    }
}
