//! Shared consoles across replicas: the console Leases in the gateway's own namespace, and the
//! forwarding of a viewer to the replica holding one (the decision is [`crate::console_route`]).
//!
//! A replica serving a console holds its Lease (holder: its pod name; annotation: its address)
//! and renews it while the console has viewers; then it lets it lapse. A viewer reaching another
//! replica is forwarded there: the same upgrade request, token included, plus the
//! [`FORWARDED_TO`] mark; the holder authenticates, authorizes, limits, kills and audits it like
//! any request, and the forwarding replica grants nothing. Between HTTPS replicas the peer must
//! present exactly this replica's own serving certificate (they mount the same Secret), so a
//! Lease can only send viewers to a holder of that certificate's key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Uri};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::PostParams;
use rustls::pki_types::CertificateDer;

use axum::response::IntoResponse;

use crate::audit::AuditCtx;
use crate::authn::Principal;
use crate::config::{ConsoleReplicas, Scheme};
use crate::console::{ConsoleKey, Consoles};
use crate::console_route::{
    CONSOLE_ANNOTATION, Claim, FORWARDED_TO, LeaseView, Me, PEER_ANNOTATION, Route, decide,
    lease_name, marked_for,
};
use crate::error::{ConfigError, GatewayError};
use crate::headers::clean_response_headers;
use crate::limits::SlotGuard;
use crate::outcome::Outcome;
use crate::session::Sessions;
use crate::tls::ReloadingCert;
use crate::upstream::{AcceptCertificate, HttpClient};

/// Where a viewer goes, as the proxy acts on it.
#[derive(Debug)]
pub enum Routed {
    /// Serve it here (this replica holds the Lease, or could not coordinate).
    Local,
    /// Forward it to this replica.
    Peer {
        /// The holder's address.
        uri: Uri,
        /// The holder's pod name.
        holder: String,
    },
    /// Refuse it with 503: marked as forwarded here, but another replica holds the console.
    Busy,
}

/// What of a viewer's request goes to the replica serving its console (it has no body).
#[derive(Debug)]
pub struct PeerRequest {
    /// The method (GET).
    pub method: http::Method,
    /// Path and query, as received.
    pub path: String,
    /// The headers, as received.
    pub headers: http::HeaderMap,
}

impl PeerRequest {
    /// The parts of `request` that are forwarded.
    pub fn of<B>(request: &http::Request<B>) -> Self {
        Self {
            method: request.method().clone(),
            path: request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            headers: request.headers().clone(),
        }
    }
}

/// The replicas' coordination, for one replica.
pub struct Replicas {
    leases: Api<Lease>,
    me: Me,
    duration: Duration,
    consoles: Consoles,
    client: HttpClient,
    /// Consoles whose Lease a task renews; the flag says a viewer arrived since its last look.
    renewing: Mutex<HashMap<String, bool>>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas").field("me", &self.me).finish()
    }
}

