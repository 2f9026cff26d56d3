//! Security information: which PSK identity (or certificate) may register as which endpoint.

pub mod store;
