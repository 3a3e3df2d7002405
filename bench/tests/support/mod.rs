//! Test support for the load tool's integration tests.

pub mod mini_server;