impl Replicas {
    /// Coordinates `consoles` with the other replicas through Leases in `config.namespace`,
    /// this replica being reachable on `scheme` at `config.peer_ip`:`port`; `cert` is the serving
    /// certificate (HTTPS), the one every peer must present.
    pub fn new(
        config: &ConsoleReplicas,
        scheme: Scheme,
        port: u16,
        cert: Option<Arc<ReloadingCert>>,
        kube: kube::Client,
        consoles: Consoles,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            leases: Api::namespaced(kube, &config.namespace),
            me: Me {
                identity: config.pod_name.clone(),
                scheme,
                addr: std::net::SocketAddr::new(config.peer_ip, port),
            },
            duration: config.lease_duration,
            consoles,
            client: peer_client(cert)?,
            renewing: Mutex::default(),
        })
    }

    /// Routes a viewer of `key` whose request carries `headers`; claims the Lease when the
    /// viewer is to be served here. A failing Lease API serves locally (as one replica would).
    pub async fn route(self: &Arc<Self>, key: &ConsoleKey, headers: &http::HeaderMap) -> Routed {
        let marked = marked_for(headers, &self.me.identity);
        let name = lease_name(&key.namespace, &key.name);
        for _ in 0..3 {
            let lease = match self.leases.get_opt(&name).await {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %name, "console Lease not readable; serving here");
                    return Routed::Local;
                }
            };
            let view = lease.as_ref().map(view_of);
            match decide(&self.me, view.as_ref(), now(), marked) {
                Route::Forward { peer, holder } => return Routed::Peer { uri: peer, holder },
                Route::Busy => return Routed::Busy,
                Route::Local(claim) => match self.claim(key, &name, lease, claim).await {
                    Ok(()) => {
                        self.keep_renewing(key.clone());
                        return Routed::Local;
                    }
                    // Another replica wrote it meanwhile: read it again.
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, lease = %name, "console Lease not written; serving here");
                        return Routed::Local;
                    }
                },
            }
        }
        tracing::warn!(lease = %name, "console Lease contended; serving here");
        Routed::Local
    }

    /// `holder` did not answer: takes its Lease over, so that this replica serves `key`. A Lease
    /// that changed hands meanwhile is left to its new holder (this viewer is served here
    /// anyway, once).
    pub async fn take_over(self: &Arc<Self>, key: &ConsoleKey, holder: &str) {
        let name = lease_name(&key.namespace, &key.name);
        let lease = self.leases.get_opt(&name).await.ok().flatten();
        let current = lease.as_ref().map(view_of);
        let claim = match &current {
            None => Claim::Create,
            Some(v) if v.holder.as_deref() == Some(holder) || !v.fresh(now()) => Claim::Take,
            Some(_) => return,
        };
        match self.claim(key, &name, lease, claim).await {
            Ok(()) => {
                tracing::info!(lease = %name, "console Lease taken over from an unreachable replica")
            }
            Err(e) => tracing::warn!(error = %e, lease = %name, "console Lease not taken over"),
        }
        self.keep_renewing(key.clone());
    }

    /// The mark a request forwarded to `holder` carries.
    pub fn mark(holder: &str) -> Option<(http::HeaderName, HeaderValue)> {
        let value = HeaderValue::from_str(holder).ok()?;
        Some((http::HeaderName::from_static(FORWARDED_TO), value))
    }

    /// Sends the viewer's upgrade request (method, path, query and headers as received, the mark
    /// replacing any the client sent) to the holder at `peer`.
    pub async fn forward(
        &self,
        peer: &Uri,
        holder: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let PeerRequest {
            method,
            path,
            mut headers,
        } = request;
        let (scheme, authority) = (peer.scheme_str(), peer.authority());
        let (Some(scheme), Some(authority)) = (scheme, authority) else {
            return Err("peer URI without scheme or authority".into());
        };
        let uri: Uri = format!("{scheme}://{authority}{path}")
            .parse()
            .map_err(|e| format!("peer URI: {e}"))?;
        headers.remove(FORWARDED_TO);
        let (name, value) = Self::mark(holder).ok_or("holder name is not a header value")?;
        headers.insert(name, value);
        let mut out = http::Request::new(Body::empty());
        *out.method_mut() = method;
        *out.uri_mut() = uri;
        *out.headers_mut() = headers;
        match tokio::time::timeout(timeout, self.client.request(out)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    async fn claim(
        &self,
        key: &ConsoleKey,
        name: &str,
        lease: Option<Lease>,
        claim: Claim,
    ) -> Result<(), kube::Error> {
        let stamp = Some(MicroTime(jiff::Timestamp::now()));
        let mut lease = lease.unwrap_or_default();
        let meta = &mut lease.metadata;
        meta.name = Some(name.to_string());
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        annotations.insert(PEER_ANNOTATION.into(), self.me.advertised());
        annotations.insert(
            CONSOLE_ANNOTATION.into(),
            format!("{}/{}", key.namespace, key.name),
        );
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.me.identity.clone());
        spec.lease_duration_seconds = Some(i32::try_from(self.duration.as_secs()).unwrap_or(15));
        spec.renew_time = stamp.clone();
        if claim != Claim::Keep {
            spec.acquire_time = stamp;
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        let pp = PostParams::default();
        match claim {
            Claim::Create => self.leases.create(&pp, &lease).await.map(drop),
            // resourceVersion from the read: a concurrent writer makes this a 409.
            Claim::Keep | Claim::Take => self.leases.replace(name, &pp, &lease).await.map(drop),
        }
    }

    /// Renews `key`'s Lease every third of its duration while the console has viewers here.
    fn keep_renewing(self: &Arc<Self>, key: ConsoleKey) {
        let name = lease_name(&key.namespace, &key.name);
        {
            let mut renewing = self.renewing.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(arrived) = renewing.get_mut(&name) {
                *arrived = true;
                return;
            }
            renewing.insert(name.clone(), true);
        }
        let this = self.clone();
        tokio::spawn(async move {
            let period = this.duration / 3;
            loop {
                tokio::time::sleep(period).await;
                if this.consoles.viewers(&key).await == 0 && this.stop_renewing(&name) {
                    // Not released: until it lapses, the others still forward here, where the
                    // upstream lingers.
                    return;
                }
                if !this.renew(&key, &name).await {
                    this.renewing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&name);
                    return;
                }
            }
        });
    }

    /// Whether the renewal of `name` ends (no viewer arrived since the last look).
    fn stop_renewing(&self, name: &str) -> bool {
        let mut renewing = self.renewing.lock().unwrap_or_else(|e| e.into_inner());
        match renewing.get_mut(name) {
            Some(arrived) if *arrived => {
                *arrived = false;
                false
            }
            _ => {
                renewing.remove(name);
                true
            }
        }
    }

    /// Renews the Lease if this replica still holds it (or it is free); `false` when another
    /// replica took it.
    async fn renew(&self, key: &ConsoleKey, name: &str) -> bool {
        let lease = match self.leases.get_opt(name).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, lease = %name, "console Lease not renewed");
                return true;
            }
        };
        let view = lease.as_ref().map(view_of);
        let theirs = view.as_ref().is_some_and(|v| {
            v.fresh(now()) && v.holder.as_deref() != Some(self.me.identity.as_str())
        });
        if theirs {
            tracing::info!(lease = %name, "console Lease taken by another replica");
            return false;
        }
        let claim = match &view {
            None => Claim::Create,
            Some(v) if v.holder.as_deref() == Some(self.me.identity.as_str()) => Claim::Keep,
            Some(_) => Claim::Take,
        };
        if let Err(e) = self.claim(key, name, lease, claim).await {
            tracing::warn!(error = %e, lease = %name, "console Lease not renewed");
        }
        true
    }
}

