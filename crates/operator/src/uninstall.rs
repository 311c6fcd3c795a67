//! `virt-gateway-operator prepare-uninstall`: deletes every GateServer and GateToken in the
//! operator's scope and waits until they are gone, that is until the running operator's finalizer
//! has removed what garbage collection cannot: their ClusterRoles, ClusterRoleBindings,
//! RoleBindings in other namespaces and OAuthClients. Only then may the operator and the CRDs go.
//!
//! The Helm chart runs it as a `pre-delete` hook (a Job with the operator's image, under its own
//! short-lived ServiceAccount), so `helm uninstall` leaves no cluster-scoped object behind; by hand
//! it is the first step of an uninstall with kubectl. It never touches the key Secrets, which
//! carry no owner and outlive every install.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use virt_gateway_api::{GateServer, GateToken};

use crate::names::FINALIZER;

/// How often the remaining objects are listed while waiting.
const POLL: Duration = Duration::from_secs(2);
/// How often progress is reported while waiting.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Why the cluster could not be prepared for the uninstall.
#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    /// A request to the API server failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The client's error.
        source: kube::Error,
    },
    /// Objects were still there when the time was up.
    #[error(
        "after {waited:?}, still waiting for {remaining}. Their finalizer ({FINALIZER}) is run by the operator: is it running (kubectl -n <operator namespace> get deployment virt-gateway-operator)? \
If the operator is gone for good, remove the finalizer from each object by hand (kubectl patch ... --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}') and delete what it would have removed: ClusterRoles, ClusterRoleBindings and RoleBindings labelled app.kubernetes.io/managed-by=virt-gateway-operator, and OAuthClients named virt-gateway.<namespace>.<name>."
    )]
    Timeout {
        /// How long it waited.
        waited: Duration,
        /// The objects left, e.g. `GateServer kube-gateway/gateserver-sample`.
        remaining: String,
    },
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// `Kind namespace/name` of every object listed; an absent CRD (404) lists nothing.
async fn remaining<K>(api: &Api<K>) -> Result<Vec<(String, String)>, UninstallError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&()).into_owned();
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .map(|o| {
                (
                    o.namespace().unwrap_or_default(),
                    format!(
                        "{kind} {}/{}",
                        o.namespace().unwrap_or_default(),
                        o.name_any()
                    ),
                )
            })
            .collect()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(source) => Err(UninstallError::Api {
            action: format!("list {kind}s"),
            source,
        }),
    }
}

/// Deletes every object of kind `K` in scope (each once; already deleting or gone is fine).
async fn delete_all<K>(
    client: &Client,
    api: &Api<K>,
    progress: &mut impl FnMut(&str),
) -> Result<usize, UninstallError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&()).into_owned();
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            progress(&format!("no {kind} API: nothing to delete"));
            return Ok(0);
        }
        Err(source) => {
            return Err(UninstallError::Api {
                action: format!("list {kind}s"),
                source,
            });
        }
    };
    let mut deleted = 0;
    for obj in list.items {
        if obj.meta().deletion_timestamp.is_some() {
            continue;
        }
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(UninstallError::Api {
                    action: format!("delete {kind} {ns}/{name}"),
                    source,
                });
            }
        }
    }
    progress(&format!("deleted {deleted} {kind}(s)"));
    Ok(deleted)
}

/// Deletes every GateServer and GateToken in `namespace` (all namespaces when `None`) and waits
/// up to `timeout` until none is left. `progress` receives one line per step.
pub async fn prepare_uninstall(
    client: Client,
    namespace: Option<&str>,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), UninstallError> {
    let servers: Api<GateServer> = api(&client, namespace);
    let tokens: Api<GateToken> = api(&client, namespace);
    progress(&format!(
        "deleting every GateServer and GateToken in {}",
        namespace.map_or("all namespaces".to_owned(), |ns| format!("namespace {ns}"))
    ));
    delete_all(&client, &tokens, &mut progress).await?;
    delete_all(&client, &servers, &mut progress).await?;

    let start = tokio::time::Instant::now();
    let mut last_report = start;
    loop {
        let mut left = remaining(&servers).await?;
        left.extend(remaining(&tokens).await?);
        if left.is_empty() {
            progress(
                "every GateServer and GateToken is gone; their cluster-scoped objects with them",
            );
            return Ok(());
        }
        let names = left
            .iter()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if start.elapsed() >= timeout {
            return Err(UninstallError::Timeout {
                waited: start.elapsed(),
                remaining: names,
            });
        }
        if last_report.elapsed() >= REPORT_EVERY {
            let namespaces: BTreeSet<&str> = left.iter().map(|(ns, _)| ns.as_str()).collect();
            progress(&format!(
                "waiting for the operator's finalizer on {} object(s) in {} namespace(s): {names}",
                left.len(),
                namespaces.len()
            ));
            last_report = tokio::time::Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}
