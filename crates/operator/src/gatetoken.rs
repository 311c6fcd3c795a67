//! The GateToken reconciler: validate, sign once, then follow the token through its phases
//! (Pending -> Ready -> Completed, or Revoked) with requeues at `nbf` and `exp`.
//!
//! A token is signed once and kept: `status.token` is written by one status patch that carries
//! the resourceVersion the operator read, so a stale cache can never overwrite or re-sign an
//! issued token; later writes only change the phase and conditions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use virt_gateway_api::conditions::{
    ConditionStatus, new_condition, remove_condition, set_condition,
};
use virt_gateway_api::{
    EffectiveRule, GateToken, GateTokenData, GateTokenPhase, GateTokenStatus, JWT_SECRET_NAME,
    TokenValidity,
};

use crate::builders::{BuildError, bind_claims, token_account, token_claims, token_data};
use crate::context::{
    Context, FORBIDDEN_RETRY, api_message, apply_cluster, apply_namespaced, prune_cluster,
    prune_namespaced, truncate,
};
use crate::delegation::{self, Verdict};
use crate::error::{Category, Error, Result, has_code};
use crate::keysecret::KeySecretError;
use crate::metrics::GATETOKEN;
use crate::names::{
    FIELD_MANAGER, FINALIZER, LABEL_MANAGED_BY, MANAGED_BY, selector, token_selector_labels,
};

/// Condition types of a GateToken.
pub mod condition {
    /// The token can be used now (phase Ready).
    pub const READY: &str = "Ready";
    /// The token expired (phase Completed), Gen B's condition.
    pub const COMPLETED: &str = "Completed";
    /// The token was revoked (phase Revoked).
    pub const REVOKED: &str = "Revoked";
    /// The token could not be issued (phase Error), Gen B's condition; reason is one of
    /// upstream's `UserDataError`, `PrivateKeyError`, `FailedSA`, `TokenGetterError`.
    pub const ERROR: &str = "Error";
    /// The spec was edited after the token was issued; the issued token did not change.
    pub const SPEC_CHANGED: &str = "SpecChanged";
}

/// Upstream's Error reasons.
pub mod reason {
    /// The spec cannot be signed (invalid rule, `from`, duration).
    pub const USER_DATA: &str = "UserDataError";
    /// The signing key is missing or unusable.
    pub const PRIVATE_KEY: &str = "PrivateKeyError";
    /// The ServiceAccount or its RBAC could not be created.
    pub const FAILED_SA: &str = "FailedSA";
    /// The ServiceAccount token could not be obtained.
    pub const TOKEN_GETTER: &str = "TokenGetterError";
    /// The delegation policy is not in force (or the token predates it): not signed.
    pub const DELEGATION_UNCHECKED: &str = "DelegationUnchecked";
    /// `generateServiceAccount` while the operator does not issue ServiceAccount tokens.
    pub const SERVICE_ACCOUNT_TOKENS_DISABLED: &str = "ServiceAccountTokensDisabled";
}

/// Extra delay added to requeues at `nbf`/`exp`, so that the phase has changed when the
/// reconcile runs.
const TRANSITION_MARGIN: Duration = Duration::from_millis(100);
/// Retry interval while the key Secret is missing or broken (its watch triggers sooner).
const KEY_RETRY: Duration = Duration::from_secs(300);
/// The TokenRequest API's minimum lifetime.
pub const MIN_SA_TOKEN_SECONDS: i64 = 600;
/// Retry interval while the delegation policy is missing.
const DELEGATION_RETRY: Duration = Duration::from_secs(30);

/// Why ServiceAccount tokens are not issued (`--enable-service-account-tokens` is off).
const SERVICE_ACCOUNT_TOKENS_DISABLED_MESSAGE: &str = "ServiceAccount tokens (generateServiceAccount: true) are disabled on this operator: they give the holder a real Kubernetes token; an administrator enables them with --enable-service-account-tokens and deploy/virt-gateway-operator-serviceaccount-tokens.yaml (see Security model in the operator README)";

fn key<K: Resource>(tok: &K) -> String {
    format!(
        "gatetoken/{}/{}",
        tok.namespace().unwrap_or_default(),
        tok.name_any()
    )
}

/// What the controller caches of a GateToken: its identity and its phase, nothing else.
///
/// Why: at 10,000 GateTokens a cached `GateToken` (~1.9 KB with conditions, `status.data` and
/// spec) plus the requeue at its expiry kept the operator above 50 MB. Only the phase is read
/// across tokens (the per-phase gauge, the key-Secret trigger); the reconciler reads the whole
/// object with one GET (`reconcile`). The watch deserializes straight into this type, so a full
/// GateToken is never built for the cache.
#[derive(Clone, Debug, Deserialize, Resource)]
#[resource(inherit = GateToken)]
pub struct CachedGateToken {
    /// Trimmed by `trim_cached_meta` to what the store and controller key on.
    pub metadata: ObjectMeta,
    status: Option<CachedStatus>,
}

