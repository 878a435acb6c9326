//! The TDS layer: a loopback TCP server that speaks enough TDS 7.4 for tiberius, decoding
//! batches and RPCs into [`Request`]s and encoding [`Reply`]s.
//!
//! # Layout
//! - `types`: values, requests, replies, sessions.
//! - `wire`: packet framing.
//! - `decode`: PRELOGIN, LOGIN7, SQL batch, RPC (`sp_executesql`) and parameter decoding.
//! - `encode`: PRELOGIN reply, login tokens, result sets, messages and DONE tokens.
//! - `server`: the accept loop, the per-connection task, the [`Handler`] trait and fault hooks.

pub mod decode;
pub mod encode;
pub mod server;
pub mod types;
pub mod wire;

pub use encode::ServerVersion;
pub use server::{ConnectionError, FaultTiming, Handler, ServerHandle, StartError, TdsServer};
pub use types::{
    Column, Reply, ReplyPart, Request, RequestKind, ResultSet, ServerMessage, Session, SqlType,
    Value,
};
