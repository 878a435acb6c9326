//! The services, the top layer of the core: what the functions and the command line call. Each
//! works over the ports (no AWS, no tiberius) and writes its records through [`retry`].

pub mod cutover;
pub mod files;
pub mod pace;
pub mod restore;
pub mod retry;
pub mod validate;