#[derive(Clone, Debug, Deserialize)]
struct CachedStatus {
    #[serde(default)]
    phase: String,
}

impl CachedGateToken {
    /// The phase as the API server has it: a token without status is new; `Err` for a phase
    /// this operator does not know.
    pub fn phase(&self) -> Result<GateTokenPhase, virt_gateway_api::UnknownPhase> {
        match &self.status {
            None => Ok(GateTokenPhase::New),
            Some(s) => s.phase.parse(),
        }
    }
}

/// Keeps of a cached GateToken's metadata what the store and the controller key on (name,
/// namespace, uid, resourceVersion); the reconciler reads the rest from its GET.
pub fn trim_cached_meta(tok: &mut CachedGateToken) {
    let m = &mut tok.metadata;
    tok.metadata = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        uid: m.uid.take(),
        resource_version: m.resource_version.take(),
        ..ObjectMeta::default()
    };
}

/// The reconcile function of the GateToken controller: reads the whole GateToken (the cache
/// keeps only its phase, `CachedGateToken`), then reconciles it.
pub async fn reconcile(cached: Arc<CachedGateToken>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = read_and_reconcile(&cached, &ctx).await;
    ctx.metrics.reconciled(GATETOKEN, start.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(&key(cached.as_ref()));
    }
    result
}

async fn read_and_reconcile(cached: &CachedGateToken, ctx: &Arc<Context>) -> Result<Action> {
    let ns = cached.namespace().ok_or(BuildError::MissingMetadata {
        kind: "GateToken",
        field: "namespace",
    })?;
    let name = cached.name_any();
    let api: Api<GateToken> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(mut tok) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("read GateToken {ns}/{name}")))?
    else {
        // Deleted since the watch event: nothing left to do.
        return Ok(Action::await_change());
    };
    // The same view as a cached copy had: no JWT in memory or in status patches.
    trim_cached(&mut tok);
    let tok = Arc::new(tok);
    let has_finalizer = tok.finalizers().iter().any(|f| f == FINALIZER);
    if tok.spec.generate_service_account || has_finalizer {
        // Only ServiceAccount tokens own cluster-scoped or cross-namespace objects.
        finalizer(&api, FINALIZER, tok, |event| async {
            match event {
                FinalizerEvent::Apply(tok) => apply(tok, ctx).await,
                FinalizerEvent::Cleanup(tok) => cleanup(tok, ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        })
    } else if tok.meta().deletion_timestamp.is_some() {
        if let Some(uid) = tok.uid() {
            ctx.seen_issued(&uid);
        }
        Ok(Action::await_change())
    } else {
        apply(tok, ctx).await
    }
}

/// The error policy of the GateToken controller: backoff per object.
pub fn error_policy(tok: Arc<CachedGateToken>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(GATETOKEN, err.metric_label());
    if err.status_code() == Some(409) {
        // The token changed after it was read; the watch brings the new version.
        tracing::debug!(gatetoken = %key(tok.as_ref()), error = %err, "conflict; retrying");
    } else {
        tracing::warn!(gatetoken = %key(tok.as_ref()), error = %err, "reconcile failed");
    }
    match err.category() {
        Category::Forbidden => Action::requeue(FORBIDDEN_RETRY),
        _ => Action::requeue(ctx.next_backoff(&key(tok.as_ref()))),
    }
}

/// The phase a token should be shown in, with its reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shown {
    Pending,
    Ready,
    Completed,
    Revoked,
    Error {
        reason: &'static str,
        message: String,
    },
}

impl Shown {
    fn phase(&self) -> GateTokenPhase {
        match self {
            Self::Pending => GateTokenPhase::Pending,
            Self::Ready => GateTokenPhase::Ready,
            Self::Completed => GateTokenPhase::Completed,
            Self::Revoked => GateTokenPhase::Revoked,
            Self::Error { .. } => GateTokenPhase::Error,
        }
    }

    fn of(phase: GateTokenPhase) -> Self {
        match phase {
            GateTokenPhase::Pending | GateTokenPhase::New => Self::Pending,
            GateTokenPhase::Ready => Self::Ready,
            GateTokenPhase::Completed => Self::Completed,
            GateTokenPhase::Revoked => Self::Revoked,
            GateTokenPhase::Error => Self::Error {
                reason: reason::USER_DATA,
                message: String::new(),
            },
        }
    }
}