/// A viewer's request as the proxy holds it: the request (its upgrade is taken when forwarded),
/// who it is, its audit context and its WebSocket slot.
pub type Viewer<'a> = (
    &'a mut http::Request<Body>,
    &'a Principal,
    AuditCtx,
    SlotGuard,
);

/// With replicas coordinating, answers a console viewer that another replica serves (by
/// forwarding it there and carrying its frames, or refusing it); `Err` gives the slot and
/// audit context back for serving it here.
pub async fn route_console(
    replicas: &Arc<Replicas>,
    sessions: &Sessions,
    key: &ConsoleKey,
    viewer: Viewer<'_>,
    timeout: Duration,
) -> Result<axum::response::Response, (SlotGuard, AuditCtx)> {
    let (request, principal, audit, slot) = viewer;
    let (peer, holder) = match replicas.route(key, &request.headers().clone()).await {
        Routed::Local => return Err((slot, audit)),
        Routed::Busy => {
            let mut response = GatewayError::ConsoleElsewhere.into_response();
            Outcome::of(&response)
                .by(&principal.actor())
                .attach(&mut response);
            return Ok(response);
        }
        Routed::Peer { uri, holder } => (uri, holder),
    };
    let forwarded = PeerRequest::of(request);
    let mut response = match replicas.forward(&peer, &holder, forwarded, timeout).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, holder = %holder, "console replica unreachable; taking the console over");
            replicas.take_over(key, &holder).await;
            return Err((slot, audit));
        }
    };
    let status = response.status();
    let mut outcome = Outcome {
        upstream_status: Some(status.as_u16()),
        detail: Some("console served by another replica".into()),
        ..Outcome::allowed()
    }
    .by(&principal.actor());
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        // The holder authorized and serves the viewer; this replica carries its frames and
        // still ends them when the token ends here.
        let client_upgrade = hyper::upgrade::on(&mut *request);
        let peer_upgrade = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        clean_response_headers(&mut parts.headers, true);
        outcome.websocket = true;
        sessions.spawn_websocket(
            client_upgrade,
            peer_upgrade,
            principal,
            audit,
            outcome.clone(),
            slot,
        );
        let mut response = axum::response::Response::from_parts(parts, Body::empty());
        outcome.attach(&mut response);
        return Ok(response);
    }
    // The holder's refusal, as it gave it.
    let (mut parts, body) = response.into_parts();
    clean_response_headers(&mut parts.headers, false);
    let mut response = axum::response::Response::from_parts(parts, Body::new(body));
    outcome.attach(&mut response);
    Ok(response)
}

