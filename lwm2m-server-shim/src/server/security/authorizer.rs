//! Who may act on a registration (Leshan's `DefaultAuthorizer`): over coaps the authenticated
//! identity must be bound to the endpoint it registers or updates as; over plain coap,
//! endpoints with security information and registrations made over coaps are off limits
//! (LwM2M core TS section 7.2: a client with security info uses the secure channel).

use std::net::SocketAddr;

use coap_lite::{Packet, ResponseType};

use crate::coap::dtls_socket::PeerIdentity;
use crate::coap::message::{response, uri_query};
use crate::server::registration::store::RegistrationStore;
use crate::server::security::store::SecurityStore;

/// Decides requests to the registration interface (`/rd`).
pub struct RdAuthorizer<'a> {
    /// Current registrations (an Update or De-register names one by id).
    pub registrations: &'a dyn RegistrationStore,
    /// Security information by endpoint and PSK identity.
    pub security: &'a dyn SecurityStore,
}

impl RdAuthorizer<'_> {
    /// Checks `request` (Uri-Path `path`) from `peer`, which came over coaps authenticated as
    /// `identity` when `secure`, else over plain coap. `Err` is the 4.03 to answer.
    pub fn check(
        &self,
        request: &Packet,
        path: &[String],
        peer: SocketAddr,
        identity: Option<&PeerIdentity>,
        secure: bool,
    ) -> Result<(), Packet> {
        let forbidden = || Err(response(ResponseType::Forbidden));
        let target = match path {
            [_rd] => uri_query(request)
                .into_iter()
                .find(|(k, _)| k == "ep")
                .and_then(|(_, v)| v),
            [_rd, id, ..] => {
                let reg = self.registrations.get_by_id(id);
                if reg.as_ref().is_some_and(|r| !secure && r.secure) {
                    return forbidden();
                }
                reg.map(|r| r.endpoint)
            }
            [] => None,
        };
        if secure {
            let allowed = match identity {
                Some(PeerIdentity::Psk(id)) => {
                    self.security.get_by_identity(id).map(|i| i.endpoint)
                }
                Some(PeerIdentity::Certificate(cn)) => Some(cn.clone()),
                None => None,
            };
            let Some(allowed) = allowed else {
                // Authenticated, but the identity was removed from the store since.
                return forbidden();
            };
            if target.is_some_and(|ep| ep != allowed) {
                tracing::warn!(%peer, ?identity, "identity tried another endpoint");
                return forbidden();
            }
        } else if target.is_some_and(|ep| self.security.get_by_endpoint(&ep).is_some()) {
            return forbidden();
        }
        Ok(())
    }
}