/// Sets phase and conditions (one per type, `lastTransitionTime` kept while unchanged).
fn show(status: &mut GateTokenStatus, shown: &Shown, generation: Option<i64>, now: Timestamp) {
    status.set_phase(shown.phase());
    status.observed_generation = generation;
    let c = &mut status.conditions;
    let cond = |t, s, r: &str, m: String| new_condition(t, s, r, m, generation, now);
    let data = status.data.clone();
    match shown {
        Shown::Pending => {
            set_condition(
                c,
                cond(
                    condition::READY,
                    ConditionStatus::False,
                    "TokenPending",
                    format!(
                        "Token pending: valid from {} until {}",
                        data.from, data.until
                    ),
                ),
            );
        }
        Shown::Ready => {
            set_condition(
                c,
                cond(
                    condition::READY,
                    ConditionStatus::True,
                    "Ready",
                    format!("Token is ready: valid until {}", data.until),
                ),
            );
        }
        Shown::Completed => {
            let m = format!("Token expired at {}", data.until);
            set_condition(
                c,
                cond(
                    condition::READY,
                    ConditionStatus::False,
                    "Expired",
                    m.clone(),
                ),
            );
            set_condition(
                c,
                cond(condition::COMPLETED, ConditionStatus::True, "Expired", m),
            );
        }
        Shown::Revoked => {
            let m = "Token revoked (spec.revoked is true): the gateway refuses it".to_owned();
            set_condition(
                c,
                cond(
                    condition::READY,
                    ConditionStatus::False,
                    "Revoked",
                    m.clone(),
                ),
            );
            set_condition(
                c,
                cond(condition::REVOKED, ConditionStatus::True, "Revoked", m),
            );
        }
        Shown::Error { reason, message } => {
            let m = truncate(message, 32_000);
            set_condition(
                c,
                cond(condition::READY, ConditionStatus::False, reason, m.clone()),
            );
            set_condition(c, cond(condition::ERROR, ConditionStatus::True, reason, m));
        }
    }
    if !matches!(shown, Shown::Error { .. }) {
        remove_condition(c, condition::ERROR);
    }
}

/// Writes the status with the resourceVersion that was read as a precondition: if the object
/// changed meanwhile (or the cache was stale) the API server answers 409 and nothing is written.
async fn write_status(
    ctx: &Context,
    tok: &GateToken,
    status: &GateTokenStatus,
) -> Result<GateToken> {
    let ns = tok.namespace().unwrap_or_default();
    let name = tok.name_any();
    let api: Api<GateToken> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(&name, &params, &Patch::Merge(status_patch(tok, status)))
        .await
        .map_err(Error::kube(format!(
            "write status of GateToken {ns}/{name}"
        )))
}

/// The merge patch of `write_status`, preconditioned on the resourceVersion that was read.
fn status_patch(tok: &GateToken, status: &GateTokenStatus) -> serde_json::Value {
    let mut patch = json!({
        "metadata": {"resourceVersion": tok.resource_version()},
        "status": status,
    });
    if token_elided(status) {
        // The cache holds an issued JWT without its token (`trim_cached`): a key absent from a
        // merge patch keeps the token the API server has.
        if let Some(fields) = patch["status"].as_object_mut() {
            fields.remove("token");
        }
    }
    patch
}

fn requeue_for(validity: &TokenValidity, now: Timestamp) -> Action {
    match validity.until_next_transition(now) {
        Some(wait) => Action::requeue(wait + TRANSITION_MARGIN),
        None => Action::await_change(),
    }
}

/// The validity an issued token was signed with, from `status.data`.
fn issued_validity(data: &GateTokenData) -> TokenValidity {
    TokenValidity {
        from: data.from.clone(),
        nbf: data.nbf,
        exp: data.exp,
        until: data.until.clone(),
        duration_sec: data.duration_sec,
    }
}

/// Trims a GateToken for the controller's cache (`runner`): drops `managedFields`, the
/// last-applied annotation and the token of an issued JWT (~1.3 KiB with RSA-4096, most of a
/// cached GateToken). The reconciler never reads a JWT back: `status.data` records that it was
/// issued (`issued`), and `write_status` leaves the token out of its patch
/// (`token_elided`). A ServiceAccount token (no `kid`) is kept: `ensure_account` asks whether
/// one was obtained.
pub fn trim_cached(tok: &mut GateToken) {
    trim_metadata(tok.meta_mut());
    if let Some(status) = tok.status.as_mut()
        && is_signed_jwt(&status.data)
    {
        status.token = String::new();
    }
}

