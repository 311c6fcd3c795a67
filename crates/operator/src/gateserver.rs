//! The GateServer reconciler: read -> validate -> build (pure) -> server-side apply -> prune ->
//! status. Runs continuously: a deleted or edited child comes back, spec edits propagate, and
//! objects the spec no longer asks for are removed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use virt_gateway_api::conditions::{
    ConditionStatus, new_condition, remove_condition, set_condition,
};
use virt_gateway_api::{GateServer, GateServerPhase, GateServerStatus, JWT_SECRET_NAME};
use virt_gateway_auth::keys::KeyAlgorithm;

use crate::builders::server::{OAUTH_SECRET_KEY, SIGNIN_KEY_SECRET_KEY, ServerInputs};
use crate::builders::{DesiredServer, Exposure, OAuthPlan, build_server};
use crate::context::{
    Context, FORBIDDEN_RETRY, api_message, apply_cluster, apply_dynamic, apply_namespaced,
    keep_only, prune_cluster, prune_dynamic, prune_namespaced, truncate,
};
use crate::discovery::{oauth_client_resource, route_resource};
use crate::error::{Category, Error, Result, has_code};
use crate::keysecret::{self, KeyInfo, KeySecretError};
use crate::metrics::GATESERVER;
use crate::names::{
    COMPONENT_ACCESS, COMPONENT_CONSOLE_LEASES, COMPONENT_GATEWAY, COMPONENT_OAUTH, FIELD_MANAGER,
    FINALIZER, LABEL_COMPONENT, oauth_client_name, oauth_secret_name, selector, server_labels,
    server_selector_labels, signin_key_secret_name,
};

/// How often a Ready GateServer is reconciled even without events (belt and braces).
pub const RESYNC: Duration = Duration::from_secs(600);

/// Condition types of a GateServer.
pub mod condition {
    /// Every object of the gateway is in place (Gen B's phase Ready).
    pub const READY: &str = "Ready";
    /// Mirrors the gateway Deployment's Available condition.
    pub const AVAILABLE: &str = "Available";
    /// Something the operator cannot fix by itself is wrong; the message says what.
    pub const DEGRADED: &str = "Degraded";
    /// How the gateway is reached from outside (Ingress or Route), or why it is not.
    pub const EXPOSED: &str = "Exposed";
    /// The OAuthClient (only when generateOauthClient is set).
    pub const OAUTH_CLIENT: &str = "OAuthClient";
    /// True (a warning) while this namespace's key is published (publishJWKS) and a GateServer
    /// of the namespace runs an image other than this operator's gateway, which may be the
    /// upstream Go gateway that accepts HS256 tokens forged with the public key (review §2).
    pub const JWKS_FORGERY: &str = "JWKSForgery";
}

/// Sets (or removes) the JWKSForgery warning of `gs`, and emits a Warning event when it appears
/// or changes. The namespace's other GateServers are read here; a change to one of them is seen
/// at this server's next reconcile (at the latest [`RESYNC`]).
async fn jwks_forgery(
    ctx: &Context,
    gs: &GateServer,
    ns: &str,
    status: &mut GateServerStatus,
    events: &mut Vec<(EventType, &'static str, String)>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let peers = match Api::<GateServer>::namespaced(ctx.client.clone(), ns)
        .list(&Default::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(error = %e, namespace = ns, "cannot list the namespace's GateServers; only this one is checked for JWKS forgery");
            Vec::new()
        }
    };
    let warning =
        crate::builders::server::jwks_forgery_warning(gs, &peers, &ctx.defaults.gateway_image);
    let reason = "PublishedKeyWithForeignGateway";
    match warning {
        None => {
            remove_condition(&mut status.conditions, condition::JWKS_FORGERY);
        }
        Some(message) => {
            let old = virt_gateway_api::find_condition(&status.conditions, condition::JWKS_FORGERY)
                .map(|c| c.message.clone());
            if old.as_deref() != Some(message.as_str()) {
                events.push((EventType::Warning, reason, message.clone()));
            }
            set_condition(
                &mut status.conditions,
                new_condition(
                    condition::JWKS_FORGERY,
                    ConditionStatus::True,
                    reason,
                    message,
                    generation,
                    now,
                ),
            );
        }
    }
}

