//! Property tests placeholder.
