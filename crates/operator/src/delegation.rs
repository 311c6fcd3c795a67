//! No signing without the delegation rule: before it signs a new GateToken (or requests a
//! ServiceAccount token for one), the operator checks that the API server enforces the rule that
//! a GateToken grants only what its creator may do, i.e. that the `ValidatingAdmissionPolicy`
//! and binding of [`virt_gateway_api::admission`] exist and are the ones this version ships.
//!
//! The rule only checks what was created (or changed) while it was in force, so a GateToken
//! created before the policy and binding were last written is not signed either (it must be
//! created again): otherwise anyone could create GateTokens while the policy is missing and have
//! them signed once it is back. Tokens already signed are never touched.
//!
//! Administrators who deliberately run without the rule (a cluster without
//! `admissionregistration.k8s.io/v1`, say) start the operator with
//! `--allow-unchecked-delegation`: then whoever may create a GateToken can grant anything the
//! gateway's ServiceAccount may do.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::Api;
use virt_gateway_api::admission::{self, GATETOKEN_POLICY};

use crate::error::{Error, Result, has_code};

/// How long a verdict is reused before the policy is read again.
pub const VERDICT_TTL: Duration = Duration::from_secs(5);

/// Whether the delegation rule is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enforced: GateTokens created at or after `since` (whole seconds) were checked.
    InForce {
        /// When the policy or its binding was last created or changed.
        since: Timestamp,
    },
    /// The operator was started with `--allow-unchecked-delegation`.
    Unchecked,
    /// Not enforced, and why.
    Missing(String),
}

/// Reads (and briefly caches) the delegation policy's state.
pub struct DelegationGuard {
    client: Client,
    allow_unchecked: bool,
    cached: Mutex<Option<(Instant, Verdict)>>,
}

impl std::fmt::Debug for DelegationGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelegationGuard")
            .field("allow_unchecked", &self.allow_unchecked)
            .finish_non_exhaustive()
    }
}

impl DelegationGuard {
    /// A guard reading through `client`; `allow_unchecked` is `--allow-unchecked-delegation`.
    pub fn new(client: Client, allow_unchecked: bool) -> Self {
        Self {
            client,
            allow_unchecked,
            cached: Mutex::new(None),
        }
    }

    /// The current verdict (at most [`VERDICT_TTL`] old). An error only when the API server
    /// could not be asked (the caller retries); a missing or forbidden policy is a verdict.
    pub async fn check(&self) -> Result<Verdict> {
        if self.allow_unchecked {
            return Ok(Verdict::Unchecked);
        }
        if let Ok(cached) = self.cached.lock()
            && let Some((at, verdict)) = cached.as_ref()
            && at.elapsed() < VERDICT_TTL
        {
            return Ok(verdict.clone());
        }
        let verdict = self.read().await?;
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((Instant::now(), verdict.clone()));
        }
        Ok(verdict)
    }

    async fn read(&self) -> Result<Verdict> {
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(self.client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(self.client.clone());
        let policy = match get(&policies, "ValidatingAdmissionPolicy").await? {
            Ok(p) => p,
            Err(missing) => return Ok(Verdict::Missing(missing)),
        };
        let binding = match get(&bindings, "ValidatingAdmissionPolicyBinding").await? {
            Ok(b) => b,
            Err(missing) => return Ok(Verdict::Missing(missing)),
        };
        Ok(judge(&policy, &binding))
    }
}

/// `Ok(Ok(object))`, `Ok(Err(why it is missing))`, or `Err` when the API server failed.
async fn get<K>(api: &Api<K>, kind: &str) -> Result<std::result::Result<K, String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(GATETOKEN_POLICY).await {
        Ok(obj) => Ok(Ok(obj)),
        Err(e) if has_code(&e, 404) => Ok(Err(format!(
            "the {kind} {GATETOKEN_POLICY} is not installed (or this cluster does not serve admissionregistration.k8s.io/v1)"
        ))),
        Err(e) if has_code(&e, 403) => Ok(Err(format!(
            "the operator may not read the {kind} {GATETOKEN_POLICY} ({e}); grant it get on it, as deploy/virt-gateway-operator.yaml does"
        ))),
        Err(e) => Err(Error::kube(format!("read {kind} {GATETOKEN_POLICY}"))(e)),
    }
}