fn key(gs: &GateServer) -> String {
    format!(
        "gateserver/{}/{}",
        gs.namespace().unwrap_or_default(),
        gs.name_any()
    )
}

/// The reconcile function of the GateServer controller.
pub async fn reconcile(gs: Arc<GateServer>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let key = key(&gs);
    let ns = gs
        .namespace()
        .ok_or(crate::builders::BuildError::MissingMetadata {
            kind: "GateServer",
            field: "namespace",
        })?;
    let api: Api<GateServer> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, gs, |event| async {
        match event {
            FinalizerEvent::Apply(gs) => apply(gs, &ctx).await,
            FinalizerEvent::Cleanup(gs) => cleanup(gs, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconciled(GATESERVER, start.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(&key);
    }
    result
}

/// The error policy of the GateServer controller: backoff per object.
pub fn error_policy(gs: Arc<GateServer>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(GATESERVER, err.metric_label());
    tracing::warn!(gateserver = %key(&gs), error = %err, "reconcile failed");
    match err.category() {
        Category::Forbidden => Action::requeue(FORBIDDEN_RETRY),
        _ => Action::requeue(ctx.next_backoff(&key(&gs))),
    }
}

/// The key Secret, as found or created.
struct KeyState {
    secret: Option<Secret>,
    check: std::result::Result<KeyInfo, KeySecretError>,
    created: bool,
}

async fn ensure_key_secret(gs: &GateServer, ns: &str, ctx: &Context) -> Result<KeyState> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let read = |what: &'static str| Error::kube(format!("{what} Secret {ns}/{JWT_SECRET_NAME}"));
    if let Some(secret) = api.get_opt(JWT_SECRET_NAME).await.map_err(read("read"))? {
        let check = keysecret::check(&secret);
        return Ok(KeyState {
            secret: Some(secret),
            check,
            created: false,
        });
    }
    if !gs.spec.generate_secret() {
        return Ok(KeyState {
            secret: None,
            check: Err(KeySecretError::Missing {
                namespace: ns.to_owned(),
            }),
            created: false,
        });
    }
    let key = ctx.signer.generate(KeyAlgorithm::Rsa).await?;
    ctx.metrics.keys_generated.inc();
    let secret = keysecret::build(ns, &key).map_err(Error::KeyGeneration)?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    // A plain create: if another GateServer (or replica) created the Secret meanwhile, its key
    // wins and is shared; an existing key is never replaced.
    match api.create(&params, &secret).await {
        Ok(created) => Ok(KeyState {
            check: keysecret::check(&created),
            secret: Some(created),
            created: true,
        }),
        Err(e) if has_code(&e, 409) => {
            let existing = api.get(JWT_SECRET_NAME).await.map_err(read("read"))?;
            Ok(KeyState {
                check: keysecret::check(&existing),
                secret: Some(existing),
                created: false,
            })
        }
        Err(e) => Err(read("create")(e)),
    }
}

/// The OAuth client secret: created once (random, never predictable), never updated. The
/// operator may read no Secret but the signing keys, so the value comes from the OAuthClient it
/// wrote before; only for a new OAuthClient is a new value made and its Secret created.
async fn ensure_oauth_secret(gs: &GateServer, ns: &str, ctx: &Context) -> Result<String> {
    let name = gs.name_any();
    let secret_name = oauth_secret_name(&name);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let client_name = oauth_client_name(ns, &name);
    let clients: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &oauth_client_resource());
    let known = clients
        .get_opt(&client_name)
        .await
        .map_err(Error::kube(format!("read OAuthClient {client_name}")))?
        .and_then(|c| {
            c.data
                .get("secret")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        })
        .filter(|s| !s.is_empty());
    let value = match &known {
        Some(value) => value.clone(),
        None => {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_key()?)
        }
    };
    let secret = owned_secret(
        gs,
        ns,
        &secret_name,
        COMPONENT_OAUTH,
        OAUTH_SECRET_KEY,
        &value,
    );
    match api.create(&create_params(), &secret).await {
        Ok(_) => Ok(value),
        // The Secret of the OAuthClient's value is there (created with it).
        Err(e) if has_code(&e, 409) && known.is_some() => Ok(value),
        Err(e) if has_code(&e, 409) => {
            // A Secret without its OAuthClient (removed with the Route, or by hand): its value can
            // be read only with more than the operator's least-privilege RBAC.
            let existing = api.get(&secret_name).await.map_err(|e| {
                Error::kube(format!(
                    "read Secret {ns}/{secret_name} (its OAuthClient {client_name} is gone and the operator may read no Secret but the signing keys: delete the Secret to let the operator create a new OAuth client secret)"
                ))(e)
            })?;
            existing
                .data
                .as_ref()
                .and_then(|d| d.get(OAUTH_SECRET_KEY))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .ok_or_else(|| {
                    Error::Task(format!(
                        "Secret {ns}/{secret_name} has no {OAUTH_SECRET_KEY}; delete it to let the operator create a new OAuth client secret"
                    ))
                })
        }
        Err(e) => Err(Error::kube(format!("create Secret {ns}/{secret_name}"))(e)),
    }
}

