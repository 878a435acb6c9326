//! End-to-end tests, one binary: the AWS adapters and the functions' handlers against the local
//! AWS endpoint (moto server, started by infra/test.sh) and the TDS test server.

mod adapters;
mod bounded;
mod events;
mod local_stack;
mod real_server;
mod restore;
mod robustness;
mod template;
mod test_server;
mod validate_upload;
