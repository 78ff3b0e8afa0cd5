//! Hosts of the suite's own: network namespaces (`ip netns`), each with a veth pair into a bridge
//! on this machine, in a private subnet (`10.213.X.0/24`). The bridge's address stands for "the
//! broker's host": brokers are reached there, through [`FaultyLink`](super::link::FaultyLink)
//! proxies to their loopback ports (or, for a Redis Cluster, nodes that listen on it). Cutting a
//! host's link is `ip link set … down` on its end of the pair: packets are dropped and
//! connections hang, as when a cable is pulled. Everything is removed when the network is
//! dropped; nothing leaves this machine.

use std::process::{Command, Stdio};

/// A bridge and hosts on it.
#[derive(Debug)]
pub(super) struct Network {
    bridge: String,
    /// The namespaces, and the bridge side of each one's link.
    hosts: Vec<(String, String)>,
    gateway: String,
}

/// Runs `ip` with `args`.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Network {
    /// Makes the bridge and `count` hosts (needs root, as `ip netns add` does).
    pub(super) fn create(count: usize) -> Result<Self, String> {
        let tag = format!("{:04x}", fastrand::u16(..));
        let subnet = fastrand::u8(1..=250);
        let mut network = Self {
            bridge: format!("rmqb{tag}"),
            hosts: Vec::new(),
            gateway: format!("10.213.{subnet}.1"),
        };
        let bridge = network.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", network.gateway),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for k in 0..count {
            let (host, outside, inside) = (
                format!("rmqh{tag}{k}"),
                format!("rmqv{tag}{k}"),
                format!("rmqp{tag}{k}"),
            );
            ip(&["netns", "add", &host])?;
            network.hosts.push((host.clone(), outside.clone()));
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", &host])?;
            ip(&["link", "set", &outside, "master", &bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let address = format!("10.213.{subnet}.{}/24", 10 + k);
            let inside_ns = ["netns", "exec", &host, "ip"];
            ip(&[&inside_ns[..], &["addr", "add", &address, "dev", &inside]].concat())?;
            ip(&[&inside_ns[..], &["link", "set", &inside, "up"]].concat())?;
            ip(&[&inside_ns[..], &["link", "set", "lo", "up"]].concat())?;
        }
        Ok(network)
    }

    /// The namespace of host `k`.
    pub(super) fn host(&self, k: usize) -> &str {
        &self.hosts[k].0
    }

    /// The bridge's address: where the hosts reach the brokers.
    pub(super) fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Cuts host `k`'s link (`up: false`) or restores it.
    pub(super) fn link(&self, k: usize, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        ip(&["link", "set", &self.hosts[k].1, state])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for (host, outside) in &self.hosts {
            let _ = ip(&["link", "del", outside]);
            let _ = ip(&["netns", "del", host]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
