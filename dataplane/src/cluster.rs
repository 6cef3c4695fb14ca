//! webswitch as one of several instances behind routers that spread a VIP's flows over
//! them by ECMP (issue 17). What lives here runs on the main thread, beside the workers:
//! `announce` tells the appliance's routing daemon to announce or withdraw the VIPs;
//! `members` keeps who else serves them (their beats) and the connection-ownership
//! tables built from that.
//! The packet side of the cluster (the exception path that carries the daemon's BGP and
//! BFD, `ports[].exception`) is in the worker's loop and `l2l3`.
pub mod adopted_steer;
pub mod announce;
pub mod members;
pub mod store;
pub mod takeover;
pub mod workload;
