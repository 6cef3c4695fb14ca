//! webswitch's rules crate: the configuration model (what the operator writes in the
//! JSON config, parsed strictly — unknown fields are errors — and validated with errors
//! that name the field, so a bad config never half-applies), HTTP request inspection,
//! content rules, and backend pools with their schedulers.
//!
//! A request's way through this crate, on a worker core:
//! [`http::head_end`] finds the end of the head in the reassembly buffer,
//! [`http::parse_request`] parses it (or says which 4xx/5xx to answer, see
//! [`http::error_response`]), [`Router::route`] picks the pool by content, and
//! [`Pools::pick`] the backend.
#![forbid(unsafe_code)]

pub mod answer;
pub mod beat;
pub mod config;
pub mod forward;
pub mod framing;
pub mod http;
pub mod matcher;
pub mod path;
pub mod pool;

pub use answer::Action;
pub use config::{Cidr, Config, ConfigError};
pub use http::{error_response, head_end, parse_request, HttpError, RequestHead};
pub use matcher::{PoolId, Router};
pub use pool::{BackendId, Pools};
