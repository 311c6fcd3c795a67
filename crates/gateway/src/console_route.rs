//! Which replica serves a shared console: the pure decision, from the console's Lease as read
//! from the gateway's own namespace, without any I/O (the Lease calls and the forwarding are in
//! [`crate::console_peers`]).
//!
//! One replica holds a VMI's console Lease while it serves that console; a viewer reaching
//! another replica is forwarded there, so that the VM sees one VNC connection whatever replica
//! the Service or Ingress picked. A replica never forwards to an address that is not a valid
//! replica address (an IP literal on this gateway's own scheme and port): a Lease naming
//! anything else is treated as broken and taken over.

use std::net::SocketAddr;

use http::Uri;

use crate::config::Scheme;

/// The request header a replica adds when it forwards a viewer to the replica holding the
/// Lease; its value is the holder's pod name. A replica never forwards a request marked with
/// its own name (no loops); a mark naming another replica is ignored.
pub const FORWARDED_TO: &str = "x-virt-gateway-console-replica";

/// The Lease annotation carrying the holder's address (`scheme://ip:port`).
pub const PEER_ANNOTATION: &str = "ocgate.yaacov.com/console-peer";

/// The Lease annotation naming the console (`namespace/name`), for people reading Leases.
pub const CONSOLE_ANNOTATION: &str = "ocgate.yaacov.com/console";

/// This replica, as the other replicas see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    /// Pod name: the Lease holder identity.
    pub identity: String,
    /// The main listener's scheme, shared by every replica.
    pub scheme: Scheme,
    /// The address the others reach this replica at.
    pub addr: SocketAddr,
}

impl Me {
    /// The address this replica writes into the Leases it holds.
    pub fn advertised(&self) -> String {
        format!("{}://{}", scheme_name(self.scheme), self.addr)
    }

    /// The peer `address` of a Lease as a URI this replica may forward to: exactly
    /// `scheme://ip:port` with this replica's scheme and port, and not this replica's own address.
    /// Over plain HTTP only a loopback address: nothing would check who answers there, and the
    /// viewer's token goes with the request (configuration allows HTTP replicas on one machine
    /// only).
    pub fn peer_uri(&self, address: &str) -> Option<Uri> {
        let rest = address.strip_prefix(scheme_name(self.scheme))?;
        let addr: SocketAddr = rest.strip_prefix("://")?.parse().ok()?;
        if addr.port() != self.addr.port() || addr == self.addr {
            return None;
        }
        if self.scheme == Scheme::Http && !addr.ip().is_loopback() {
            return None;
        }
        format!("{}://{addr}", scheme_name(self.scheme))
            .parse()
            .ok()
    }
}

fn scheme_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    }
}

/// What a console's Lease says, as far as routing is concerned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseView {
    /// `spec.holderIdentity`.
    pub holder: Option<String>,
    /// The holder's address annotation.
    pub address: Option<String>,
    /// Unix seconds (fractional) of `spec.renewTime`.
    pub renewed: Option<f64>,
    /// `spec.leaseDurationSeconds`.
    pub duration_secs: Option<i32>,
}

impl LeaseView {
    /// Held and renewed within its duration at `now` (unix seconds).
    pub fn fresh(&self, now: f64) -> bool {
        match (&self.holder, self.renewed, self.duration_secs) {
            (Some(h), Some(renewed), Some(d)) if !h.is_empty() && d > 0 => {
                now < renewed + f64::from(d)
            }
            _ => false,
        }
    }
}

/// How this replica gets to serve a console locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// No Lease yet: create it.
    Create,
    /// Ours already: renew it.
    Keep,
    /// Free, expired, or naming an address no replica may have: take it over.
    Take,
}

/// Where a viewer of a console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Served by this replica, after claiming the Lease so.
    Local(Claim),
    /// Forwarded, unchanged but for the mark, to the replica holding the Lease.
    Forward {
        /// The holder's address.
        peer: Uri,
        /// The holder's pod name (the mark's value).
        holder: String,
    },
    /// Refused: a request marked as forwarded to this replica, while another replica holds the
    /// Lease. Serving it would open a second VNC connection and take the console from the
    /// holder; forwarding it again could loop.
    Busy,
}

/// Routes a viewer: `lease` is the console's Lease (`None`: there is none), `now` unix seconds,
/// `marked` whether the request carries [`FORWARDED_TO`] naming this replica.
pub fn decide(me: &Me, lease: Option<&LeaseView>, now: f64, marked: bool) -> Route {
    let Some(lease) = lease else {
        return Route::Local(Claim::Create);
    };
    if lease.holder.as_deref() == Some(me.identity.as_str()) {
        return Route::Local(Claim::Keep);
    }
    if !lease.fresh(now) {
        return Route::Local(Claim::Take);
    }
    let peer = lease.address.as_deref().and_then(|a| me.peer_uri(a));
    match (peer, lease.holder.clone()) {
        (Some(_), Some(_)) if marked => Route::Busy,
        (Some(peer), Some(holder)) => Route::Forward { peer, holder },
        // A fresh Lease whose address no replica could have: never forwarded to.
        _ => Route::Local(Claim::Take),
    }
}

/// Whether `headers` mark the request as forwarded to the replica named `identity`.
pub fn marked_for(headers: &http::HeaderMap, identity: &str) -> bool {
    headers
        .get_all(FORWARDED_TO)
        .iter()
        .any(|v| v.as_bytes() == identity.as_bytes())
}

