//! A local HTTPS server registered as an aggregated API (an `APIService`), reachable through the
//! real kube-apiserver's aggregation layer. Tests use it to stand in for KubeVirt's
//! `subresources.kubevirt.io` API.
//!
//! How it is wired, all on loopback:
//! - a `ClusterIP` Service is created; its ClusterIP comes from the loopback Service range, and
//!   the server binds that address and port itself (kube-apiserver's aggregator dials
//!   `ClusterIP:port`, as `--enable-aggregator-routing` is off);
//! - the aggregator's availability check also wants a ready EndpointSlice for the Service.
//!   Endpoint IPs may not be loopback, and routing never uses them here, so the slice uses the
//!   `FQDN` address type with a name under the reserved `localhost` top-level domain (RFC 6761;
//!   a bare `localhost` is refused as it has one label): valid, loopback by definition, and never
//!   dialed anyway;
//! - the server presents a certificate for `<service>.<namespace>.svc` signed by the cluster CA
//!   (the APIService's `caBundle`), and requires the front-proxy client certificate, as a real
//!   aggregated API server (KubeVirt's virt-api) does.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceSpec, ServiceReference,
};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::control_plane::{ControlPlane, random_suffix};

/// The response future of a [`Handler`].
pub type HandlerFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// Serves every request the API server forwards, except the discovery document.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;

/// What to register.
pub struct AggregatedApiSpec {
    /// API group, e.g. `subresources.kubevirt.io`.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Resources listed in the discovery document (`/apis/<group>/<version>`).
    pub resources: Vec<APIResource>,
    /// Namespace for the backing Service and EndpointSlice.
    pub namespace: String,
    /// Handles every other request.
    pub handler: Handler,
}

/// A running aggregated API server; unregisters and stops when dropped.
pub struct AggregatedApi {
    name: String,
    addr: SocketAddr,
    server: JoinHandle<()>,
    client: kube::Client,
}

impl AggregatedApi {
    /// Starts the server, registers the APIService, and waits until the API server reports it
    /// `Available`.
    pub async fn start(cp: &ControlPlane, spec: AggregatedApiSpec) -> Result<Self, Error> {
        let client = cp.client().await;
        let service_name = format!("aggregated-{}", random_suffix(6));
        let ns = &spec.namespace;

        // The Service first: its ClusterIP is where the server must listen.
        let port = crate::control_plane::free_port()? as i32;
        let service = Api::<Service>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &service(&service_name, port))
            .await?;
        let cluster_ip: IpAddr = service
            .spec
            .and_then(|s| s.cluster_ip)
            .ok_or_else(|| Error::Start("the Service got no ClusterIP".into()))?
            .parse()
            .map_err(|e| Error::Start(format!("unparsable ClusterIP: {e}")))?;
        if !cluster_ip.is_loopback() {
            return Err(Error::Config(format!(
                "ClusterIP {cluster_ip} is not loopback; refusing to use it"
            )));
        }

