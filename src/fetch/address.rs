//! Which IP addresses the attachment fetcher may connect to. Pure.
//!
//! By default only public unicast addresses: a send names any URL it
//! likes, and a bridge that fetched from loopback, its LAN or the cloud
//! metadata service (169.254.169.254) would hand out what only it can
//! reach. `attachments.allow_private_hosts` lets it fetch from every
//! unicast address; what is never a file server (unspecified, multicast,
//! broadcast, reserved) stays refused either way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not fetched from, as the error says it.
pub type Refusal = &'static str;

/// What an address is, for the fetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A public unicast address: always fetched from.
    Public,
    /// Unicast, but not public (loopback, private, link-local...):
    /// fetched from only with `allow_private_hosts`.
    NotPublic(Refusal),
    /// Never a host to fetch a file from.
    Never(Refusal),
}

/// `Ok` when the fetcher may connect to `ip`; else why not.
pub fn check(ip: IpAddr, allow_private_hosts: bool) -> Result<(), Refusal> {
    match kind(ip) {
        Kind::Public => Ok(()),
        Kind::NotPublic(_) if allow_private_hosts => Ok(()),
        Kind::NotPublic(why) | Kind::Never(why) => Err(why),
    }
}

fn kind(ip: IpAddr) -> Kind {
    match ip {
        IpAddr::V4(v4) => kind_v4(v4),
        IpAddr::V6(v6) => kind_v6(v6),
    }
}

fn kind_v4(ip: Ipv4Addr) -> Kind {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Kind::Never("an unspecified address (0.0.0.0/8)")
    } else if ip.is_broadcast() {
        Kind::Never("the broadcast address")
    } else if ip.is_multicast() {
        Kind::Never("a multicast address")
    } else if a >= 240 {
        Kind::Never("a reserved address (240.0.0.0/4)")
    } else if ip.is_loopback() {
        Kind::NotPublic("a loopback address")
    } else if ip.is_private() {
        Kind::NotPublic("a private address")
    } else if ip.is_link_local() {
        Kind::NotPublic("a link-local address (169.254.0.0/16, cloud metadata among them)")
    } else if a == 100 && (b & 0xc0) == 64 {
        Kind::NotPublic("a shared (carrier-grade NAT) address (100.64.0.0/10)")
    } else if ip.is_documentation() {
        Kind::NotPublic("a documentation address")
    } else if a == 198 && (b & 0xfe) == 18 {
        Kind::NotPublic("a benchmarking address (198.18.0.0/15)")
    } else if a == 192 && b == 0 && c == 0 {
        Kind::NotPublic("an IETF protocol address (192.0.0.0/24)")
    } else {
        Kind::Public
    }
}

fn kind_v6(ip: Ipv6Addr) -> Kind {
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Kind::Never("an unspecified address (::)");
    }
    if ip.is_loopback() {
        return Kind::NotPublic("a loopback address (::1)");
    }
    if ip.is_multicast() {
        return Kind::Never("a multicast address");
    }
    // IPv4 written as IPv6 reaches the IPv4 host: judged as that.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return kind_v4(v4);
    }
    if segments[..6] == [0; 6] {
        // IPv4-compatible `::a.b.c.d` (deprecated, but still routed by some stacks).
        return kind_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96): the gateway connects to the IPv4 address.
        return kind_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        // 6to4 (2002::/16): the IPv4 address of the relay in bits 16-48.
        match kind_v4(embedded_v4(segments[1], segments[2])) {
            Kind::Public => {}
            other => return other,
        }
    }
    if (segments[0] & 0xfe00) == 0xfc00 {
        return Kind::NotPublic("a unique local address (fc00::/7)");
    }
    if (segments[0] & 0xffc0) == 0xfe80 {
        return Kind::NotPublic("a link-local address (fe80::/10)");
    }
    if (segments[0] & 0xffc0) == 0xfec0 {
        return Kind::NotPublic("a site-local address (fec0::/10)");
    }
    if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        return Kind::NotPublic("a documentation address (2001:db8::/32)");
    }
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1 {
        return Kind::NotPublic("a local-use NAT64 address (64:ff9b:1::/48)");
    }
    // Only 2000::/3 is allocated as global unicast; the rest is reserved
    // or special-purpose (discard-only 100::/64 among them).
    if (segments[0] & 0xe000) != 0x2000 {
        return Kind::Never("not a global unicast address (outside 2000::/3)");
    }
    Kind::Public
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(ip: &str) -> bool {
        check(ip.parse().unwrap(), false).is_ok()
    }

    fn with_private_hosts(ip: &str) -> bool {
        check(ip.parse().unwrap(), true).is_ok()
    }

    fn why(ip: &str) -> &'static str {
        check(ip.parse().unwrap(), false).unwrap_err()
    }

    #[test]
    fn public_ipv4_addresses_are_fetched_from() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "169.253.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(public(ip), "{ip}");
        }
    }

    #[test]
    fn every_special_ipv4_range_is_refused_by_default() {
        for (ip, reason) in [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("169.254.0.1", "link-local"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.10", "documentation"),
            ("203.0.113.10", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("192.0.0.8", "IETF"),
        ] {
            assert!(why(ip).contains(reason), "{ip}: {}", why(ip));
        }
    }

    #[test]
    fn public_ipv6_addresses_are_fetched_from() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:81b::200e",
            "2002:0808:0808::1",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(ip), "{ip}");
        }
    }

    #[test]
    fn every_special_ipv6_range_and_mapped_ipv4_form_is_refused_by_default() {
        for (ip, reason) in [
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique local"),
            ("fd12:3456:789a::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("100::1", "global unicast"),
            ("4000::1", "global unicast"),
            ("64:ff9b:1::a00:1", "NAT64"),
            // IPv4-mapped, -compatible, NAT64 and 6to4 forms reach an
            // IPv4 host: judged as that host.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:100.64.0.1", "carrier-grade NAT"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("::192.168.0.1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:0001::1", "loopback"),
            ("2002:c0a8:0101::1", "private"),
        ] {
            assert!(why(ip).contains(reason), "{ip}: {}", why(ip));
        }
    }

    #[test]
    fn allowing_private_hosts_allows_every_unicast_address_and_nothing_more() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.2.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
        ] {
            assert!(with_private_hosts(ip), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::",
            "ff02::1",
            "::ffff:0.0.0.0",
        ] {
            assert!(!with_private_hosts(ip), "{ip}");
        }
    }
}