/// The Lease name of a console: a DNS label from a hash of `namespace/name` (VMI names can be
/// longer than a label allows).
pub fn lease_name(namespace: &str, name: &str) -> String {
    let digest = crate::util::sha256(format!("{namespace}/{name}").as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("vg-console-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_000_000.0;

    fn me() -> Me {
        Me {
            identity: "gw-a".into(),
            scheme: Scheme::Https,
            addr: "10.0.0.1:8443".parse().unwrap(),
        }
    }

    fn held_by(holder: &str, address: &str, renewed: f64) -> LeaseView {
        LeaseView {
            holder: Some(holder.into()),
            address: Some(address.into()),
            renewed: Some(renewed),
            duration_secs: Some(15),
        }
    }

    #[test]
    fn no_lease_ours_or_stale_is_served_here() {
        assert_eq!(decide(&me(), None, NOW, false), Route::Local(Claim::Create));
        let ours = held_by("gw-a", "https://10.0.0.1:8443", NOW - 100.0);
        assert_eq!(
            decide(&me(), Some(&ours), NOW, false),
            Route::Local(Claim::Keep)
        );
        let stale = held_by("gw-b", "https://10.0.0.2:8443", NOW - 15.0);
        assert_eq!(
            decide(&me(), Some(&stale), NOW, false),
            Route::Local(Claim::Take)
        );
        let released = LeaseView {
            holder: None,
            ..held_by("x", "https://10.0.0.2:8443", NOW)
        };
        assert_eq!(
            decide(&me(), Some(&released), NOW, false),
            Route::Local(Claim::Take)
        );
    }

    #[test]
    fn a_fresh_lease_of_another_replica_forwards_there() {
        let theirs = held_by("gw-b", "https://10.0.0.2:8443", NOW - 1.0);
        assert_eq!(
            decide(&me(), Some(&theirs), NOW, false),
            Route::Forward {
                peer: "https://10.0.0.2:8443".parse().unwrap(),
                holder: "gw-b".into()
            }
        );
        // IPv6 pod addresses.
        let v6 = held_by("gw-b", "https://[fd00::2]:8443", NOW - 1.0);
        assert!(matches!(
            decide(&me(), Some(&v6), NOW, false),
            Route::Forward { .. }
        ));
    }

    /// Attack: a request marked as forwarded to this replica is never forwarded again (no
    /// loop) and never opens a second VNC connection while another replica holds the console.
    #[test]
    fn a_marked_request_is_served_here_or_refused_never_forwarded() {
        let theirs = held_by("gw-b", "https://10.0.0.2:8443", NOW - 1.0);
        assert_eq!(decide(&me(), Some(&theirs), NOW, true), Route::Busy);
        assert_eq!(decide(&me(), None, NOW, true), Route::Local(Claim::Create));
        let ours = held_by("gw-a", "https://10.0.0.1:8443", NOW);
        assert_eq!(
            decide(&me(), Some(&ours), NOW, true),
            Route::Local(Claim::Keep)
        );
    }

    /// Attack: a Lease written to send viewers (and their tokens) somewhere else. Only an IP
    /// literal with this gateway's scheme and port is a replica address; anything else is
    /// taken over, never forwarded to.
    #[test]
    fn a_lease_naming_no_replica_address_is_never_forwarded_to() {
        for address in [
            "https://evil.example.com:8443",
            "http://10.0.0.2:8443",
            "https://10.0.0.2:443",
            "https://10.0.0.2:8443/path",
            "https://user@10.0.0.2:8443",
            "https://10.0.0.1:8443",
            "10.0.0.2:8443",
            "",
        ] {
            let forged = held_by("gw-b", address, NOW);
            assert_eq!(
                decide(&me(), Some(&forged), NOW, false),
                Route::Local(Claim::Take),
                "{address}"
            );
        }
        let no_address = LeaseView {
            address: None,
            ..held_by("gw-b", "", NOW)
        };
        assert_eq!(
            decide(&me(), Some(&no_address), NOW, false),
            Route::Local(Claim::Take)
        );
    }

    /// Attack: over plain HTTP nothing checks who answers at a Lease's address, and the
    /// viewer's token goes with the forwarded request, so HTTP replicas forward only on loopback
    /// (one machine: development, tests); a Lease naming a pod IP is taken over instead.
    #[test]
    fn http_replicas_forward_only_to_loopback() {
        let http_me = Me {
            identity: "gw-a".into(),
            scheme: Scheme::Http,
            addr: "127.0.0.2:8080".parse().unwrap(),
        };
        for address in [
            "http://10.0.0.2:8080",
            "http://[fd00::2]:8080",
            "http://192.168.1.9:8080",
        ] {
            let forged = held_by("gw-b", address, NOW);
            assert_eq!(
                decide(&http_me, Some(&forged), NOW, false),
                Route::Local(Claim::Take),
                "{address}"
            );
        }
        for address in ["http://127.0.0.3:8080", "http://[::1]:8080"] {
            let peer = held_by("gw-b", address, NOW);
            assert!(
                matches!(
                    decide(&http_me, Some(&peer), NOW, false),
                    Route::Forward { .. }
                ),
                "{address}"
            );
        }
    }

    #[test]
    fn the_mark_must_name_this_replica() {
        let mut headers = http::HeaderMap::new();
        assert!(!marked_for(&headers, "gw-a"));
        headers.insert(FORWARDED_TO, "gw-b".parse().unwrap());
        assert!(!marked_for(&headers, "gw-a"));
        headers.append(FORWARDED_TO, "gw-a".parse().unwrap());
        assert!(marked_for(&headers, "gw-a"));
    }

    #[test]
    fn lease_names_are_dns_labels_per_console() {
        let long = "v".repeat(253);
        for (ns, name) in [("default", "testvm"), ("a", long.as_str())] {
            let n = lease_name(ns, name);
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
        assert_ne!(lease_name("a", "b"), lease_name("b", "a"));
        assert_eq!(lease_name("a", "b"), lease_name("a", "b"));
    }
}
