//! TDS test server (placeholder).
