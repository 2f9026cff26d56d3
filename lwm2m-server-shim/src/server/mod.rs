//! The LwM2M server core, as Leshan's server module shows it: the shared state ([`shim`]), the
//! event bus ([`events`]), the discovery resources `/` and `/.well-known/core` ([`discovery`]),
//! requests to a registered device ([`requests`]), observations ([`observations`]), the presence of
//! queue-mode clients ([`presence`]), the registration interface and its store ([`registration`])
//! and the security store with the `/rd` authorizer ([`security`]). It knows no HTTP and no
//! firmware jobs: those build on it.

pub mod discovery;
pub mod events;
pub mod observations;
pub mod presence;
pub mod qblock1_push;
pub mod readings;
pub mod registration;
pub mod requests;
pub mod security;
pub mod shim;
