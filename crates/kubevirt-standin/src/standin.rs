//! The whole stand-in: CRD, VMIs, VNC servers and the aggregated `subresources.kubevirt.io` API.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use virt_gateway_testenv::aggregated::AggregatedApiSpec;
use virt_gateway_testenv::{AggregatedApi, ControlPlane};

use crate::fleet::{Fleet, Vm};
use crate::handler::{VERSIONS, aggregated_handler};
use crate::register::Registration;
use crate::{DEFAULT_VMS, Error, Rgb, SUBRESOURCES_GROUP, vmi};

/// What to start.
#[derive(Clone, Debug)]
pub struct StandinOptions {
    /// Namespace of the VMIs in `vms`.
    pub namespace: String,
    /// VMs to start, with their screen colours.
    pub vms: Vec<(String, Rgb)>,
    /// Versions of `subresources.kubevirt.io` to register (each is an APIService).
    pub versions: Vec<String>,
    /// Namespace of the aggregated API's Service (created if missing), as KubeVirt's
    /// `virt-api` lives in `kubevirt`.
    pub service_namespace: String,
    /// Where Xvnc logs go; a temporary directory when `None`.
    pub log_dir: Option<PathBuf>,
}

impl Default for StandinOptions {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            vms: DEFAULT_VMS
                .iter()
                .map(|(name, colour)| (name.to_string(), *colour))
                .collect(),
            versions: VERSIONS.iter().map(|v| v.to_string()).collect(),
            service_namespace: "kubevirt".into(),
            log_dir: None,
        }
    }
}

enum Registered {
    Testenv(AggregatedApi),
    Standalone(Registration),
}

/// A running stand-in. [`Standin::stop`] unregisters the API; dropping it stops the VNC servers.
pub struct Standin {
    apis: Vec<Registered>,
    fleet: Arc<Fleet>,
    client: kube::Client,
}

impl Standin {
    /// Starts the stand-in on the test control plane `cp`, registering the API with
    /// [`AggregatedApi`].
    pub async fn start(cp: &ControlPlane, options: StandinOptions) -> Result<Self, Error> {
        let client = cp.client().await;
        let mut this = Self::prepare(client, &options).await?;
        for version in &options.versions {
            let api = AggregatedApi::start(cp, this.spec(version, &options)).await?;
            this.apis.push(Registered::Testenv(api));
        }
        Ok(this)
    }

    /// Starts the stand-in with only a client (for example from a kubeconfig), registering the
    /// API with [`Registration`]. The cluster's Service range must be loopback (the project's
    /// test control plane), as the stand-in serves on the Service's ClusterIP itself.
    pub async fn start_with_client(
        client: kube::Client,
        options: StandinOptions,
    ) -> Result<Self, Error> {
        let mut this = Self::prepare(client.clone(), &options).await?;
        for version in &options.versions {
            let api = Registration::start(client.clone(), this.spec(version, &options)).await?;
            this.apis.push(Registered::Standalone(api));
        }
        Ok(this)
    }

    async fn prepare(client: kube::Client, options: &StandinOptions) -> Result<Self, Error> {
        vmi::install_crd(&client).await?;
        Api::<Namespace>::all(client.clone())
            .patch(
                &options.service_namespace,
                &PatchParams::apply("kubevirt-standin"),
                &Patch::Apply(json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": options.service_namespace}
                })),
            )
            .await?;
        let this = Self {
            apis: Vec::new(),
            fleet: Arc::new(Fleet::new(options.log_dir.as_deref())?),
            client,
        };
        let started = futures::future::join_all(
            options
                .vms
                .iter()
                .map(|(name, colour)| this.add_vm(&options.namespace, name, *colour)),
        )
        .await;
        for result in started {
            result?;
        }
        Ok(this)
    }

    fn spec(&self, version: &str, options: &StandinOptions) -> AggregatedApiSpec {
        let resource = |name: &str, verbs: &[&str]| APIResource {
            name: name.into(),
            namespaced: true,
            kind: "VirtualMachineInstance".into(),
            singular_name: String::new(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        };
        AggregatedApiSpec {
            group: SUBRESOURCES_GROUP.into(),
            version: version.into(),
            resources: vec![
                resource("virtualmachineinstances", &[]),
                resource("virtualmachineinstances/vnc", &["get"]),
                resource("virtualmachineinstances/console", &["get"]),
            ],
            namespace: options.service_namespace.clone(),
            handler: aggregated_handler(self.fleet.clone()),
        }
    }

    /// Creates the VMI `namespace/name` and starts its VNC server showing `colour`.
    pub async fn add_vm(&self, namespace: &str, name: &str, colour: Rgb) -> Result<Arc<Vm>, Error> {
        vmi::apply_vmi(&self.client, namespace, name, colour).await?;
        self.fleet.add(namespace, name, colour).await
    }

    /// The running VMs.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// The registered APIService names.
    pub fn api_services(&self) -> Vec<String> {
        self.apis
            .iter()
            .map(|api| match api {
                Registered::Testenv(a) => a.name().to_string(),
                Registered::Standalone(r) => r.name().to_string(),
            })
            .collect()
    }

    /// Unregisters the API; the VNC servers stop when the last reference to the fleet goes.
    pub async fn stop(self) {
        for api in self.apis {
            match api {
                Registered::Testenv(a) => a.stop().await,
                Registered::Standalone(r) => r.stop().await,
            }
        }
    }
}