/// The Secret with the key sealing sign-in cookies: created once with 32 random bytes (a plain
/// create, never an apply), never read, updated or replaced, so signed-in sessions keep working
/// across operator and gateway restarts; deleting it (by hand) signs everyone out. Owned by the
/// GateServer: it goes with it. Returns whether it was created now.
async fn ensure_signin_key(gs: &GateServer, ns: &str, ctx: &Context) -> Result<bool> {
    let name = gs.name_any();
    let secret_name = signin_key_secret_name(&name);
    use base64::Engine as _;
    let value = base64::engine::general_purpose::STANDARD.encode(random_key()?);
    let secret = owned_secret(
        gs,
        ns,
        &secret_name,
        COMPONENT_GATEWAY,
        SIGNIN_KEY_SECRET_KEY,
        &value,
    );
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match api.create(&create_params(), &secret).await {
        Ok(_) => Ok(true),
        Err(e) if has_code(&e, 409) => Ok(false),
        Err(e) => Err(Error::kube(format!("create Secret {ns}/{secret_name}"))(e)),
    }
}

/// 32 random bytes: an OAuth client secret or a cookie-sealing key.
fn random_key() -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Task("random bytes".into()))?;
    Ok(bytes)
}

/// An Opaque Secret of one key, owned by the GateServer (it goes with it).
fn owned_secret(
    gs: &GateServer,
    ns: &str,
    secret_name: &str,
    component: &str,
    key: &str,
    value: &str,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(server_labels(ns, &gs.name_any(), component)),
            owner_references: gs.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some([(key.to_owned(), ByteString(value.as_bytes().to_vec()))].into()),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// A plain create (never an apply), so that a Secret already there is never replaced.
fn create_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

/// Applies every desired object; returns the applied Deployment and the failures.
async fn apply_all(ctx: &Context, desired: &DesiredServer) -> (Option<Deployment>, Vec<Error>) {
    let c = &ctx.client;
    let mut failures = Vec::new();
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            failures.push(e);
        }
    };
    note(
        apply_namespaced(c, &desired.service_account)
            .await
            .map(drop),
    );
    note(apply_cluster(c, &desired.cluster_role).await.map(drop));
    if let Some(crb) = &desired.cluster_role_binding {
        note(apply_cluster(c, crb).await.map(drop));
    }
    if let Some(rb) = &desired.access_role_binding {
        note(apply_namespaced(c, rb).await.map(drop));
    }
    note(
        apply_namespaced(c, &desired.token_reader_role)
            .await
            .map(drop),
    );
    note(
        apply_namespaced(c, &desired.token_reader_binding)
            .await
            .map(drop),
    );
    if let Some(rb) = &desired.console_leases_binding {
        note(apply_namespaced(c, rb).await.map(drop));
    }
    note(apply_namespaced(c, &desired.service).await.map(drop));
    if let Some(pdb) = &desired.disruption_budget {
        note(apply_namespaced(c, pdb).await.map(drop));
    }
    if let Some(ingress) = &desired.ingress {
        note(apply_namespaced(c, ingress).await.map(drop));
    }
    if let Some(route) = &desired.route {
        note(apply_dynamic(c, &route_resource(), route).await.map(drop));
    }
    if let Some(oauth) = &desired.oauth_client {
        note(
            apply_dynamic(c, &oauth_client_resource(), oauth)
                .await
                .map(drop),
        );
    }
    let deployment = match apply_namespaced(c, &desired.deployment).await {
        Ok(d) => Some(d),
        Err(e) => {
            failures.push(e);
            None
        }
    };
    (deployment, failures)
}

