//! State shared by the reconcilers, and small Kubernetes helpers (server-side apply, delete by
//! label, Events).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use virt_gateway_api::GateServer;

use crate::builders::GatewayDefaults;
use crate::delegation::DelegationGuard;
use crate::discovery::CachedDiscovery;
use crate::error::{Error, Result, backoff, has_code};
use crate::metrics::Metrics;
use crate::names::FIELD_MANAGER;
use crate::signer::Signer;

/// Longest backoff between retries of one object.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Retry interval after a permission error (for example a refused RBAC escalation).
pub const FORBIDDEN_RETRY: Duration = Duration::from_secs(120);

/// Shared state of the reconcilers.
pub struct Context {
    /// The client.
    pub client: Client,
    /// Operator-wide default images.
    pub defaults: GatewayDefaults,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The signing pool.
    pub signer: Signer,
    /// Optional APIs (Route, OAuthClient).
    pub discovery: CachedDiscovery,
    /// Who reports Events.
    pub reporter: Reporter,
    /// Whether the delegation rule is enforced (checked before signing).
    pub delegation: DelegationGuard,
    /// Whether `generateServiceAccount` GateTokens are issued.
    pub service_account_tokens: bool,
    failures: Mutex<HashMap<String, u32>>,
    issued: Mutex<HashSet<String>>,
    servers: std::sync::OnceLock<Store<GateServer>>,
}

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A new context.
    pub fn new(
        client: Client,
        defaults: GatewayDefaults,
        metrics: Arc<Metrics>,
        signer: Signer,
        discovery: CachedDiscovery,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(instance),
        };
        Self {
            delegation: DelegationGuard::new(client.clone(), false),
            service_account_tokens: false,
            client,
            defaults,
            metrics,
            signer,
            discovery,
            reporter,
            failures: Mutex::default(),
            issued: Mutex::default(),
            servers: std::sync::OnceLock::new(),
        }
    }

    /// The token policy: `--enable-service-account-tokens`, `--allow-unchecked-delegation`.
    pub fn with_token_policy(
        mut self,
        service_account_tokens: bool,
        allow_unchecked: bool,
    ) -> Self {
        self.service_account_tokens = service_account_tokens;
        self.delegation = DelegationGuard::new(self.client.clone(), allow_unchecked);
        self
    }

    /// Lets the token reconciler see the GateServers (set once the controllers exist).
    pub fn observe_servers(&self, store: Store<GateServer>) {
        let _ = self.servers.set(store);
    }

    /// Whether a GateServer in `namespace` will create the key Secret (`generateSecret`), so a
    /// token waiting for it need not be reported as an error.
    pub fn key_is_coming(&self, namespace: &str) -> bool {
        self.servers.get().is_some_and(|store| {
            store.state().iter().any(|gs| {
                gs.metadata.namespace.as_deref() == Some(namespace)
                    && gs.metadata.deletion_timestamp.is_none()
                    && gs.spec.generate_secret()
            })
        })
    }

    /// Records a failure of `key` and returns how long to wait before the next attempt.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key.to_owned()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        backoff(n, MAX_BACKOFF)
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset_backoff(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// Remembers that this process wrote a token for `uid`, until the cache shows it.
    pub fn mark_issued(&self, uid: &str) {
        if let Ok(mut i) = self.issued.lock() {
            i.insert(uid.to_owned());
        }
    }

    /// Whether this process wrote a token for `uid` that the cache does not show yet.
    pub fn issued_but_not_seen(&self, uid: &str) -> bool {
        self.issued.lock().map(|i| i.contains(uid)).unwrap_or(false)
    }

    /// Forgets `uid` (the cache shows its token, or it is gone).
    pub fn seen_issued(&self, uid: &str) {
        if let Ok(mut i) = self.issued.lock() {
            i.remove(uid);
        }
    }

    /// Publishes an Event about `obj`; failures are only logged.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let reference = obj.object_ref(&());
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(&note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        // A fresh Recorder per Event: its de-duplication cache would otherwise hold every Event
        // for six minutes (thousands when tokens arrive in bulk), and our Events are transitions
        // that do not repeat.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason, "cannot publish an Event");
        }
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The API server's own words for an error: the Status message for API errors.
pub fn api_message(err: &Error) -> String {
    match err {
        Error::Kube {
            action,
            source: kube::Error::Api(status),
        } => format!(
            "{action}: {} ({}, HTTP {})",
            status.message, status.reason, status.code
        ),
        other => other.to_string(),
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// `Kind namespace/name` or `Kind name`, for messages.
pub fn describe<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let kind = K::kind(&());
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{kind} {ns}/{}", obj.name_any()),
        None => format!("{kind} {}", obj.name_any()),
    }
}

/// Server-side apply of a namespaced object (field manager `virt-gateway-operator`, force).
pub async fn apply_namespaced<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    api.patch(&obj.name_any(), &apply_params(), &Patch::Apply(obj))
        .await
        .map_err(Error::kube(format!("apply {}", describe(obj))))
}

