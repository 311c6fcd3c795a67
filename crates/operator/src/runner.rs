//! Running the operator: endpoints, leader election, and the two controllers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use virt_gateway_api::{GateServer, GateTokenPhase, JWT_SECRET_NAME};

use crate::config::{LeaderElection, OperatorConfig};
use crate::context::Context;
use crate::discovery::{CachedDiscovery, discover, oauth_client_resource, route_resource};
use crate::error::{Error, Result};
use crate::gatetoken::CachedGateToken;
use crate::http::{Endpoints, Health, serve};
use crate::metrics::Metrics;
use crate::names::{
    ANNOTATION_SERVER, FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_SERVER_NAMESPACE, MANAGED_BY,
    label_value, parse_ref,
};
use crate::signer::Signer;
use crate::{gateserver, gatetoken};

type Stop = Shared<BoxFuture<'static, ()>>;

/// Runs the operator until `shutdown` completes (then stops gracefully: running reconciles
/// finish, the Lease is released) or this replica loses the leader Lease
/// ([`Error::LostLeadership`]).
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let registry = Arc::new(registry);
    let health = Arc::new(Health::default());
    let (stop_http, stop_http_rx) = watch::channel(false);
    if let Some(address) = config.metrics_address {
        let bound = serve(address, Endpoints::Metrics(registry), stop_http_rx.clone()).await?;
        tracing::info!(%bound, "serving /metrics");
    }
    if let Some(address) = config.health_address {
        let bound = serve(address, Endpoints::Probes(health.clone()), stop_http_rx).await?;
        tracing::info!(%bound, "serving /healthz and /readyz");
    }
    let shutdown: Stop = shutdown.boxed().shared();
    let result = run_inner(client, &config, metrics, health, shutdown).await;
    let _ = stop_http.send(true);
    result
}

async fn run_inner(
    client: Client,
    config: &OperatorConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: Stop,
) -> Result<()> {
    // Wait for the CRDs (not ready meanwhile) instead of crash-looping.
    loop {
        match crds_served(&client).await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(error = %e, "waiting for the API server and the CRDs");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = shutdown.clone() => return Ok(()),
                }
            }
        }
    }
    match &config.leader_election {
        None => {
            metrics.leader.set(1);
            run_controllers(client, config, metrics, health, shutdown).await;
            Ok(())
        }
        Some(le) => lead(client, config, le, metrics, health, shutdown).await,
    }
}

async fn crds_served(client: &Client) -> Result<()> {
    let list = client
        .list_api_group_resources(virt_gateway_api::API_VERSION)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => {
                Error::CrdMissing(virt_gateway_api::API_VERSION.to_owned())
            }
            e => Error::kube(format!("discover {}", virt_gateway_api::API_VERSION))(e),
        })?;
    for plural in ["gateservers", "gatetokens"] {
        if !list.resources.iter().any(|r| r.name == plural) {
            return Err(Error::CrdMissing(format!(
                "{plural}.{}",
                virt_gateway_api::GROUP
            )));
        }
    }
    Ok(())
}