        Api::<EndpointSlice>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &endpoint_slice(&service_name, port))
            .await?;

        // TLS: serving certificate for the in-cluster Service name, client certificates from
        // the front-proxy CA only.
        let dns = format!("{service_name}.{ns}.svc");
        let serving = cp.ca().serving(&[dns.as_str()], &[cluster_ip])?;
        let tls = server_tls(&serving.cert_pem, &serving.key_pem, cp.front_proxy_ca_pem())?;
        let listener = TcpListener::bind((cluster_ip, port as u16))
            .await
            .map_err(|e| Error::Io(format!("cannot bind {cluster_ip}:{port}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io(e.to_string()))?;
        let server = tokio::spawn(serve(
            listener,
            tls,
            discovery_document(&spec),
            spec.discovery_path(),
            not_found_for_aggregator_probes(spec.handler.clone()),
        ));

        let name = spec.api_service_name();
        let api_service = api_service(&spec, &service_name, port, cp.ca_pem().as_bytes().to_vec());
        let api_services = Api::<APIService>::all(client.clone());
        api_services
            .create(&PostParams::default(), &api_service)
            .await?;
        let this = Self {
            name,
            addr,
            server,
            client,
        };
        wait_available(&api_services, &this.name).await?;
        Ok(this)
    }

    /// The address the server listens on (the Service's ClusterIP and port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The APIService name, `<version>.<group>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Unregisters the APIService and stops the server.
    pub async fn stop(self) {
        let _ = Api::<APIService>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
        self.server.abort();
    }
}

impl Drop for AggregatedApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl AggregatedApiSpec {
    /// The APIService name, `<version>.<group>`.
    pub fn api_service_name(&self) -> String {
        format!("{}.{}", self.version, self.group)
    }

    /// Where the discovery document is served, `/apis/<group>/<version>`.
    pub fn discovery_path(&self) -> String {
        format!("/apis/{}/{}", self.group, self.version)
    }
}

/// The `ClusterIP` Service `name` with one `https` port, whose loopback ClusterIP and port the
/// aggregated API server binds itself.
pub fn service(name: &str, port: i32) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A ready `FQDN` EndpointSlice for the Service `service_name`, for the aggregator's
/// availability check (never dialed: see the module documentation).
pub fn endpoint_slice(service_name: &str, port: i32) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(service_name.to_string()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                service_name.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "FQDN".into(),
        endpoints: Some(vec![Endpoint {
            addresses: vec![format!("{service_name}.localhost")],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![EndpointPort {
            name: Some("https".into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// The APIService for `spec`, backed by the Service `service_name` (in `spec.namespace`) on
/// `port`, whose serving certificate `ca_bundle` (PEM) verifies.
pub fn api_service(
    spec: &AggregatedApiSpec,
    service_name: &str,
    port: i32,
    ca_bundle: Vec<u8>,
) -> APIService {
    APIService {
        metadata: ObjectMeta {
            name: Some(spec.api_service_name()),
            ..Default::default()
        },
        spec: Some(APIServiceSpec {
            group: Some(spec.group.clone()),
            version: Some(spec.version.clone()),
            group_priority_minimum: 1000,
            version_priority: 15,
            ca_bundle: Some(ByteString(ca_bundle)),
            service: Some(ServiceReference {
                name: Some(service_name.to_string()),
                namespace: Some(spec.namespace.clone()),
                port: Some(port),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Waits (up to a minute) until the APIService `name` reports `Available`; an
/// [`Error::Start`] with its last reason and message if it does not.
pub async fn wait_available(api: &Api<APIService>, name: &str) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current = api.get(name).await?;
        let available = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Available"));
        if available.is_some_and(|c| c.status == "True") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Start(format!(
                "APIService {name} did not become Available: {:?}",
                available.map(|c| (&c.reason, &c.message))
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The discovery document (`APIResourceList`) for `spec`, as JSON.
pub fn discovery_document(spec: &AggregatedApiSpec) -> Bytes {
    let list = APIResourceList {
        group_version: format!("{}/{}", spec.group, spec.version),
        resources: spec.resources.clone(),
    };
    let mut value = serde_json::to_value(&list).expect("APIResourceList serialises");
    value["kind"] = "APIResourceList".into();
    value["apiVersion"] = "v1".into();
    Bytes::from(serde_json::to_vec(&value).expect("JSON serialises"))
}

/// TLS for an aggregated API server: the serving certificate and key (PEM), and client
/// certificates required and verified against `client_ca_pem` (the front-proxy CA). HTTP/1.1
/// only. Errors are [`Error::Certificates`].
pub fn server_tls(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<TlsAcceptor, Error> {
    let tls_err = |e: String| Error::Certificates(e);
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls_err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| tls_err(e.to_string()))?)
            .map_err(|e| tls_err(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls_err(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(e.to_string()))?;
    // HTTP/1.1 only: upgrades (WebSocket) need it, and the aggregator speaks it for those.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS connections on `listener` forever (spawn it; abort the task to stop): answers
/// `discovery_path` with the JSON `discovery` (see [`discovery_document`] and
/// [`AggregatedApiSpec::discovery_path`]) and passes every other request to `handler`,
/// WebSocket upgrades included.
pub async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    discovery: Bytes,
    discovery_path: String,
    handler: Handler,
) {
    let discovery_path = Arc::new(discovery_path);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let tls = tls.clone();
        let discovery = discovery.clone();
        let discovery_path = discovery_path.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let discovery = discovery.clone();
                let discovery_path = discovery_path.clone();
                let handler = handler.clone();
                async move {
                    if req.uri().path() == discovery_path.as_str() {
                        return Ok::<_, Infallible>(
                            Response::builder()
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(Full::new(discovery))
                                .expect("valid response"),
                        );
                    }
                    Ok(handler(req).await)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `handler`, except that `/apis` and `/openapi...` (which the aggregator probes) get a plain
/// [`not_found`] without reaching it.
pub fn not_found_for_aggregator_probes(handler: Handler) -> Handler {
    Arc::new(move |req| {
        let path = req.uri().path();
        if path == "/apis" || path.starts_with("/openapi") {
            return Box::pin(async { not_found() });
        }
        handler(req)
    })
}

/// A plain 404 response.
pub fn not_found() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(Full::new(Bytes::from_static(b"404 page not found")))
        .expect("static response")
}

/// The identity the API server forwarded (front-proxy `X-Remote-User`), if any.
pub fn remote_user<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get("x-remote-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