/// Server-side apply of a cluster-scoped object.
pub async fn apply_cluster<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    api.patch(&obj.name_any(), &apply_params(), &Patch::Apply(obj))
        .await
        .map_err(Error::kube(format!("apply {}", describe(obj))))
}

/// Server-side apply of a dynamic object (Route, OAuthClient).
pub async fn apply_dynamic(
    client: &Client,
    resource: &ApiResource,
    obj: &DynamicObject,
) -> Result<DynamicObject> {
    let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let name = obj.name_any();
    api.patch(&name, &apply_params(), &Patch::Apply(obj))
        .await
        .map_err(Error::kube(format!("apply {} {name}", resource.kind)))
}

/// Deletes `name` through `api`, treating NotFound as done.
pub async fn delete_named<K>(api: &Api<K>, kind: &str, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if has_code(&e, 404) => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {kind} {name}"))(e)),
    }
}

/// Lists the objects of `api` matching `selector`, from the API server's watch cache when
/// `cached` (cheap, possibly a moment stale) or from etcd.
pub async fn list_labelled<K>(
    api: &Api<K>,
    kind: &str,
    selector: &str,
    cached: bool,
) -> Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut params = ListParams::default().labels(selector);
    if cached {
        params = params.match_any();
    }
    Ok(api
        .list(&params)
        .await
        .map_err(Error::kube(format!("list {kind} with {selector}")))?
        .items)
}

/// `(namespace, name)` of an object to keep when pruning.
pub type Keep<'a> = (Option<&'a str>, &'a str);

/// What to keep of an optional desired object, in `namespace` (`None`: cluster-scoped): the
/// object, or nothing when the spec no longer asks for it.
pub fn keep_only<'a, K: kube::Resource>(
    namespace: Option<&'a str>,
    obj: Option<&'a K>,
) -> Vec<Keep<'a>> {
    obj.and_then(|o| o.meta().name.as_deref())
        .map(|name| (namespace, name))
        .into_iter()
        .collect()
}

fn kept(keep: &[Keep<'_>], ns: Option<&str>, name: &str) -> bool {
    keep.iter().any(|(kns, kname)| *kns == ns && *kname == name)
}

fn deleted_or_gone(
    result: std::result::Result<impl Sized, kube::Error>,
    what: String,
    deleted: &mut Vec<String>,
) -> Result<()> {
    match result {
        Ok(_) => {
            deleted.push(what);
            Ok(())
        }
        Err(e) if has_code(&e, 404) => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {what}"))(e)),
    }
}

/// Deletes every namespaced object of kind `K` matching `selector` (in `namespace`, or in all
/// namespaces) that is not in `keep`. Returns what was deleted.
pub async fn prune_namespaced<K>(
    client: &Client,
    namespace: Option<&str>,
    selector: &str,
    keep: &[Keep<'_>],
    cached: bool,
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut deleted = Vec::new();
    for obj in list_labelled(&api, &kind, selector, cached).await? {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.name_any();
        if kept(keep, Some(&ns), &name) {
            continue;
        }
        let scoped: Api<K> = Api::namespaced(client.clone(), &ns);
        let result = scoped.delete(&name, &DeleteParams::background()).await;
        deleted_or_gone(result, format!("{kind} {ns}/{name}"), &mut deleted)?;
    }
    Ok(deleted)
}

/// Deletes every cluster-scoped object of kind `K` matching `selector` that is not in `keep`.
pub async fn prune_cluster<K>(
    client: &Client,
    selector: &str,
    keep: &[Keep<'_>],
    cached: bool,
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope> + Clone + DeserializeOwned + Debug,
{
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::all(client.clone());
    let mut deleted = Vec::new();
    for obj in list_labelled(&api, &kind, selector, cached).await? {
        let name = obj.name_any();
        if kept(keep, None, &name) {
            continue;
        }
        let result = api.delete(&name, &DeleteParams::background()).await;
        deleted_or_gone(result, format!("{kind} {name}"), &mut deleted)?;
    }
    Ok(deleted)
}

/// Deletes every dynamic object (Route, OAuthClient) matching `selector` (in `namespace`, or
/// cluster-scoped when `None`) that is not in `keep`.
pub async fn prune_dynamic(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    selector: &str,
    keep: &[Keep<'_>],
    cached: bool,
) -> Result<Vec<String>> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let mut deleted = Vec::new();
    for obj in list_labelled(&api, &resource.kind, selector, cached).await? {
        let name = obj.name_any();
        if kept(keep, obj.metadata.namespace.as_deref(), &name) {
            continue;
        }
        let result = api.delete(&name, &DeleteParams::background()).await;
        deleted_or_gone(result, format!("{} {name}", resource.kind), &mut deleted)?;
    }
    Ok(deleted)
}

/// Whether the API error is a 409 AlreadyExists or Conflict.
pub fn is_conflict(err: &Error) -> bool {
    err.status_code() == Some(409)
}
