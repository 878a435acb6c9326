//! Integration tests: a real tiberius client against the TDS server over TCP on loopback.

mod common;
mod emulator;
mod protocol;
