//! Test support: local AWS endpoint harness and the TDS test server.
