//! Support for tests that run the binary as a child process.
#![allow(dead_code)]

pub mod fsync_fault;
pub mod process;
pub mod store_tables;