fn now() -> f64 {
    jiff::Timestamp::now().as_microsecond() as f64 / 1e6
}

fn view_of(lease: &Lease) -> LeaseView {
    let spec = lease.spec.as_ref();
    LeaseView {
        holder: spec.and_then(|s| s.holder_identity.clone()),
        address: lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PEER_ANNOTATION).cloned()),
        renewed: spec
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0.as_microsecond() as f64 / 1e6),
        duration_secs: spec.and_then(|s| s.lease_duration_seconds),
    }
}

/// The client for peers: plain HTTP between HTTP replicas; between HTTPS replicas, TLS that
/// accepts only a peer presenting this replica's own current serving certificate.
fn peer_client(cert: Option<Arc<ReloadingCert>>) -> Result<HttpClient, ConfigError> {
    let tls = crate::upstream::tls_accepting(SameCertificate(cert))?;
    Ok(crate::upstream::http1_client(tls, Duration::from_secs(5)))
}

/// A peer replica's certificate must be byte for byte this replica's own serving certificate
/// (the replicas mount one Secret); the handshake is still verified against it. Names are not
/// checked: peers are reached by pod IP, which the certificate does not name.
#[derive(Debug)]
pub struct SameCertificate(Option<Arc<ReloadingCert>>);

impl AcceptCertificate for SameCertificate {
    fn accepts(&self, end_entity: &CertificateDer<'_>) -> bool {
        let ours = self.0.as_ref().and_then(|c| c.leaf());
        ours.is_some_and(|ours| ours.as_ref() == end_entity.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    use virt_gateway_testenv::certs::Authority;

    fn cert(dir: &std::path::Path, name: &str, ca: &Authority) -> Arc<ReloadingCert> {
        let pair = ca
            .serving(&["kube-gateway.ns.svc"], &["127.0.0.1".parse().unwrap()])
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, pair.cert_pem).unwrap();
        std::fs::write(&k, pair.key_pem).unwrap();
        Arc::new(ReloadingCert::new(&c, &k).unwrap())
    }

    /// A replica serving `cert` over HTTPS on loopback; answers 200 to what it accepts.
    async fn peer(cert: Arc<ReloadingCert>) -> std::net::SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config().unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                }
            }
        });
        addr
    }

    async fn reaches(client: &HttpClient, addr: std::net::SocketAddr) -> bool {
        let mut req = http::Request::new(Body::empty());
        *req.uri_mut() = format!("https://{addr}/").parse().unwrap();
        match client.request(req).await {
            Ok(response) => {
                let _ = response.into_body().collect().await;
                true
            }
            Err(_) => false,
        }
    }

    /// Attack: a forged Lease pointing at a server with another certificate, even one from the
    /// same CA and for the same names, or at any server when this replica has no certificate.
    /// Only a peer presenting this replica's own serving certificate is reached.
    #[tokio::test]
    async fn peers_must_present_our_own_serving_certificate() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::new("service-ca").unwrap();
        let ours = cert(dir.path(), "ours", &ca);
        let other = cert(dir.path(), "other", &ca);
        let client = peer_client(Some(ours.clone())).unwrap();
        assert!(reaches(&client, peer(ours.clone()).await).await);
        assert!(!reaches(&client, peer(other.clone()).await).await);
        let no_cert = peer_client(None).unwrap();
        assert!(!reaches(&no_cert, peer(ours).await).await);
    }
}
