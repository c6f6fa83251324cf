//! Brokers on a network of their own: each node in a Linux network namespace, joined to the
//! others (and to the tests' own namespace, where the clients run) by a bridge, so that one can
//! be cut off from the other brokers while clients still reach it. Needs root (CAP_NET_ADMIN)
//! and iproute2's `ip`.

use std::process::Command;

/// A bridge, one namespace per node, and a veth pair joining each namespace to the bridge.
pub(crate) struct Network {
    /// Third byte of the network's addresses, `10.213.<k>.0/24`; names carry it too.
    k: u32,
    n: usize,
}

/// Runs `ip` with `args`, failing the test if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2's ip is installed");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Network {
    /// Whether this machine lets the tests make network namespaces (root, with `ip`).
    pub(crate) fn available() -> bool {
        let probe = format!("fshprobe{}", std::process::id() % 100_000);
        let made = Command::new("ip").args(["netns", "add", &probe]).output().is_ok_and(|o| o.status.success());
        if made {
            let _ = Command::new("ip").args(["netns", "del", &probe]).output();
        }
        made
    }

    /// A network of `n` nodes.
    pub(crate) fn new(n: usize) -> Network {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = (std::process::id() + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % 200 + 20;
        let network = Network { k, n };
        let bridge = network.bridge();
        // Left over from a run that was killed: cleared first.
        network.remove();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("10.213.{k}.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for node in 1..=n {
            let (ns, veth) = (network.namespace(node), format!("fsv{k}n{node}"));
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            ip(&["link", "set", &veth, "master", &bridge]);
            ip(&["link", "set", &veth, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", network.ip(node)), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        network
    }

    fn bridge(&self) -> String {
        format!("fsb{}", self.k)
    }

    /// The namespace of `node` (from 1).
    pub(crate) fn namespace(&self, node: usize) -> String {
        format!("fsh{}n{node}", self.k)
    }

    /// The address of `node` (from 1).
    pub(crate) fn ip(&self, node: usize) -> String {
        format!("10.213.{}.{}", self.k, 10 + node)
    }

    /// Cuts `node` off from every other node, both ways (packets between them are dropped, as
    /// by a failed switch port), leaving it reachable from the clients' namespace.
    pub(crate) fn isolate(&self, node: usize) {
        self.routes(node, "add");
    }

    /// Undoes [`Network::isolate`].
    pub(crate) fn heal(&self, node: usize) {
        self.routes(node, "del");
    }

    fn routes(&self, node: usize, action: &str) {
        for other in (1..=self.n).filter(|o| *o != node) {
            ip(&["-n", &self.namespace(node), "route", action, "blackhole", &format!("{}/32", self.ip(other))]);
            ip(&["-n", &self.namespace(other), "route", action, "blackhole", &format!("{}/32", self.ip(node))]);
        }
    }

    fn remove(&self) {
        for node in 1..=self.n {
            let _ = Command::new("ip").args(["netns", "del", &self.namespace(node)]).output();
            let _ = Command::new("ip").args(["link", "del", &format!("fsv{}n{node}", self.k)]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).output();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}