/// The verdict on an installed policy and binding (pure).
pub fn judge(
    policy: &ValidatingAdmissionPolicy,
    binding: &ValidatingAdmissionPolicyBinding,
) -> Verdict {
    let [expected_policy, _] = admission::policies();
    let [expected_binding, _] = admission::bindings();
    if let Err(e) = admission::verify_policy(&expected_policy, policy)
        .and_then(|()| admission::verify_binding(&expected_binding, binding))
    {
        return Verdict::Missing(e.to_string());
    }
    let since = last_written(&policy.metadata).max(last_written(&binding.metadata));
    Verdict::InForce { since }
}

/// When an object was last created or changed: its creation time or the latest time in its
/// managed fields. Status writes are not changes of what is enforced: the API server writes a
/// policy's `status.typeChecking` a moment after it is stored, and counting that would refuse
/// tokens created in between.
fn last_written(meta: &ObjectMeta) -> Timestamp {
    let created = meta.creation_timestamp.as_ref().map(|t| t.0);
    let changed = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.subresource.as_deref() != Some("status"))
        .filter_map(|f| f.time.as_ref().map(|t| t.0));
    created
        .into_iter()
        .chain(changed)
        .max()
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Why a GateToken created at `created` may not be signed under `verdict`, if it may not.
pub fn refusal(verdict: &Verdict, created: Option<Timestamp>) -> Option<String> {
    match verdict {
        Verdict::Unchecked => None,
        Verdict::Missing(why) => Some(format!(
            "{why}: the operator signs no new GateToken until the delegation policy is in place (a GateToken may grant only what its creator may do; install it with `kubectl apply --server-side -f deploy/crds/{}`), unless it runs with --allow-unchecked-delegation",
            admission::FILE_NAME
        )),
        Verdict::InForce { since } => {
            let created = created.unwrap_or(Timestamp::UNIX_EPOCH);
            // Whole seconds: both times come from the API server with second precision.
            (created.as_second() < since.as_second()).then(|| {
                format!(
                    "this GateToken was created at {created}, before the delegation policy {GATETOKEN_POLICY} was last written ({since}), so the API server did not check that its creator may do what it grants: delete it and create it again"
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn the_shipped_policy_is_in_force_since_its_last_write() {
        let [mut policy, _] = admission::policies();
        let [mut binding, _] = admission::bindings();
        policy.metadata.creation_timestamp = Some(at("2026-01-01T10:00:00Z"));
        policy.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            time: Some(at("2026-01-02T10:00:00Z")),
            ..ManagedFieldsEntry::default()
        }]);
        binding.metadata.creation_timestamp = Some(at("2026-01-01T11:00:00Z"));
        // The API server's own status write is not a change of the rule.
        binding.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            time: Some(at("2026-01-05T10:00:00Z")),
            subresource: Some("status".into()),
            ..ManagedFieldsEntry::default()
        }]);
        let verdict = judge(&policy, &binding);
        let since: Timestamp = "2026-01-02T10:00:00Z".parse().unwrap();
        assert_eq!(verdict, Verdict::InForce { since });
        assert!(refusal(&verdict, Some(since)).is_none(), "same second");
        assert!(refusal(&verdict, Some("2026-01-03T00:00:00Z".parse().unwrap())).is_none());
        let old = refusal(&verdict, Some("2026-01-02T09:59:59Z".parse().unwrap())).unwrap();
        assert!(old.contains("create it again"), "{old}");
    }

    #[test]
    fn a_changed_or_missing_policy_stops_signing() {
        let [mut policy, _] = admission::policies();
        let [binding, _] = admission::bindings();
        policy.spec.as_mut().unwrap().failure_policy = Some("Ignore".into());
        let verdict = judge(&policy, &binding);
        let why = refusal(&verdict, None).unwrap();
        assert!(why.contains("failurePolicy"), "{why}");
        assert!(why.contains("--allow-unchecked-delegation"), "{why}");
        assert_eq!(refusal(&Verdict::Unchecked, None), None);
    }
}