/// Removes objects of this GateServer that the spec no longer asks for.
async fn prune_stale(
    ctx: &Context,
    ns: &str,
    name: &str,
    desired: &DesiredServer,
    apis: crate::builders::ApiAvailability,
) -> (Vec<String>, Vec<Error>) {
    let c = &ctx.client;
    let base = server_selector_labels(ns, name);
    let with = |component: &str| {
        let mut l = base.clone();
        l.insert(LABEL_COMPONENT.to_owned(), component.to_owned());
        selector(&l)
    };
    let access = with(COMPONENT_ACCESS);
    let gateway = with(COMPONENT_GATEWAY);
    let oauth = with(COMPONENT_OAUTH);
    let console_leases = with(COMPONENT_CONSOLE_LEASES);
    let name_of = |m: &ObjectMeta| m.name.clone().unwrap_or_default();

    let cr_name = name_of(&desired.cluster_role.metadata);
    let rb = desired
        .access_role_binding
        .as_ref()
        .map(|b| (b.metadata.namespace.clone(), name_of(&b.metadata)));

    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    let mut note = |r: Result<Vec<String>>| match r {
        Ok(d) => deleted.extend(d),
        Err(e) => failures.push(e),
    };
    note(prune_cluster::<ClusterRole>(c, &access, &[(None, &cr_name)], true).await);
    let keep_crb = keep_only(None, desired.cluster_role_binding.as_ref());
    note(prune_cluster::<ClusterRoleBinding>(c, &access, &keep_crb, true).await);
    let keep_rb: Vec<_> = rb
        .iter()
        .map(|(rns, n)| (rns.as_deref(), n.as_str()))
        .collect();
    note(prune_namespaced::<RoleBinding>(c, None, &access, &keep_rb, true).await);
    // Back to one replica (or unshared consoles): the gateway no longer needs Leases.
    let keep_leases = keep_only(Some(ns), desired.console_leases_binding.as_ref());
    note(prune_namespaced::<RoleBinding>(c, Some(ns), &console_leases, &keep_leases, true).await);
    let keep_ingress = keep_only(Some(ns), desired.ingress.as_ref());
    note(prune_namespaced::<Ingress>(c, Some(ns), &gateway, &keep_ingress, true).await);
    let keep_budget = keep_only(Some(ns), desired.disruption_budget.as_ref());
    note(prune_namespaced::<PodDisruptionBudget>(c, Some(ns), &gateway, &keep_budget, true).await);
    if apis.route {
        let keep = keep_only(Some(ns), desired.route.as_ref());
        note(prune_dynamic(c, &route_resource(), Some(ns), &gateway, &keep, true).await);
    }
    if apis.oauth_client {
        let keep = keep_only(None, desired.oauth_client.as_ref());
        note(prune_dynamic(c, &oauth_client_resource(), None, &oauth, &keep, true).await);
    }
    (deleted, failures)
}

