//! The `VirtualMachineInstance` CRD (`kubevirt.io`, served as `v1` and `v1alpha3`, stored as
//! `v1`, any content kept) and VMI objects for the stand-in's VMs.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use crate::{Error, Rgb};

/// The CRD's name.
pub const CRD_NAME: &str = "virtualmachineinstances.kubevirt.io";
/// The annotation recording a stand-in VM's screen colour.
pub const COLOUR_ANNOTATION: &str = "kubevirt-standin.virt-gateway.io/screen-colour";
const FIELD_MANAGER: &str = "kubevirt-standin";

/// The CRD, as KubeVirt names it (short names `vmi`, `vmis`).
pub fn crd() -> CustomResourceDefinition {
    let version = |name: &str, storage: bool| {
        json!({
            "name": name,
            "served": true,
            "storage": storage,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true
            }},
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
            ]
        })
    };
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": "kubevirt.io",
            "scope": "Namespaced",
            "names": {
                "plural": "virtualmachineinstances",
                "singular": "virtualmachineinstance",
                "kind": "VirtualMachineInstance",
                "listKind": "VirtualMachineInstanceList",
                "shortNames": ["vmi", "vmis"],
                "categories": ["all"]
            },
            "versions": [version("v1", true), version("v1alpha3", false)]
        }
    }))
    .expect("the CRD literal is a valid CustomResourceDefinition")
}

/// The `kubevirt.io/v1` `VirtualMachineInstance` resource.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance"),
        "virtualmachineinstances",
    )
}

/// Installs (or updates) the CRD and waits until it is established.
pub async fn install_crd(client: &kube::Client) -> Result<(), Error> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(crd()),
    )
    .await?;
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, CRD_NAME, conditions::is_crd_established()),
    )
    .await
    .map_err(|_| Error::Invalid(format!("CRD {CRD_NAME} not established within 60s")))?
    .map_err(|e| Error::Invalid(format!("waiting for CRD {CRD_NAME}: {e}")))?;
    Ok(())
}

/// Creates (or updates) the VMI `namespace/name`, marked `Running`, with its screen colour in
/// an annotation.
pub async fn apply_vmi(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    colour: Rgb,
) -> Result<DynamicObject, Error> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &api_resource());
    let object = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubevirt.io/domain": name},
            "annotations": {COLOUR_ANNOTATION: colour.to_string()}
        },
        "spec": {"domain": {
            "devices": {"autoattachGraphicsDevice": true},
            "resources": {"requests": {"memory": "64Mi"}}
        }}
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(&object)).await?;
    let status = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "guestOSInfo": {"name": "kubevirt-standin (TigerVNC Xvnc)"}
        }
    });
    Ok(api
        .patch_status(name, &params, &Patch::Apply(&status))
        .await?)
}
