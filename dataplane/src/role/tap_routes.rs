//! The host's routes through the agent's TAP outlive a clean stop.
//!
//! The backend host's kernel reaches the network only through the TAP the agent attaches
//! to (`kernel.device`, `net_tap0,iface=NAME`): the operator gives that interface the
//! host's address and routes, the default route to the backends' router included. When
//! the agent stops cleanly, `net_tap` clears the interface's UP flag and the kernel deletes
//! every route through it (the addresses stay), so the next agent would start in front of
//! a host that answers nothing. The agent reads those routes before the EAL attaches to
//! the TAP and, once its ports are closed, brings the interface up and puts them back:
//! a restarted agent finds the host as it was. (A SIGKILLed agent leaves the interface up
//! with its routes.)
//!
//! Control path only, at start and stop: the routes are read and written with iproute2
//! (`ip`), which every host that runs the agent has.
use std::process::Command;

/// The routes through one interface, as `ip -o -4 route show dev NAME` printed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRoutes {
    iface: String,
    /// `ip route replace` arguments, one route each, `dev NAME` included.
    routes: Vec<Vec<String>>,
}

/// The interface a `net_tap` device argument names (`iface=`), if it names one.
pub fn iface_of(device: &str) -> Option<&str> {
    if !device.starts_with("net_tap") {
        return None;
    }
    device
        .split(',')
        .find_map(|kv| kv.strip_prefix("iface="))
        .filter(|s| !s.is_empty())
}

/// The `ip route replace` arguments that put back a route `ip -o -4 route show dev IFACE`
/// printed as `line`; `None` for what the kernel makes itself (the prefix routes of the
/// interface's addresses, `proto kernel`), which come back with the address when the
/// interface is up.
pub fn replace_args(line: &str, iface: &str) -> Option<Vec<String>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.is_empty() || words.windows(2).any(|w| w == ["proto", "kernel"]) {
        return None;
    }
    // State flags `ip` prints but does not take.
    let mut args: Vec<String> = words
        .iter()
        .filter(|w| !matches!(**w, "linkdown" | "dead" | "offload" | "trap" | "rt_offload"))
        .map(|w| w.to_string())
        .collect();
    args.extend(["dev".to_string(), iface.to_string()]);
    Some(args)
}

impl TapRoutes {
    /// The routes through `iface` now (the main table, IPv4). `None` when the interface
    /// does not exist yet (`net_tap` will create it, without routes) or `ip` cannot run.
    pub fn save(iface: &str) -> Option<TapRoutes> {
        let out = Command::new("ip")
            .args(["-o", "-4", "route", "show", "dev", iface])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let routes = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| replace_args(l, iface))
            .collect();
        Some(TapRoutes {
            iface: iface.to_string(),
            routes,
        })
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// After the ports closed: the interface up again and every saved route back (a route
    /// still there is replaced by itself). Returns how many routes could not be put back;
    /// each failure is logged.
    pub fn restore(&self) -> usize {
        let up = Command::new("ip")
            .args(["link", "set", "dev", &self.iface, "up"])
            .status();
        if !matches!(up, Ok(s) if s.success()) {
            tracing::warn!(iface = %self.iface, "could not set the kernel's TAP up again after the stop");
            return self.routes.len();
        }
        let mut failed = 0;
        for r in &self.routes {
            let ok = Command::new("ip")
                .args(["route", "replace"])
                .args(r)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                failed += 1;
                tracing::warn!(iface = %self.iface, route = %r.join(" "), "could not put a route through the kernel's TAP back");
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tap_is_found_in_the_device_arguments() {
        assert_eq!(
            iface_of("net_tap0,iface=wsa0,mac=02:00:0a:01:01:0b"),
            Some("wsa0")
        );
        assert_eq!(
            iface_of("net_tap0,mac=02:00:0a:01:01:0b,iface=k1"),
            Some("k1")
        );
        assert_eq!(iface_of("net_tap0"), None);
        assert_eq!(iface_of("net_tap0,iface="), None);
        assert_eq!(iface_of("net_af_packet0,iface=eth0"), None);
    }

    #[test]
    fn routes_the_operator_made_are_put_back_and_the_kernels_left_to_it() {
        let lines = "default via 10.99.1.254 proto static linkdown \n\
                     10.99.1.0/24 proto kernel scope link src 10.99.1.11 \n\
                     10.7.0.0/16 via 10.99.1.254 metric 5 \n";
        let got: Vec<Vec<String>> = lines
            .lines()
            .filter_map(|l| replace_args(l, "wsa0"))
            .collect();
        let want = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                want("default via 10.99.1.254 proto static dev wsa0"),
                want("10.7.0.0/16 via 10.99.1.254 metric 5 dev wsa0"),
            ]
        );
        assert_eq!(replace_args("   ", "wsa0"), None);
    }
}