fn availability(deployment: Option<&Deployment>) -> (ConditionStatus, String, String) {
    let found = deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_.as_deref() == Some("Available")));
    match (deployment, found) {
        (None, _) => (
            ConditionStatus::Unknown,
            "DeploymentUnknown".to_owned(),
            "the gateway Deployment could not be applied".to_owned(),
        ),
        (Some(_), None) => (
            ConditionStatus::Unknown,
            "DeploymentPending".to_owned(),
            "the gateway Deployment has not reported its availability yet".to_owned(),
        ),
        (Some(_), Some(c)) => {
            let status = match c.status.as_deref().unwrap_or_default() {
                "True" => ConditionStatus::True,
                "False" => ConditionStatus::False,
                _ => ConditionStatus::Unknown,
            };
            let reason = c
                .reason
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "DeploymentAvailability".to_owned());
            let message = format!(
                "gateway Deployment: {}",
                c.message.clone().unwrap_or_default()
            );
            (status, reason, message)
        }
    }
}

fn exposure_condition(exposure: &Exposure, name: &str) -> (ConditionStatus, &'static str, String) {
    match exposure {
        Exposure::Ingress { host } => (
            ConditionStatus::True,
            "IngressCreated",
            format!("Ingress {name} routes {host} to the gateway Service"),
        ),
        Exposure::Route { host: Some(host) } => (
            ConditionStatus::True,
            "RouteCreated",
            format!("Route {name} routes {host} to the gateway Service"),
        ),
        Exposure::Route { host: None } => (
            ConditionStatus::True,
            "RouteCreated",
            format!("Route {name} exposes the gateway Service on a host chosen by OpenShift (set spec.route to choose one)"),
        ),
        Exposure::RouteApiMissing => (
            ConditionStatus::False,
            "RouteAPIUnavailable",
            "generateRoute is true but this cluster does not serve route.openshift.io/v1 (OpenShift only): no Route was created; set generateRoute: false to get an Ingress instead".to_owned(),
        ),
        Exposure::NoHost => (
            ConditionStatus::False,
            "NoRoute",
            "spec.route is empty: no Ingress was created; set spec.route to the gateway's external host name".to_owned(),
        ),
    }
}

