//! The LwM2M server core, as Leshan's server module shows it: the shared state ([`shim`]),
//! the event bus ([`events`]), requests to a registered device ([`requests`]), the
//! registration interface and its store ([`registration`]) and the security store
//! ([`security`]).

pub mod events;
pub mod registration;
pub mod requests;
pub mod security;
pub mod shim;
