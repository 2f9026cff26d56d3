//! Test LwM2M server shim: drives firmware updates the way Eclipse Leshan and commercial
//! device-management servers do.

#![warn(missing_docs)]