struct Outcome {
    status: GateServerStatus,
    events: Vec<(EventType, &'static str, String)>,
}

fn ready_condition(
    status: &mut GateServerStatus,
    ready: std::result::Result<(), (&'static str, String)>,
    generation: Option<i64>,
    now: Timestamp,
) {
    match ready {
        Ok(()) => {
            status.set_phase(GateServerPhase::Ready);
            set_condition(
                &mut status.conditions,
                new_condition(
                    condition::READY,
                    ConditionStatus::True,
                    "Ready",
                    "All objects of the gateway are in place",
                    generation,
                    now,
                ),
            );
            set_condition(
                &mut status.conditions,
                new_condition(
                    condition::DEGRADED,
                    ConditionStatus::False,
                    "AsExpected",
                    "",
                    generation,
                    now,
                ),
            );
        }
        Err((reason, message)) => {
            let message = truncate(&message, 32_000);
            status.set_phase(GateServerPhase::Error);
            set_condition(
                &mut status.conditions,
                new_condition(
                    condition::READY,
                    ConditionStatus::False,
                    reason,
                    message.clone(),
                    generation,
                    now,
                ),
            );
            set_condition(
                &mut status.conditions,
                new_condition(
                    condition::DEGRADED,
                    ConditionStatus::True,
                    reason,
                    message,
                    generation,
                    now,
                ),
            );
        }
    }
}

async fn write_status(ctx: &Context, gs: &GateServer, ns: &str, outcome: Outcome) -> Result<()> {
    let old = gs.status.clone().unwrap_or_default();
    let changed = old != outcome.status;
    if changed {
        let api: Api<GateServer> = Api::namespaced(ctx.client.clone(), ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch_status(
            &gs.name_any(),
            &params,
            &Patch::Merge(json!({ "status": outcome.status })),
        )
        .await
        .map_err(Error::kube(format!(
            "write status of GateServer {ns}/{}",
            gs.name_any()
        )))?;
    }
    for (type_, reason, note) in outcome.events {
        ctx.event(gs, type_, reason, "Reconcile", note).await;
    }
    Ok(())
}

async fn apply(gs: Arc<GateServer>, ctx: &Context) -> Result<Action> {
    let ns = gs.namespace().unwrap_or_default();
    let name = gs.name_any();
    let generation = gs.metadata.generation;
    let now = Timestamp::now();
    let old = gs.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = generation;
    let mut events = Vec::new();
    let new_generation = old.observed_generation != generation;

    if let Err(e) = gs.spec.validate() {
        let message = format!("{e}; the operator waits for the spec to change");
        ready_condition(
            &mut status,
            Err(("InvalidSpec", message.clone())),
            generation,
            now,
        );
        if old.phase != GateServerPhase::Error.as_str() || new_generation {
            events.push((EventType::Warning, "InvalidSpec", message));
        }
        write_status(ctx, &gs, &ns, Outcome { status, events }).await?;
        return Ok(Action::await_change());
    }
    if new_generation && gs.spec.uses_deprecated_gnerate_secret() {
        events.push((
            EventType::Warning,
            "DeprecatedField",
            "spec.gnerateSecret is a deprecated misspelling of spec.generateSecret; it still works, but write generateSecret".to_owned(),
        ));
    }

    jwks_forgery(ctx, &gs, &ns, &mut status, &mut events, generation, now).await;

    let key = ensure_key_secret(&gs, &ns, ctx).await?;
    if key.created {
        let kid = key
            .check
            .as_ref()
            .map(|k| k.kid.clone())
            .unwrap_or_default();
        events.push((
            EventType::Normal,
            "KeySecretCreated",
            format!("Created the signing key Secret {JWT_SECRET_NAME} (RSA-4096, key id {kid}); it is kept when GateServers are deleted"),
        ));
    }

    let apis = ctx.discovery.get().await;
    let wants_oauth = gs.spec.generate_oauth_client
        && gs.spec.generate_route
        && apis.oauth_client
        && apis.route
        && gs.spec.route().is_some();
    let oauth_secret = if wants_oauth {
        Some(ensure_oauth_secret(&gs, &ns, ctx).await?)
    } else {
        None
    };

    if (gs.spec.signin_redirect_url().is_some() || wants_oauth)
        && ensure_signin_key(&gs, &ns, ctx).await?
    {
        events.push((
            EventType::Normal,
            "SignInKeyCreated",
            format!(
                "Created the Secret {} holding the key that seals sign-in cookies; it is never replaced",
                signin_key_secret_name(&name)
            ),
        ));
    }

    let desired = build_server(ServerInputs {
        server: &gs,
        key_secret: key.secret.as_ref(),
        defaults: &ctx.defaults,
        apis,
        oauth_client_secret: oauth_secret.as_deref(),
    })?;

    let (deployment, mut failures) = apply_all(ctx, &desired).await;
    let (pruned, prune_failures) = prune_stale(ctx, &ns, &name, &desired, apis).await;
    failures.extend(prune_failures);
    if !pruned.is_empty() {
        events.push((
            EventType::Normal,
            "Pruned",
            format!(
                "Removed objects the spec no longer asks for: {}",
                pruned.join(", ")
            ),
        ));
    }

    // Available mirrors the Deployment.
    let (astatus, areason, amessage) = availability(deployment.as_ref());
    set_condition(
        &mut status.conditions,
        new_condition(
            condition::AVAILABLE,
            astatus,
            &areason,
            amessage,
            generation,
            now,
        ),
    );
    let (estatus, ereason, emessage) = exposure_condition(&desired.exposure, &name);
    set_condition(
        &mut status.conditions,
        new_condition(
            condition::EXPOSED,
            estatus,
            ereason,
            emessage.clone(),
            generation,
            now,
        ),
    );
    if estatus == ConditionStatus::False
        && (new_generation
            || virt_gateway_api::find_condition(&old.conditions, condition::EXPOSED)
                .is_none_or(|c| c.reason != ereason))
    {
        events.push((EventType::Warning, ereason, emessage));
    }
    match &desired.oauth {
        OAuthPlan::NotRequested => {
            remove_condition(&mut status.conditions, condition::OAUTH_CLIENT);
        }
        OAuthPlan::Client { name: client } => {
            set_condition(
                &mut status.conditions,
                new_condition(
                    condition::OAUTH_CLIENT,
                    ConditionStatus::True,
                    "OAuthClientCreated",
                    format!(
                        "OAuthClient {client} redirects to the gateway; its secret is in Secret {}",
                        oauth_secret_name(&name)
                    ),
                    generation,
                    now,
                ),
            );
        }
        OAuthPlan::Unavailable { reason, message } => {
            set_condition(
                &mut status.conditions,
                new_condition(
                    condition::OAUTH_CLIENT,
                    ConditionStatus::False,
                    reason,
                    message.clone(),
                    generation,
                    now,
                ),
            );
        }
    }

    for failure in &failures {
        ctx.metrics.failed(GATESERVER, failure.metric_label());
    }
    // Ready: every object in place and a usable key.
    let forbidden = failures.iter().any(|e| e.category() == Category::Forbidden);
    let ready = if !failures.is_empty() {
        let reason = if forbidden {
            "Forbidden"
        } else {
            "ApplyFailed"
        };
        let mut message = failures
            .iter()
            .map(api_message)
            .collect::<Vec<_>>()
            .join("; ");
        if forbidden {
            message.push_str(". If a refused permission is one the gateway's rule grants, the operator lacks it: Kubernetes only lets it grant what it holds (RBAC escalation check); see deploy/virt-gateway-operator-escalate.yaml");
        }
        Err((reason, message))
    } else if let Err(e) = &key.check {
        Err((e.reason(), e.to_string()))
    } else {
        Ok(())
    };
    let was_ready = old.phase == GateServerPhase::Ready.as_str();
    let old_degraded = virt_gateway_api::find_condition(&old.conditions, condition::DEGRADED)
        .map(|c: &Condition| (c.reason.clone(), c.message.clone()));
    match &ready {
        Ok(()) if !was_ready => events.push((
            EventType::Normal,
            "Ready",
            "All objects of the gateway are in place".to_owned(),
        )),
        Err((reason, message))
            if old_degraded
                .as_ref()
                .is_none_or(|(r, m)| r != reason || m != message) =>
        {
            events.push((EventType::Warning, reason, message.clone()))
        }
        _ => {}
    }
    ready_condition(&mut status, ready, generation, now);
    write_status(ctx, &gs, &ns, Outcome { status, events }).await?;

    if failures.is_empty() {
        Ok(Action::requeue(RESYNC))
    } else if forbidden {
        Ok(Action::requeue(FORBIDDEN_RETRY))
    } else if failures.iter().all(|e| e.category() == Category::Invalid) {
        Ok(Action::await_change())
    } else {
        Ok(Action::requeue(ctx.next_backoff(&key_of(&ns, &name))))
    }
}

fn key_of(ns: &str, name: &str) -> String {
    format!("gateserver/{ns}/{name}")
}

/// The finalizer: deletes the GateServer's cluster-scoped and cross-namespace objects by label
/// (so nothing leaks, whatever the spec was). Namespaced children are garbage-collected through
/// their owner references; the key Secret has none and is kept.
async fn cleanup(gs: Arc<GateServer>, ctx: &Context) -> Result<Action> {
    let ns = gs.namespace().unwrap_or_default();
    let name = gs.name_any();
    let c = &ctx.client;
    let all = selector(&server_selector_labels(&ns, &name));
    prune_cluster::<ClusterRoleBinding>(c, &all, &[], false).await?;
    prune_cluster::<ClusterRole>(c, &all, &[], false).await?;
    prune_namespaced::<RoleBinding>(c, None, &all, &[], false).await?;
    let apis = ctx.discovery.get().await;
    if apis.oauth_client {
        prune_dynamic(c, &oauth_client_resource(), None, &all, &[], false).await?;
    }
    tracing::info!(gateserver = %format!("{ns}/{name}"), "finalized: cluster-scoped and cross-namespace objects deleted");
    Ok(Action::await_change())
}
