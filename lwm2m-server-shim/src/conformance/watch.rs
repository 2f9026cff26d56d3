//! One observation held by a case (RFC 7641): the notifications arrive here with their arrival
//! time, decoded, so a case can judge what was notified and when (pmin, pmax); it ends with an
//! active cancel (GET with Observe = 1 and the same token, RFC 7641 section 3.6) or, when the
//! case drops it, a passive one (the next notification is answered with a Reset).

use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType};
use lwm2m_client::codec::{ContentFormat, Node, Path};
use tokio::time::Instant;

use super::context::{decode, Ctx};
use super::verdict::{Abort, Step};
use crate::coap::endpoint::{CoapEndpoint, ObservationStream};
use crate::server::registration::object_links::ObjectLinks;
use crate::server::requests::{DeviceHandle, DmResponse};
use crate::server::shim::Shim;

/// A notification as it arrived.
pub(crate) struct Notified {
    /// When it arrived.
    pub at: Instant,
    /// Its content, or why it could not be decoded.
    pub node: Result<Node, String>,
}

/// The answer to an active cancel.
pub(crate) struct CancelAnswer {
    /// Its code, `c.dd`.
    pub code: String,
    /// Whether the code is 2.xx.
    pub success: bool,
    /// Whether it carried the Observe option (the device kept the observation).
    pub still_observed: bool,
}

/// A CoAP code byte as `c.dd`.
fn code_string(raw: u8) -> String {
    format!("{}.{:02}", raw >> 5, raw & 0x1f)
}

/// An established observation.
pub(crate) struct Watch {
    shim: Arc<Shim>,
    device: DeviceHandle,
    path: Path,
    accept: Option<ContentFormat>,
    stream: ObservationStream,
    /// When the observation was established.
    pub since: Instant,
}

/// The outcome of an Observe request.
pub(crate) enum Observed {
    /// The device accepted: its first answer and the observation.
    Established(DmResponse, Watch),
    /// It answered without the Observe option (or with an error): no observation.
    Refused(DmResponse),
}

impl Watch {
    /// Sends an Observe (GET, Observe = 0) for `path`.
    pub async fn start(ctx: &Ctx<'_>, path: Path, accept: Option<ContentFormat>) -> Step<Observed> {
        let (device, first, stream) = ctx.observe(&path, accept).await?;
        Ok(match stream {
            Some(stream) => Observed::Established(
                first,
                Watch {
                    shim: ctx.shim.clone(),
                    device,
                    path,
                    accept,
                    stream,
                    since: Instant::now(),
                },
            ),
            None => Observed::Refused(first),
        })
    }

    /// The next notification within `within`; `None` when none came.
    pub async fn next(&mut self, within: Duration) -> Option<Notified> {
        let notification = tokio::time::timeout(within, self.stream.next())
            .await
            .ok()??;
        let at = Instant::from_std(notification.received);
        let packet = notification.packet;
        let node = match self
            .device
            .complete_notification(&self.path, self.accept, packet)
            .await
        {
            Ok(r) if r.is_success() => decode(&self.path, &r),
            Ok(r) => Err(format!("notification with code {}", r.code_string())),
            Err(e) => Err(format!("incomplete notification: {e}")),
        };
        Some(Notified { at, node })
    }

    /// Every notification within `within`.
    pub async fn collect(&mut self, within: Duration) -> Vec<Notified> {
        let until = Instant::now() + within;
        let mut out = Vec::new();
        while let Some(n) = self
            .next(until.saturating_duration_since(Instant::now()))
            .await
        {
            out.push(n);
        }
        out
    }

    fn endpoint(&self, ctx: &Ctx<'_>) -> Step<CoapEndpoint> {
        let reg = ctx.registration()?;
        let e = if ctx.shim.is_secure(&reg) {
            ctx.shim.coaps()
        } else {
            ctx.shim.coap()
        };
        e.cloned()
            .ok_or_else(|| Abort::Runner("no CoAP endpoint for the device's transport".into()))
    }

    /// Active cancel: GET with Observe = 1 and the observation's token. Keeps listening on
    /// the token, so a notification after the cancel is still seen.
    pub async fn cancel(&mut self, ctx: &Ctx<'_>) -> Step<CancelAnswer> {
        ctx.until_awake().await?;
        let reg = ctx.registration()?;
        let mut req = Packet::new();
        req.header.code = MessageClass::Request(RequestType::Get);
        let root = ObjectLinks::parse(&reg.object_links).root_path();
        for seg in root
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .chain(self.path.segments())
        {
            req.add_option(CoapOption::UriPath, seg.into_bytes());
        }
        req.add_option(CoapOption::Observe, vec![1]);
        if let Some(cf) = self.accept {
            req.add_option(CoapOption::Accept, cf.to_option());
        }
        let endpoint = self.endpoint(ctx)?;
        let op = format!("cancel Observe {}", self.path);
        let p = endpoint
            .request_with_token(reg.address, req, ctx.timeout(), self.stream.token())
            .await
            .map_err(|e| Abort::from_dm(&op, ctx.timeout(), e.into()))?;
        Ok(CancelAnswer {
            code: code_string(u8::from(p.header.code)),
            success: u8::from(p.header.code) >> 5 == 2,
            still_observed: p.get_first_option(CoapOption::Observe).is_some(),
        })
    }
}

impl Drop for Watch {
    /// Passive cancel: the next notification is answered with a Reset.
    fn drop(&mut self) {
        for e in [self.shim.coap(), self.shim.coaps()].into_iter().flatten() {
            e.forget_observation(self.stream.token());
        }
    }
}
