//! Registering the stand-in as an aggregated API with nothing but a kubeconfig (the binary's
//! `run --kubeconfig` mode, e.g. against `make testenv-up`'s control plane).
//!
//! [`virt_gateway_testenv::AggregatedApi`] needs the in-process [`ControlPlane`] for the cluster
//! CA and the front-proxy CA. Here both come from what any cluster publishes instead: the
//! serving certificate is signed by a CA made for this registration (the APIService's
//! `caBundle`), and the front-proxy CA that client certificates are checked against is read from
//! `kube-system/extension-apiserver-authentication` (`requestheader-client-ca-file`), as real
//! aggregated API servers do. The wiring is otherwise testenv's, built from the pieces of
//! [`virt_gateway_testenv::aggregated`]: a `ClusterIP` Service whose loopback ClusterIP and port
//! the server binds itself, a ready `FQDN` EndpointSlice for the aggregator's availability check,
//! and the same TLS setup and serving loop.
//!
//! [`ControlPlane`]: virt_gateway_testenv::ControlPlane

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use virt_gateway_testenv::aggregated::{self, AggregatedApiSpec};
use virt_gateway_testenv::certs::Authority;
use virt_gateway_testenv::control_plane::{free_port, random_suffix};

use crate::Error;

/// A registered aggregated API served from this process; unregistered by [`Registration::stop`]
/// and stopped on drop.
pub struct Registration {
    name: String,
    service: (String, String),
    addr: SocketAddr,
    server: JoinHandle<()>,
    client: kube::Client,
}

impl Registration {
    /// Creates the Service, EndpointSlice and APIService for `spec`, serves it, and waits until
    /// the API server reports it `Available`.
    pub async fn start(client: kube::Client, spec: AggregatedApiSpec) -> Result<Self, Error> {
        let ns = spec.namespace.clone();
        let service_name = format!("kubevirt-standin-{}", random_suffix(6));
        let front_proxy_ca = front_proxy_ca(&client).await?;

        let port = free_port()? as i32;
        let service = Api::<Service>::namespaced(client.clone(), &ns)
            .create(
                &PostParams::default(),
                &aggregated::service(&service_name, port),
            )
            .await?;
        let cluster_ip: IpAddr = service
            .spec
            .and_then(|s| s.cluster_ip)
            .ok_or_else(|| Error::Invalid("the Service got no ClusterIP".into()))?
            .parse()
            .map_err(|e| Error::Invalid(format!("unparsable ClusterIP: {e}")))?;
        if !cluster_ip.is_loopback() {
            let _ = Api::<Service>::namespaced(client.clone(), &ns)
                .delete(&service_name, &DeleteParams::default())
                .await;
            return Err(Error::Invalid(format!(
                "the Service's ClusterIP {cluster_ip} is not loopback: this stand-in serves its \
                 aggregated API itself on the ClusterIP, which only works with a loopback \
                 Service range (the project's test control plane)"
            )));
        }
        Api::<EndpointSlice>::namespaced(client.clone(), &ns)
            .create(
                &PostParams::default(),
                &aggregated::endpoint_slice(&service_name, port),
            )
            .await?;

        let ca = Authority::new("kubevirt-standin-ca")?;
        let dns = format!("{service_name}.{ns}.svc");
        let serving = ca.serving(&[dns.as_str()], &[cluster_ip])?;
        let tls = aggregated::server_tls(&serving.cert_pem, &serving.key_pem, &front_proxy_ca)
            .map_err(standalone_error)?;
        let listener = TcpListener::bind((cluster_ip, port as u16))
            .await
            .map_err(|e| Error::Io(format!("cannot bind {cluster_ip}:{port}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io(e.to_string()))?;
        let server = tokio::spawn(aggregated::serve(
            listener,
            tls,
            aggregated::discovery_document(&spec),
            spec.discovery_path(),
            spec.handler.clone(),
        ));

        let name = spec.api_service_name();
        let api_service =
            aggregated::api_service(&spec, &service_name, port, ca.cert_pem().into_bytes());
        let api_services = Api::<APIService>::all(client.clone());
        api_services
            .create(&PostParams::default(), &api_service)
            .await?;
        let this = Self {
            name,
            service: (ns, service_name),
            addr,
            server,
            client,
        };
        aggregated::wait_available(&api_services, &this.name)
            .await
            .map_err(standalone_error)?;
        Ok(this)
    }

    /// The APIService name, `<version>.<group>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the server listens (the Service's ClusterIP and port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Deletes the APIService, Service and EndpointSlice and stops serving.
    pub async fn stop(self) {
        let _ = Api::<APIService>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
        let (ns, service) = &self.service;
        let _ = Api::<EndpointSlice>::namespaced(self.client.clone(), ns)
            .delete(service, &DeleteParams::default())
            .await;
        let _ = Api::<Service>::namespaced(self.client.clone(), ns)
            .delete(service, &DeleteParams::default())
            .await;
        self.server.abort();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The CA the API server's front-proxy client certificate is issued by, as published for
/// aggregated API servers.
async fn front_proxy_ca(client: &kube::Client) -> Result<String, Error> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
        .get("extension-apiserver-authentication")
        .await?;
    cm.data
        .and_then(|mut d| d.remove("requestheader-client-ca-file"))
        .filter(|pem| !pem.trim().is_empty())
        .ok_or_else(|| {
            Error::Invalid(
                "kube-system/extension-apiserver-authentication has no \
                 requestheader-client-ca-file: the API server has no aggregation layer"
                    .into(),
            )
        })
}

/// The stand-in's error for what testenv's [`aggregated`] helpers report: without a test
/// control plane, a TLS or availability failure is a problem with the input cluster.
fn standalone_error(e: virt_gateway_testenv::Error) -> Error {
    match e {
        virt_gateway_testenv::Error::Certificates(e) => {
            Error::Invalid(format!("TLS configuration: {e}"))
        }
        virt_gateway_testenv::Error::Start(e) => Error::Invalid(e),
        virt_gateway_testenv::Error::Kube(e) => Error::Kube(e),
        e => Error::Testenv(e),
    }
}
