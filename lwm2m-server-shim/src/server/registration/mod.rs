//! Registrations (LwM2M core TS section 6.2): the `/rd` interface, the store, the registered
//! object links, binding modes and block-wise Register/Update reassembly.

pub mod binding;
pub mod block1;
pub mod interface;
pub mod object_links;
pub mod store;
