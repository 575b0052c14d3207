//! The edns controller: authoritative GSLB responder, control endpoint and
//! (with XDP) the manager of the data plane's maps.

pub mod cluster;
pub mod config;
pub mod control;
pub mod tasks;
pub mod live;
pub mod cookies;
pub mod dns;
pub mod groups;
pub mod health;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod rrl;
pub mod select;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod udp;
pub mod xdp;
pub mod zone;
