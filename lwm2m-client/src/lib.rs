//! LwM2M client: a sans-IO engine (bytes and time in; bytes, timer deadlines and events out)
//! and the thin tokio shell that drives it over UDP.

#![warn(missing_docs)]
