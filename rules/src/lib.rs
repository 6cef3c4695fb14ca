//! The configuration model of webswitch: what the operator writes in the JSON config,
//! parsed strictly (unknown fields are errors) and validated with errors that name the
//! field, so a bad config never half-applies.
#![forbid(unsafe_code)]

pub mod config;

pub use config::{Cidr, Config, ConfigError};
