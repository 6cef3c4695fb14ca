//! What each port answers for: its MAC, its own addresses and the VIPs reached on it.
use std::net::Ipv4Addr;
use std::sync::Arc;

use rules::config::{Config, PortRole};
use rules::Cidr;
use tcpstate::wire::MacAddr;

use crate::cluster::takeover::Takeover;

/// Why a destination address is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// One of the switch's own addresses on the port.
    Own,
    /// A virtual IP served on the port (index into `vips`).
    Vip(usize),
}

#[derive(Debug, Clone)]
pub struct PortAddrs {
    pub name: String,
    pub role: PortRole,
    pub mac: MacAddr,
    pub own: Vec<Cidr>,
    pub vips: Vec<(Ipv4Addr, Vec<u16>)>,
    /// Per VIP (as `vips`): every request of a connection is routed (presplice mode).
    pub per_request: Vec<bool>,
    pub gateway: Option<Ipv4Addr>,
    /// The UDP port of the handoff agents' beats on the port's own addresses
    /// (`handoff.agent_port`).
    pub agent_port: u16,
    /// Handoff VIPs whose agents may answer the switch on this (backend-facing) port:
    /// a TCP segment from one of them to a client is an agent's control reply.
    pub agent_vips: Vec<Ipv4Addr>,
    /// The port has an exception path (`ports[].exception`): frames that are not the
    /// switch's go to the host's kernel instead of being dropped.
    pub exception: bool,
    /// The UDP port of the cluster members' beats on this port's own addresses (0: the
    /// members do not meet on this port).
    pub cluster_port: u16,
    /// In a cluster: addresses of gone members this instance answers for
    /// (`cluster::takeover`), checked only for frames to none of the port's own.
    pub takeover: Option<Arc<Takeover>>,
    /// In a cluster: adopted connections' backend tuples steered against the port rule
    /// (`cluster::adopted_steer`), checked for TCP to our own (or taken-over) addresses.
    pub adopted_steer: Option<Arc<crate::cluster::adopted_steer::AdoptedSteer>>,
}

impl PortAddrs {
    /// Builds the table of every port, given each port's MAC (in config order).
    pub fn from_config(config: &Config, macs: &[MacAddr]) -> Vec<PortAddrs> {
        config
            .ports
            .iter()
            .zip(macs)
            .map(|(p, mac)| PortAddrs {
                name: p.name.clone(),
                role: p.role,
                mac: *mac,
                own: p.addresses.clone(),
                vips: config
                    .vips
                    .iter()
                    .filter(|v| v.port == p.name)
                    .map(|v| (v.address, v.tcp_ports.clone()))
                    .collect(),
                per_request: config
                    .vips
                    .iter()
                    .filter(|v| v.port == p.name)
                    .map(|v| v.mode == rules::config::VipMode::Presplice)
                    .collect(),
                gateway: p.gateway,
                agent_port: config.handoff.agent_port,
                agent_vips: if p.role == PortRole::Client {
                    Vec::new()
                } else {
                    config
                        .vips
                        .iter()
                        .filter(|v| v.mode == rules::config::VipMode::Handoff)
                        .map(|v| v.address)
                        .collect()
                },
                exception: p.exception.is_some(),
                cluster_port: match config.cluster.me(&config.ports) {
                    Some((_, port)) if config.ports[port].name == p.name => config.cluster.port,
                    _ => 0,
                },
                takeover: None,
                adopted_steer: None,
            })
            .collect()
    }

    /// Whether `ip` is ours on this port.
    #[inline]
    pub fn local(&self, ip: Ipv4Addr) -> Option<Local> {
        if self.own.iter().any(|c| c.addr == ip) {
            return Some(Local::Own);
        }
        match self.vips.iter().position(|(v, _)| *v == ip) {
            Some(v) => Some(Local::Vip(v)),
            None if self.takeover.as_ref().is_some_and(|t| t.accepts(ip)) => Some(Local::Own),
            None => None,
        }
    }

    /// Whether the port answers ARP for `ip`: its own addresses, its VIPs, and the
    /// addresses of gone members it took over (not those it only still accepts).
    pub fn answers_arp(&self, ip: Ipv4Addr) -> bool {
        self.own.iter().any(|c| c.addr == ip)
            || self.vips.iter().any(|(v, _)| *v == ip)
            || self.takeover.as_ref().is_some_and(|t| t.answers_arp(ip))
    }

    /// Whether `ip` is on one of the port's subnets (a neighbour we may learn).
    #[inline]
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.own.iter().any(|c| c.contains(ip))
    }

    /// Every address the port answers ARP for: own addresses, then VIPs.
    pub fn all_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.own
            .iter()
            .map(|c| c.addr)
            .chain(self.vips.iter().map(|(v, _)| *v))
    }
}