async fn lead(
    client: Client,
    config: &OperatorConfig,
    le: &LeaderElection,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: Stop,
) -> Result<()> {
    let manager = LeaseManagerBuilder::new(client.clone(), &le.lease_name)
        .with_namespace(&le.lease_namespace)
        .with_identity(&le.identity)
        .with_duration(le.lease_duration.as_secs().max(1))
        .with_grace(le.renew_grace.as_secs())
        .with_field_manager(format!("{FIELD_MANAGER}-lease-{}", le.identity))
        .build()
        .await
        .map_err(|e| Error::LeaderElection(e.to_string()))?;
    let (mut leader, task) = manager.watch().await;
    // A standby replica is healthy and ready: it is waiting for the Lease.
    health.set_ready(true);
    tracing::info!(lease = %format!("{}/{}", le.lease_namespace, le.lease_name), identity = %le.identity, "waiting for the leader Lease");
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    return Err(Error::LeaderElection("the Lease manager stopped".into()));
                }
            }
            () = shutdown.clone() => {
                drop(leader);
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                return Ok(());
            }
        }
    }
    tracing::info!(identity = %le.identity, "acquired the leader Lease");
    metrics.leader.set(1);

    // Stop the controllers on shutdown or when the Lease is lost.
    let (why_tx, why_rx) = watch::channel(None::<bool>);
    let monitor_shutdown = shutdown.clone();
    let monitor = tokio::spawn(async move {
        let lost = async {
            loop {
                if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                    break;
                }
            }
        };
        tokio::select! {
            () = lost => { let _ = why_tx.send(Some(true)); }
            () = monitor_shutdown => { let _ = why_tx.send(Some(false)); }
        }
        leader
    });
    let mut stop_rx = why_rx.clone();
    let stop: Stop = async move {
        let _ = stop_rx.wait_for(Option::is_some).await;
    }
    .boxed()
    .shared();
    run_controllers(client, config, metrics.clone(), health, stop).await;
    metrics.leader.set(0);
    let lost = *why_rx.borrow() == Some(true);
    // Dropping the receiver makes the Lease manager release the Lease (if still held).
    if let Ok(leader) = monitor.await {
        drop(leader);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    if lost {
        tracing::error!("lost the leader Lease");
        Err(Error::LostLeadership)
    } else {
        tracing::info!("released the leader Lease");
        Ok(())
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn server_of<K: Resource>(obj: &K) -> Option<ObjectRef<GateServer>> {
    let (ns, name) = parse_ref(obj.meta().annotations.as_ref()?.get(ANNOTATION_SERVER)?)?;
    Some(ObjectRef::new(name).within(ns))
}

/// A controller whose cache keeps what `trim` leaves: the reconcilers never read
/// `managedFields` (two field managers' field sets per GateToken) nor an issued JWT, and they
/// were most of a cached object's memory.
fn cached_controller<K>(api: Api<K>, trim: fn(&mut K)) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(stream, reader)
}

async fn run_controllers(
    client: Client,
    config: &OperatorConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Stop,
) {
    let ns = config.namespace.as_deref();
    let apis = match discover(&client).await {
        Ok(apis) => apis,
        Err(e) => {
            tracing::warn!(error = %e, "API discovery failed; assuming no Route and OAuthClient APIs");
            Default::default()
        }
    };
    tracing::info!(
        route_api = apis.route,
        oauth_client_api = apis.oauth_client,
        platform = ?apis.platform(),
        namespace = ns.unwrap_or("*"),
        "starting controllers"
    );
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            config.gateway_defaults.clone(),
            metrics.clone(),
            Signer::new(config.signing_threads),
            CachedDiscovery::new(client.clone(), apis),
            config.instance.clone(),
        )
        .with_token_policy(
            config.service_account_tokens,
            config.allow_unchecked_delegation,
        ),
    );
    if config.allow_unchecked_delegation {
        tracing::warn!(
            "--allow-unchecked-delegation: GateTokens are signed without the delegation policy; anyone who may create a GateToken can grant whatever the gateway may do"
        );
    }

    // Our children carry the managed-by label; in namespace mode, cluster-scoped and
    // cross-namespace ones are narrowed to this namespace's GateServers.
    let mut managed = format!("{LABEL_MANAGED_BY}={MANAGED_BY}");
    if let Some(ns) = ns {
        managed.push_str(&format!(",{LABEL_SERVER_NAMESPACE}={}", label_value(ns)));
    }
    let owned = watcher::Config::default().labels(&managed);
    let secret = watcher::Config::default().fields(&format!("metadata.name={JWT_SECRET_NAME}"));

    let servers = cached_controller(scoped::<GateServer>(&client, ns), |gs| {
        gatetoken::trim_metadata(gs.meta_mut())
    });
    let server_store = servers.store();
    // The cache keeps each GateToken's identity and phase only; reconcile GETs the token.
    let tokens = cached_controller(
        scoped::<CachedGateToken>(&client, ns),
        gatetoken::trim_cached_meta,
    );
    let token_store = tokens.store();
    metrics.observe_stores(token_store.clone(), server_store.clone());
    ctx.observe_servers(server_store.clone());

    let mut servers = servers
        .owns(scoped::<Deployment>(&client, ns), owned.clone())
        .owns(scoped::<Service>(&client, ns), owned.clone())
        .owns(scoped::<ServiceAccount>(&client, ns), owned.clone())
        .owns(scoped::<Role>(&client, ns), owned.clone())
        .owns(scoped::<Ingress>(&client, ns), owned.clone())
        .watches(
            Api::<ClusterRole>::all(client.clone()),
            owned.clone(),
            |o| server_of(&o),
        )
        .watches(
            Api::<ClusterRoleBinding>::all(client.clone()),
            owned.clone(),
            |o| server_of(&o),
        )
        .watches(
            Api::<RoleBinding>::all(client.clone()),
            owned.clone(),
            |o| server_of(&o),
        )
        .watches(scoped::<Secret>(&client, ns), secret.clone(), {
            let store = server_store.clone();
            move |s: Secret| {
                let ns = s.namespace();
                store
                    .state()
                    .iter()
                    .filter(|gs| gs.namespace() == ns)
                    .map(|gs| ObjectRef::from_obj(gs.as_ref()))
                    .collect::<Vec<_>>()
            }
        });
    if apis.route {
        let ar = route_resource();
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        servers = servers.owns_with(api, ar, owned.clone());
    }
    if apis.oauth_client {
        let ar = oauth_client_resource();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        servers = servers.watches_with(api, ar, owned.clone(), |o| server_of(&o));
    }
    let servers = servers
        .with_config(controller::Config::default().concurrency(config.server_concurrency))
        .graceful_shutdown_on(stop.clone())
        .run(gateserver::reconcile, gateserver::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "GateServer controller");
            }
        });

    let tokens = tokens
        .watches(scoped::<Secret>(&client, ns), secret, {
            let store = token_store.clone();
            move |s: Secret| {
                let ns = s.namespace();
                store
                    .state()
                    .iter()
                    .filter(|t| t.namespace() == ns)
                    .filter(|t| {
                        // Only tokens still waiting to be signed care about the key.
                        matches!(t.phase(), Ok(GateTokenPhase::New | GateTokenPhase::Error))
                    })
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            }
        })
        .with_config(controller::Config::default().concurrency(config.token_concurrency))
        .graceful_shutdown_on(stop)
        .run(gatetoken::reconcile, gatetoken::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "GateToken controller");
            }
        });
    health.set_ready(true);
    futures::join!(servers, tokens);
    tracing::info!("controllers stopped");
}
