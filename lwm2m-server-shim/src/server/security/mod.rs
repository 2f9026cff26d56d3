//! Security: which PSK identity (or certificate) may register as which endpoint (the store),
//! and the check of every request to the registration interface against it (the authorizer).

pub mod authorizer;
pub mod store;
