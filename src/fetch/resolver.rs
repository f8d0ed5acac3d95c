//! The attachment fetcher's DNS: resolves with the system resolver (through
//! tokio) and hands the HTTP client only the addresses the fetcher may
//! connect to, so a name that points at loopback or the LAN is refused
//! at the moment of connecting, whatever it resolved to a moment before
//! (no window for DNS rebinding between a check and the connection).
//! A literal IP in a URL never comes here: `super::HttpFetcher` checks
//! it before the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Decides whether the fetcher may connect to an address: `Err` says why
/// not.
pub type AddressCheck = Arc<dyn Fn(IpAddr) -> Result<(), String> + Send + Sync>;

/// A host the fetcher will not connect to: every address it resolved to
/// was refused. Found in a request error's source chain, it makes the
/// fetch `Refused` rather than `Transient`. Its text, which the sender of
/// the message reads, names the kind of address, not the address: the
/// bridge is no lookup service for the names of its network. The journal
/// has the address.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {reason}; only public addresses are fetched from")]
pub struct ForbiddenHost {
    pub host: String,
    pub address: IpAddr,
    pub reason: String,
}

pub struct CheckedResolver {
    check: AddressCheck,
}

impl CheckedResolver {
    pub fn new(check: AddressCheck) -> Self {
        Self { check }
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let check = self.check.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                found.into_iter().partition(|addr| check(addr.ip()).is_ok());
            if allowed.is_empty()
                && let Some(first) = refused.first()
            {
                let reason = check(first.ip()).err().unwrap_or_default();
                return Err(Box::new(ForbiddenHost {
                    host,
                    address: first.ip(),
                    reason,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            // Of a name with public and other addresses, only the public
            // ones are connected to.
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}
