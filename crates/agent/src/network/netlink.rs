//! A minimal rtnetlink client for the per-container plumbing: a veth pair whose peer is
//! created in the container's namespace, the host end on a bridge, and inside the MAC, the
//! address, the link state and the default route. It replaces the two `ip -batch` processes
//! every networked container cost (≈ 3 ms each alone, several times that while other
//! containers start). Network creation and clean-up, which are rare, stay with `ip`.
//!
//! Messages are built by hand (the layouts of `linux/rtnetlink.h`, `linux/if_link.h`,
//! `linux/veth.h`); every request asks for an acknowledgement, and a refusal comes back as
//! the kernel's errno.

use nix::sched::CloneFlags;
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_IFALIAS: u16 = 20;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const IFF_UP: u32 = 0x1;
const AF_INET: u8 = 2;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// A route netlink socket, bound to the network namespace it was opened in.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// What to change on a link (`ip link set NAME ...`).
#[derive(Debug, Default)]
pub struct LinkChange<'a> {
    pub master: Option<u32>,
    pub alias: Option<&'a str>,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
}

impl Netlink {
    /// A socket in this thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// A socket in the network namespace of process `pid`: opened on a short-lived thread
    /// that enters it (a socket stays in the namespace it was made in), so no thread of the
    /// agent changes namespace.
    pub fn open_in(pid: i32) -> io::Result<Netlink> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)?;
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        })
    }

    /// `ip link add HOST mtu M type veth peer name PEER mtu M [address MAC] netns PID`.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: u32,
        peer_mac: Option<[u8; 6]>,
        peer_pid: i32,
    ) -> io::Result<()> {
        let mut peer_msg = ifinfomsg(0, 0, 0);
        attr_str(&mut peer_msg, IFLA_IFNAME, peer);
        attr(&mut peer_msg, IFLA_MTU, &mtu.to_ne_bytes());
        if let Some(mac) = peer_mac {
            attr(&mut peer_msg, IFLA_ADDRESS, &mac);
        }
        attr(
            &mut peer_msg,
            IFLA_NET_NS_PID,
            &(peer_pid as u32).to_ne_bytes(),
        );
        let mut data = Vec::new();
        attr(&mut data, VETH_INFO_PEER, &peer_msg);
        let mut info = Vec::new();
        attr_str(&mut info, IFLA_INFO_KIND, "veth");
        attr(&mut info, IFLA_INFO_DATA, &data);
        let mut msg = ifinfomsg(0, 0, 0);
        attr_str(&mut msg, IFLA_IFNAME, host);
        attr(&mut msg, IFLA_MTU, &mtu.to_ne_bytes());
        attr(&mut msg, IFLA_LINKINFO, &info);
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &msg)
    }

    /// `ip link set NAME [master M] [alias A] [address MAC] [up]`.
    pub fn set_link(&mut self, name: &str, c: &LinkChange<'_>) -> io::Result<()> {
        let flags = if c.up { IFF_UP } else { 0 };
        let mut msg = ifinfomsg(0, flags, if c.up { IFF_UP } else { 0 });
        attr_str(&mut msg, IFLA_IFNAME, name);
        if let Some(m) = c.master {
            attr(&mut msg, IFLA_MASTER, &m.to_ne_bytes());
        }
        if let Some(a) = c.alias {
            // As iproute2 sends it: without a terminating NUL.
            attr(&mut msg, IFLA_IFALIAS, a.as_bytes());
        }
        if let Some(mac) = c.mac {
            attr(&mut msg, IFLA_ADDRESS, &mac);
        }
        self.request(RTM_NEWLINK, 0, &msg)
    }

    /// The index of link `name`.
    pub fn index(&mut self, name: &str) -> io::Result<u32> {
        let mut msg = ifinfomsg(0, 0, 0);
        attr_str(&mut msg, IFLA_IFNAME, name);
        let reply = self.exchange(RTM_GETLINK, 0, &msg)?;
        // The answer is an RTM_NEWLINK: ifinfomsg's index at bytes 4..8 of its body.
        reply
            .get(4..8)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| io::Error::other("short RTM_NEWLINK answer"))
    }

    /// `ip addr add ADDR/PREFIX dev INDEX`.
    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut msg = vec![AF_INET, prefix, 0, RT_SCOPE_UNIVERSE];
        msg.extend_from_slice(&index.to_ne_bytes());
        attr(&mut msg, IFA_LOCAL, &addr.octets());
        attr(&mut msg, IFA_ADDRESS, &addr.octets());
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &msg)
    }

    /// `ip route add default via GW dev INDEX`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> io::Result<()> {
        let mut msg = vec![
            AF_INET,
            0, // dst_len: default
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ];
        msg.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut msg, RTA_GATEWAY, &gateway.octets());
        attr(&mut msg, RTA_OIF, &index.to_ne_bytes());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &msg)
    }

    /// Sends a request and waits for its acknowledgement.
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        self.exchange(kind, flags | NLM_F_ACK, body).map(|_| ())
    }

    /// Sends a request; returns the body of the answer (empty for an acknowledgement), or the
    /// errno the kernel refused it with.
    fn exchange(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<Vec<u8>> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        sendto(
            self.fd.as_raw_fd(),
            &msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let mut at = 0;
            while at + 16 <= n {
                let h = &buf[at..];
                let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let ty = u16::from_ne_bytes([h[4], h[5]]);
                let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if len < 16 || at + len > n {
                    return Err(io::Error::other("malformed netlink answer"));
                }
                let payload = &buf[at + 16..at + len];
                at += align(len);
                if seq != self.seq {
                    continue; // an answer to an earlier request
                }
                return match ty {
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .ok_or_else(|| io::Error::other("short netlink error"))?;
                        if code == 0 {
                            Ok(Vec::new())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        }
                    }
                    NLMSG_DONE => Ok(Vec::new()),
                    _ => Ok(payload.to_vec()),
                };
            }
        }
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// `struct ifinfomsg` for `AF_UNSPEC`.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut m = vec![0u8, 0, 0, 0];
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&change.to_ne_bytes());
    m
}