/// Drops what no reconciler reads from a cached object's metadata.
pub fn trim_metadata(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An issued signed JWT: its validity and key id are in `status.data`.
fn is_signed_jwt(data: &GateTokenData) -> bool {
    data.exp != 0 && data.kid.is_some()
}

/// Whether this status may have come from the cache without its JWT: then its (empty) token
/// must never be written. No JWT is ever replaced or removed, so nothing is lost.
fn token_elided(status: &GateTokenStatus) -> bool {
    status.token.is_empty() && is_signed_jwt(&status.data)
}

/// Whether a token was ever issued (signed, or its validity fixed for ServiceAccount mode).
fn issued(status: &GateTokenStatus) -> bool {
    status.data.exp != 0 || !status.token.is_empty()
}

/// Whether the token is (or will be) a ServiceAccount token: once issued, as it was issued (a JWT
/// always records its key id), so that a later spec edit cannot orphan the account.
fn service_account_mode(tok: &GateToken, status: &GateTokenStatus) -> bool {
    if issued(status) {
        status.data.kid.is_none()
    } else {
        tok.spec.generate_service_account
    }
}

async fn apply(tok: Arc<GateToken>, ctx: &Context) -> Result<Action> {
    let status = tok.status.clone().unwrap_or_default();
    let uid = tok.uid().unwrap_or_default();
    // `issued`, not the token: the cache holds a JWT without its token (`trim_cached`).
    if issued(&status) {
        ctx.seen_issued(&uid);
    }
    let phase = status.parsed_phase().unwrap_or(if issued(&status) {
        GateTokenPhase::Ready
    } else {
        GateTokenPhase::New
    });
    let now = Timestamp::now();

    if tok.spec.revoked {
        if phase == GateTokenPhase::Revoked {
            return Ok(Action::await_change());
        }
        return revoke(&tok, status, ctx, now).await;
    }
    match phase {
        GateTokenPhase::Revoked => Ok(Action::await_change()),
        GateTokenPhase::Completed => Ok(Action::await_change()),
        GateTokenPhase::New => issue(&tok, status, ctx, now).await,
        GateTokenPhase::Error if !issued(&status) => issue(&tok, status, ctx, now).await,
        GateTokenPhase::Pending | GateTokenPhase::Ready | GateTokenPhase::Error => {
            advance(&tok, status, ctx, now).await
        }
    }
}

/// Shows an issuance error (phase Error, nothing else changes) and decides when to retry.
async fn refuse(
    tok: &GateToken,
    mut status: GateTokenStatus,
    ctx: &Context,
    now: Timestamp,
    reason: &'static str,
    message: String,
    retry: Action,
) -> Result<Action> {
    let old = status.clone();
    show(
        &mut status,
        &Shown::Error {
            reason,
            message: message.clone(),
        },
        tok.meta().generation,
        now,
    );
    if status != old {
        write_status(ctx, tok, &status).await?;
        let old_message = virt_gateway_api::find_condition(&old.conditions, condition::ERROR)
            .map(|c| c.message.clone());
        if old_message.as_deref() != Some(truncate(&message, 32_000).as_str()) {
            ctx.event(tok, EventType::Warning, reason, "Issue", message)
                .await;
        }
    }
    Ok(retry)
}

async fn issue(
    tok: &GateToken,
    status: GateTokenStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action> {
    let uid = tok.uid().ok_or(BuildError::MissingMetadata {
        kind: "GateToken",
        field: "uid",
    })?;
    if ctx.issued_but_not_seen(&uid) {
        // This process already wrote the token; the cache has not caught up yet.
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let ns = tok.namespace().unwrap_or_default();
    let user_error = |e: &dyn std::fmt::Display| {
        format!("{e}; fix the spec: the token is issued once the spec is valid")
    };
    let checked = tok.spec.validate().and_then(|()| {
        let rule = tok.spec.effective_rule()?;
        Ok((rule, tok.spec.validity(now)?))
    });
    let (rule, validity) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            return refuse(
                tok,
                status,
                ctx,
                now,
                reason::USER_DATA,
                user_error(&e),
                Action::await_change(),
            )
            .await;
        }
    };
    if tok.spec.generate_service_account && !ctx.service_account_tokens {
        return refuse(
            tok,
            status,
            ctx,
            now,
            reason::SERVICE_ACCOUNT_TOKENS_DISABLED,
            SERVICE_ACCOUNT_TOKENS_DISABLED_MESSAGE.to_owned(),
            Action::await_change(),
        )
        .await;
    }
    // No signing without the delegation rule (see `crate::delegation`).
    let verdict = ctx.delegation.check().await?;
    let created = tok.meta().creation_timestamp.as_ref().map(|t| t.0);
    if let Some(why) = delegation::refusal(&verdict, created) {
        let retry = match verdict {
            Verdict::Missing(_) => Action::requeue(DELEGATION_RETRY),
            Verdict::InForce { .. } | Verdict::Unchecked => Action::await_change(),
        };
        return refuse(
            tok,
            status,
            ctx,
            now,
            reason::DELEGATION_UNCHECKED,
            why,
            retry,
        )
        .await;
    }
    if tok.spec.generate_service_account {
        return issue_service_account(tok, status, ctx, now, &rule, &validity).await;
    }

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = secrets
        .get_opt(JWT_SECRET_NAME)
        .await
        .map_err(Error::kube(format!("read Secret {ns}/{JWT_SECRET_NAME}")))?;
    let Some(secret) = secret else {
        let young = tok
            .meta()
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| now.duration_since(t.0) < jiff::SignedDuration::from_secs(60));
        if young && status.phase.is_empty() && ctx.key_is_coming(&ns) {
            // A GateServer here is about to create the key (both were applied together): wait
            // for the Secret's watch event instead of reporting an error, for a minute at most.
            tracing::debug!(gatetoken = %key(tok), "waiting for the GateServer to create the key");
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
        let e = KeySecretError::Missing { namespace: ns };
        return refuse(
            tok,
            status,
            ctx,
            now,
            reason::PRIVATE_KEY,
            e.to_string(),
            Action::requeue(KEY_RETRY),
        )
        .await;
    };
    let key = match ctx.signer.key_of(&secret) {
        Ok(key) => key,
        Err(e) => {
            return refuse(
                tok,
                status,
                ctx,
                now,
                reason::PRIVATE_KEY,
                e.to_string(),
                Action::requeue(KEY_RETRY),
            )
            .await;
        }
    };
    let claims = match token_claims(&rule, &validity, &uid, now.as_second()) {
        Ok(mut c) => {
            let ns = tok.metadata.namespace.as_deref().unwrap_or_default();
            bind_claims(&mut c, ns, tok.spec.server.as_deref());
            c.console_role = tok.spec.console_role.map(|r| r.claim().to_owned());
            c
        }
        Err(e) => {
            return refuse(
                tok,
                status,
                ctx,
                now,
                reason::USER_DATA,
                user_error(&e),
                Action::await_change(),
            )
            .await;
        }
    };
    let signed = ctx.signer.sign(key, claims, &ctx.metrics).await?;

    let mut new = status;
    new.token = signed.token;
    new.service_account_name = String::new();
    new.data = token_data(&rule, &validity, signed.alg, &uid, Some(&signed.kid));
    let shown = Shown::of(validity.phase_at(now));
    show(&mut new, &shown, tok.meta().generation, now);
    write_status(ctx, tok, &new).await?;
    ctx.mark_issued(&uid);
    ctx.event(
        tok,
        EventType::Normal,
        "Issued",
        "Issue",
        format!(
            "Signed a {} JWT with key {} (Secret {JWT_SECRET_NAME}), valid from {} until {}; phase {}",
            signed.alg,
            signed.kid,
            validity.from,
            validity.until,
            shown.phase()
        ),
    )
    .await;
    Ok(requeue_for(&validity, now))
}

async fn issue_service_account(
    tok: &GateToken,
    status: GateTokenStatus,
    ctx: &Context,
    now: Timestamp,
    rule: &EffectiveRule,
    validity: &TokenValidity,
) -> Result<Action> {
    let uid = tok.uid().unwrap_or_default();
    let mut new = status;
    new.data = token_data(rule, validity, "", &uid, None);
    match validity.phase_at(now) {
        GateTokenPhase::Ready => {
            // Written below by `advance`, which creates the account and requests the token.
            advance(tok, new, ctx, now).await
        }
        phase => {
            let shown = Shown::of(phase);
            show(&mut new, &shown, tok.meta().generation, now);
            write_status(ctx, tok, &new).await?;
            ctx.event(
                tok,
                EventType::Normal,
                "Issued",
                "Issue",
                format!(
                    "ServiceAccount token valid from {} until {}; phase {}",
                    validity.from,
                    validity.until,
                    shown.phase()
                ),
            )
            .await;
            Ok(requeue_for(validity, now))
        }
    }
}

/// Compares the current spec with what the token was issued for.
fn spec_changes(tok: &GateToken, data: &GateTokenData) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let Ok(rule) = tok.spec.effective_rule() else {
        return vec!["the access rule"];
    };
    let list = |l: &Option<Vec<String>>| l.clone().unwrap_or_default();
    if rule.namespace != data.namespace {
        changed.push("namespace");
    }
    if rule.verbs != data.verbs {
        changed.push("verbs");
    }
    if list(&rule.api_groups) != data.api_groups {
        changed.push("apiGroups");
    }
    if list(&rule.resources) != data.resources {
        changed.push("resources");
    }
    if list(&rule.resource_names) != data.resource_names {
        changed.push("resourceNames");
    }
    if list(&rule.non_resource_urls) != data.non_resource_urls {
        changed.push("nonResourceURLs");
    }
    if tok.spec.duration_sec != data.duration_sec {
        changed.push("durationSec");
    }
    if let Some(from) = tok.spec.from()
        && from != data.from
    {
        changed.push("from");
    }
    if tok.spec.generate_service_account != data.kid.is_none() {
        changed.push("generateServiceAccount");
    }
    changed
}

/// Follows an issued token through its phases.
async fn advance(
    tok: &GateToken,
    status: GateTokenStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action> {
    let validity = issued_validity(&status.data);
    let old = tok.status.clone().unwrap_or_default();
    let mut new = status;
    let target = validity.phase_at(now);
    let service_account = service_account_mode(tok, &new);
    let mut shown = Shown::of(target);
    let mut retry = None;
    if service_account {
        match target {
            GateTokenPhase::Ready => match ensure_account(tok, ctx, &new, &validity, now).await {
                Ok(Some((token, sa, alg))) => {
                    new.token = token;
                    new.service_account_name = sa;
                    new.data.alg = alg;
                }
                Ok(None) => {}
                Err((reason, err)) => {
                    retry = Some(if err.category() == Category::Forbidden {
                        FORBIDDEN_RETRY
                    } else {
                        ctx.next_backoff(&key(tok))
                    });
                    shown = Shown::Error {
                        reason,
                        message: api_message(&err),
                    };
                }
            },
            GateTokenPhase::Completed => {
                // Deleting the ServiceAccount invalidates every token issued for it at once.
                delete_account(tok, ctx, false).await?;
            }
            _ => {}
        }
    }
    show(&mut new, &shown, tok.meta().generation, now);
    let changes = spec_changes(tok, &new.data);
    if changes.is_empty() {
        remove_condition(&mut new.conditions, condition::SPEC_CHANGED);
    } else {
        set_condition(
            &mut new.conditions,
            new_condition(
                condition::SPEC_CHANGED,
                ConditionStatus::True,
                "IssuedTokenKept",
                format!(
                    "spec changed after the token was issued ({}): an issued token never changes and keeps the rule and validity in status.data; to grant different access create a new GateToken (and revoke this one with spec.revoked: true)",
                    changes.join(", ")
                ),
                tok.meta().generation,
                now,
            ),
        );
    }
    if new != old {
        write_status(ctx, tok, &new).await?;
        if !new.token.is_empty() {
            ctx.mark_issued(&tok.uid().unwrap_or_default());
        }
        if new.phase != old.phase {
            let (type_, reason, note) = match &shown {
                Shown::Ready => (
                    EventType::Normal,
                    "Ready",
                    format!("Token is ready: valid until {}", validity.until),
                ),
                Shown::Completed => (
                    EventType::Normal,
                    "Completed",
                    format!("Token expired at {}", validity.until),
                ),
                Shown::Error { reason, message } => (EventType::Warning, *reason, message.clone()),
                Shown::Pending | Shown::Revoked => (
                    EventType::Normal,
                    "Pending",
                    format!("Token pending: valid from {}", validity.from),
                ),
            };
            ctx.event(tok, type_, reason, "Advance", note).await;
        }
    }
    Ok(match retry {
        Some(wait) => Action::requeue(wait),
        None => requeue_for(&validity, now),
    })
}

async fn revoke(
    tok: &GateToken,
    status: GateTokenStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action> {
    if service_account_mode(tok, &status) {
        delete_account(tok, ctx, false).await?;
    }
    let mut new = status;
    show(&mut new, &Shown::Revoked, tok.meta().generation, now);
    write_status(ctx, tok, &new).await?;
    ctx.event(
        tok,
        EventType::Normal,
        "Revoked",
        "Revoke",
        "Token revoked: the gateway refuses it from now on".to_owned(),
    )
    .await;
    Ok(Action::await_change())
}

/// Creates the ServiceAccount of a `generateServiceAccount` token, or checks that the existing
/// one was created for this very GateToken (its controller owner reference carries the token's
/// UID): the operator never takes over a ServiceAccount it did not create for the token, so it
/// never requests a token for one.
async fn ensure_service_account(
    tok: &GateToken,
    ctx: &Context,
    account: &ServiceAccount,
) -> Result<()> {
    let ns = tok.namespace().unwrap_or_default();
    let name = account.name_any();
    let uid = tok.uid().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let existing = match api.create(&params, account).await {
        Ok(_) => return Ok(()),
        Err(e) if has_code(&e, 409) => api
            .get(&name)
            .await
            .map_err(Error::kube(format!("read ServiceAccount {ns}/{name}")))?,
        Err(e) => return Err(Error::kube(format!("create ServiceAccount {ns}/{name}"))(e)),
    };
    if created_for(&existing, &uid) {
        Ok(())
    } else {
        Err(Error::Task(format!(
            "ServiceAccount {ns}/{name} already exists and was not created by the operator for this GateToken: the operator never takes over an existing ServiceAccount (delete it, or rename the GateToken)"
        )))
    }
}

/// Whether `account` is one the operator created for the GateToken with `uid`.
fn created_for(account: &ServiceAccount, uid: &str) -> bool {
    let managed = account
        .labels()
        .get(LABEL_MANAGED_BY)
        .is_some_and(|m| m == MANAGED_BY);
    let owned = account.owner_references().iter().any(|o| {
        !uid.is_empty() && o.uid == uid && o.kind == "GateToken" && o.controller == Some(true)
    });
    managed && owned
}

/// Creates (or re-applies) the ServiceAccount and RBAC of a `generateServiceAccount` token, and
/// requests its token when none was written yet. Returns `(token, ServiceAccount, alg)` when a
/// new token was obtained. Once issued, a token's access follows the spec it was issued for:
/// after a spec change (shown as `SpecChanged`) nothing is applied any more.
async fn ensure_account(
    tok: &GateToken,
    ctx: &Context,
    status: &GateTokenStatus,
    validity: &TokenValidity,
    now: Timestamp,
) -> std::result::Result<Option<(String, String, String)>, (&'static str, Error)> {
    let failed_sa = |e: Error| (reason::FAILED_SA, e);
    if !status.token.is_empty() && !spec_changes(tok, &status.data).is_empty() {
        return Ok(None);
    }
    if status.token.is_empty() && !ctx.service_account_tokens {
        return Err((
            reason::SERVICE_ACCOUNT_TOKENS_DISABLED,
            Error::Task(SERVICE_ACCOUNT_TOKENS_DISABLED_MESSAGE.to_owned()),
        ));
    }
    let rule = tok
        .spec
        .effective_rule()
        .map_err(|e| (reason::USER_DATA, Error::Task(e.to_string())))?;
    let account = token_account(tok, &rule).map_err(|e| failed_sa(e.into()))?;
    let c = &ctx.client;
    ensure_service_account(tok, ctx, &account.service_account)
        .await
        .map_err(failed_sa)?;
    apply_cluster(c, &account.cluster_role)
        .await
        .map_err(failed_sa)?;
    if let Some(crb) = &account.cluster_role_binding {
        apply_cluster(c, crb).await.map_err(failed_sa)?;
    }
    if let Some(rb) = &account.role_binding {
        apply_namespaced(c, rb).await.map_err(failed_sa)?;
    }
    if !status.token.is_empty() {
        return Ok(None);
    }
    let ns = tok.namespace().unwrap_or_default();
    let sa = account.service_account.name_any();
    // The TokenRequest API cannot issue tokens shorter than 10 minutes; the ServiceAccount is
    // deleted at expiry, which invalidates the token at once.
    let seconds = (validity.exp - now.as_second()).max(MIN_SA_TOKEN_SECONDS);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            attestations: None,
            expiration_seconds: Some(seconds),
            bound_object_ref: None,
        }),
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(c.clone(), &ns);
    let response = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            (
                reason::TOKEN_GETTER,
                Error::kube(format!("request a token for ServiceAccount {ns}/{sa}"))(e),
            )
        })?;
    let token = response
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            (
                reason::TOKEN_GETTER,
                Error::Task(format!(
                    "the TokenRequest for ServiceAccount {ns}/{sa} returned no token"
                )),
            )
        })?;
    let alg = jws_alg(&token).unwrap_or_default();
    Ok(Some((token, sa, alg)))
}