/// Appends an attribute (`struct rtattr` + data, padded to 4 bytes).
fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align(buf.len()), 0);
}

/// A string attribute with its terminating NUL.
fn attr_str(buf: &mut Vec<u8>, kind: u16, s: &str) {
    let mut d = s.as_bytes().to_vec();
    d.push(0);
    attr(buf, kind, &d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested_as_the_kernel_reads_them() {
        let mut b = Vec::new();
        attr_str(&mut b, IFLA_IFNAME, "eth0");
        // len 4 + 5 ("eth0\0") = 9, padded to 12.
        assert_eq!(b.len(), 12);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 9);
        assert_eq!(&b[4..9], b"eth0\0");
        let mut outer = Vec::new();
        attr(&mut outer, IFLA_LINKINFO, &b);
        assert_eq!(outer.len(), 16);
        assert_eq!(u16::from_ne_bytes([outer[0], outer[1]]), 16);
        assert_eq!(ifinfomsg(7, 1, 1).len(), 16);
    }

    /// Root only: plumbs a veth pair into a fresh namespace and reads it back with `ip`.
    #[test]
    fn a_veth_pair_is_plumbed_into_another_namespace() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root to create namespaces and links (CI runs as root)"
        );
        let ns = format!("swnl{}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ip netns add (iproute2 is installed in CI)");
        struct Cleanup(String, String);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", &self.1])
                    .status();
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }
        let host = format!("swnlh{}", std::process::id() % 100_000);
        let _c = Cleanup(ns.clone(), host.clone());
        // A process in the namespace, for its pid (as a container's init would be).
        let mut sleeper = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "sleep", "30"])
            .spawn()
            .unwrap();
        let pid = sleeper.id() as i32;
        let ns_of = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
        for _ in 0..100 {
            if ns_of(pid) != ns_of(std::process::id() as i32) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut nl = Netlink::open().unwrap();
        nl.add_veth(&host, "eth0", 1400, Some([0x02, 0x42, 10, 9, 0, 2]), pid)
            .unwrap();
        let again = nl.add_veth(&host, "eth0", 1400, None, pid).unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::EEXIST), "{again}");
        nl.set_link(
            &host,
            &LinkChange {
                alias: Some("swarm-test-alias"),
                up: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut inside = Netlink::open_in(pid).unwrap();
        let idx = inside.index("eth0").unwrap();
        inside
            .set_link(
                "eth0",
                &LinkChange {
                    up: true,
                    ..Default::default()
                },
            )
            .unwrap();
        inside
            .add_addr(idx, Ipv4Addr::new(10, 9, 0, 2), 24)
            .unwrap();
        inside
            .add_default_route(Ipv4Addr::new(10, 9, 0, 1), idx)
            .unwrap();
        let show = |args: &[&str]| {
            let o = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "ip"])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let link = show(&["link", "show", "eth0"]);
        assert!(
            link.contains("mtu 1400") && link.contains("02:42:0a:09:00:02"),
            "{link}"
        );
        assert!(show(&["addr", "show", "eth0"]).contains("inet 10.9.0.2/24"));
        assert!(show(&["route"]).contains("default via 10.9.0.1 dev eth0"));
        let host_link = std::process::Command::new("ip")
            .args(["link", "show", &host])
            .output()
            .unwrap();
        let host_link = String::from_utf8_lossy(&host_link.stdout);
        assert!(host_link.contains("alias swarm-test-alias"), "{host_link}");
        let err = inside.index("nosuch0").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
}