/// The `alg` of a compact JWS header, if readable.
fn jws_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

/// Deletes the ServiceAccount and RBAC of a `generateServiceAccount` token, by label. When the
/// GateToken itself is being deleted, a ServiceAccount the operator may not delete (ServiceAccount
/// mode switched off, its RBAC removed) is left to the garbage collector: the token owns it.
async fn delete_account(tok: &GateToken, ctx: &Context, token_deleted: bool) -> Result<()> {
    let ns = tok.namespace().unwrap_or_default();
    let name = tok.name_any();
    let sel = selector(&token_selector_labels(&ns, &name));
    let c = &ctx.client;
    match prune_namespaced::<ServiceAccount>(c, Some(&ns), &sel, &[], false).await {
        Err(e) if token_deleted && e.category() == Category::Forbidden => {
            tracing::debug!(gatetoken = %key(tok), error = %e, "the garbage collector removes the ServiceAccount");
        }
        other => {
            other?;
        }
    }
    prune_cluster::<ClusterRoleBinding>(c, &sel, &[], false).await?;
    prune_namespaced::<RoleBinding>(c, None, &sel, &[], false).await?;
    prune_cluster::<ClusterRole>(c, &sel, &[], false).await?;
    Ok(())
}

/// The finalizer of `generateServiceAccount` tokens: removes the account and its RBAC.
async fn cleanup(tok: Arc<GateToken>, ctx: &Context) -> Result<Action> {
    delete_account(&tok, ctx, true).await?;
    if let Some(uid) = tok.uid() {
        ctx.seen_issued(&uid);
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(kid: Option<&str>, token: &str) -> GateToken {
        let mut tok: GateToken = serde_json::from_value(json!({
            "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {"namespace": "default", "verbs": ["get"], "resources": ["pods"]},
        }))
        .unwrap();
        tok.meta_mut().resource_version = Some("7".into());
        tok.meta_mut().managed_fields = Some(vec![Default::default()]);
        tok.meta_mut().annotations = Some(
            [(LAST_APPLIED.to_owned(), "{}".to_owned())]
                .into_iter()
                .collect(),
        );
        let mut st = GateTokenStatus {
            token: token.into(),
            ..Default::default()
        };
        st.data.exp = 1_619_085_660;
        st.data.kid = kid.map(str::to_owned);
        tok.status = Some(st);
        tok
    }

    #[test]
    fn the_cache_drops_a_signed_jwt_and_its_patches_keep_it() {
        let mut tok = cached(Some("kid-1"), "header.claims.signature");
        trim_cached(&mut tok);
        assert_eq!(tok.meta().managed_fields, None);
        assert_eq!(tok.meta().annotations, None);
        let st = tok.status.clone().unwrap();
        assert_eq!(st.token, "");
        // Still issued: never signed again, never shown as New.
        assert!(issued(&st));
        assert!(!service_account_mode(&tok, &st));
        let patch = status_patch(&tok, &st);
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert!(patch["status"].get("token").is_none(), "{patch}");
        assert_eq!(patch["status"]["data"]["kid"], "kid-1");
    }

    #[test]
    fn the_cache_keeps_a_service_account_token_and_new_tokens_write_theirs() {
        let mut tok = cached(None, "sa-token");
        trim_cached(&mut tok);
        let st = tok.status.clone().unwrap();
        assert_eq!(st.token, "sa-token");
        assert_eq!(status_patch(&tok, &st)["status"]["token"], "sa-token");
        // A fresh signature is written, and so is the empty token of a status never issued.
        let mut signed = cached(Some("kid-1"), "");
        let mut st = signed.status.clone().unwrap();
        st.token = "header.claims.signature".into();
        assert_eq!(
            status_patch(&signed, &st)["status"]["token"],
            "header.claims.signature"
        );
        signed.status = Some(GateTokenStatus::default());
        let fresh = GateTokenStatus::default();
        assert_eq!(status_patch(&signed, &fresh)["status"]["token"], "");
    }

    #[test]
    fn reads_the_alg_of_a_jws() {
        assert_eq!(
            jws_alg("eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.e30.sig").as_deref(),
            Some("RS256")
        );
        assert_eq!(jws_alg("garbage"), None);
    }

    #[test]
    fn conditions_follow_the_phase() {
        let now: Timestamp = "2021-04-22T10:00:00Z".parse().unwrap();
        let mut st = GateTokenStatus::default();
        st.data.until = "2021-04-22T11:00:00Z".into();
        show(
            &mut st,
            &Shown::Error {
                reason: reason::PRIVATE_KEY,
                message: "no key".into(),
            },
            Some(1),
            now,
        );
        assert_eq!(st.phase, "Error");
        assert!(virt_gateway_api::find_condition(&st.conditions, condition::ERROR).is_some());
        show(&mut st, &Shown::Ready, Some(1), now);
        assert_eq!(st.phase, "Ready");
        assert!(virt_gateway_api::find_condition(&st.conditions, condition::ERROR).is_none());
        assert!(virt_gateway_api::is_condition_true(
            &st.conditions,
            condition::READY
        ));
        show(&mut st, &Shown::Completed, Some(1), now);
        assert!(!virt_gateway_api::is_condition_true(
            &st.conditions,
            condition::READY
        ));
        assert!(virt_gateway_api::is_condition_true(
            &st.conditions,
            condition::COMPLETED
        ));
    }

    fn cached_from(status: serde_json::Value) -> CachedGateToken {
        let mut full =
            serde_json::to_value(cached(Some("kid-1"), "header.claims.signature")).unwrap();
        full["metadata"]["uid"] = json!("u-1");
        full["metadata"]["labels"] = json!({"team": "a"});
        full["status"] = status;
        let mut c: CachedGateToken = serde_json::from_value(full).unwrap();
        trim_cached_meta(&mut c);
        c
    }

    #[test]
    fn the_cache_keeps_identity_and_phase_only() {
        let c = cached_from(json!({"phase": "Ready", "token": "header.claims.signature"}));
        assert_eq!(c.phase(), Ok(GateTokenPhase::Ready));
        assert_eq!(c.metadata.name.as_deref(), Some("t"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(c.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(c.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(c.metadata.labels, None);
        assert_eq!(c.metadata.annotations, None);
        assert_eq!(c.metadata.managed_fields, None);
        assert!(!format!("{c:?}").contains("signature"));
    }

    #[test]
    fn a_cached_token_without_status_is_new_and_an_unknown_phase_is_not() {
        assert_eq!(
            cached_from(serde_json::Value::Null).phase(),
            Ok(GateTokenPhase::New)
        );
        assert_eq!(cached_from(json!({})).phase(), Ok(GateTokenPhase::New));
        assert!(cached_from(json!({"phase": "Bogus"})).phase().is_err());
    }
}
