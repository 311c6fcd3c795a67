//! The `GateToken` custom resource: a signed, time-limited access token for one rule.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel::{
    TOKEN_DURATION_POSITIVE, TOKEN_DURATION_POSITIVE_MESSAGE, TOKEN_FROM_RFC3339,
    TOKEN_FROM_RFC3339_MESSAGE, TOKEN_GROUPS_XOR_URLS, TOKEN_GROUPS_XOR_URLS_MESSAGE,
    TOKEN_REVOKED_IS_FINAL, TOKEN_REVOKED_IS_FINAL_MESSAGE, TOKEN_RULE_NOT_EMPTY,
    TOKEN_RULE_NOT_EMPTY_MESSAGE,
};
use crate::error::{SpecError, UnknownPhase};
use crate::rule::{EffectiveRule, non_empty};
use crate::schema::{condition_list, require_without_default};
use crate::time::TokenValidity;

/// Annotation naming the user who created a GateToken (as `request.userInfo.username`). Optional;
/// when written, the admission policy `virt-gateway-gatetoken-creator` (installed with the
/// operator) refuses any other name and any later change, so it can be trusted. The web page
/// writes it and lists "your links" by it.
pub const CREATED_BY_ANNOTATION: &str = "ocgate.yaacov.com/created-by";

/// Default `durationSec`: one hour.
pub const DEFAULT_DURATION_SEC: i64 = 3600;
/// Default target `namespace`: all namespaces.
pub const DEFAULT_NAMESPACE: &str = "*";
/// Default `verbs`.
pub const DEFAULT_VERBS: &[&str] = &["get"];
/// Default API groups, applied in code when neither `apiGroups` nor `APIGroups` is written and
/// `nonResourceURLs` is empty.
pub const DEFAULT_API_GROUPS: &[&str] = &["subresources.kubevirt.io"];
/// Default `resources`: a VirtualMachineInstance and its VNC subresource.
pub const DEFAULT_RESOURCES: &[&str] = &["virtualmachineinstances", "virtualmachineinstances/vnc"];
/// The signing algorithm Gen B wrote into `status.data.alg`.
pub const GEN_B_ALG: &str = "RS256";

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}
fn default_duration_sec() -> i64 {
    DEFAULT_DURATION_SEC
}
fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}
fn default_verbs() -> Vec<String> {
    strings(DEFAULT_VERBS)
}
fn default_resources() -> Vec<String> {
    strings(DEFAULT_RESOURCES)
}

/// GateTokenSpec describes the access a token grants: one RBAC-like rule (namespace, verbs, API
/// groups, resources, resource names or non-resource URLs) for a limited time. The token is
/// signed with the key in the Secret kube-gateway-jwt-secret of the GateToken's own namespace,
/// so create GateTokens in the namespace of their GateServer.
// Several printcolumn(...) entries repeat `type_ = "string"`, which this lint mistakes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ocgate.yaacov.com",
    version = "v1beta1",
    kind = "GateToken",
    namespaced,
    status = "GateTokenStatus",
    derive = "PartialEq",
    shortname = "gt",
    category = "ocgate",
    doc = "GateToken is a signed, time-limited JWT that lets its holder make the API calls its spec allows through a kube-gateway (GateServer).",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Token phase: Pending, Ready, Completed, Revoked or Error"
    ),
    printcolumn(
        name = "Target-Namespace",
        type_ = "string",
        json_path = ".spec.namespace",
        description = "Namespace the token grants access to (* means all)"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.data.until",
        description = "Expiry time of the token (RFC 3339, UTC)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = (TOKEN_GROUPS_XOR_URLS, TOKEN_GROUPS_XOR_URLS_MESSAGE))]
#[x_kube(validation = (TOKEN_RULE_NOT_EMPTY, TOKEN_RULE_NOT_EMPTY_MESSAGE))]
pub struct GateTokenSpec {
    /// Start of the token validity (JWT nbf), as an RFC 3339 date-time with a time zone, for
    /// example 2021-04-22T10:00:00Z. Absent or empty means when the token is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = (TOKEN_FROM_RFC3339, TOKEN_FROM_RFC3339_MESSAGE))]
    pub from: Option<String>,

    /// Lifetime of the token in seconds, counted from 'from'. Must be greater than 0.
    #[serde(default = "default_duration_sec")]
    #[x_kube(validation = (TOKEN_DURATION_POSITIVE, TOKEN_DURATION_POSITIVE_MESSAGE))]
    pub duration_sec: i64,

    /// Instead of a JWT, create a ServiceAccount with RBAC for this rule and hand out a token of
    /// that ServiceAccount.
    #[serde(default)]
    pub generate_service_account: bool,

    /// Target namespace of the allowed requests ('*' means all namespaces). This is not the
    /// namespace of the GateToken itself.
    #[serde(default = "default_namespace")]
    pub namespace: String,

    /// Allowed Kubernetes verbs (get, list, watch, create, update, patch, delete, ...).
    #[serde(default = "default_verbs")]
    pub verbs: Vec<String>,

    /// Allowed API groups ("" is the core group). Conventional spelling of APIGroups; when both
    /// are written, apiGroups wins. When neither is written the default is
    /// [subresources.kubevirt.io], or none when nonResourceURLs is set.
    #[serde(rename = "apiGroups", default, skip_serializing_if = "Option::is_none")]
    pub raw_api_groups: Option<Vec<String>>,

    /// Allowed API groups, upstream (Gen B) spelling of apiGroups; apiGroups wins when both are
    /// written.
    #[serde(rename = "APIGroups", default, skip_serializing_if = "Option::is_none")]
    pub raw_api_groups_gen_b: Option<Vec<String>>,

    /// Allowed resources, as resource or resource/subresource.
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,

    /// Allowed object names; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_names: Option<Vec<String>>,

    /// Allowed non-resource URL paths; a trailing '*' is a prefix wildcard. Excludes API groups.
    #[serde(
        rename = "nonResourceURLs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub non_resource_urls: Option<Vec<String>>,

    /// virt-gateway extension: the GateServer (in this namespace) the token is for. Its name goes
    /// into the token's audience (aud), and every other GateServer refuses the token. Absent: any
    /// GateServer of the namespace accepts it, unless it requires an audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub server: Option<String>,

    /// virt-gateway extension: set to true to revoke the token. The operator moves it to the
    /// phase Revoked and the gateway refuses it from then on. Revocation is final.
    #[serde(default)]
    #[x_kube(validation = (TOKEN_REVOKED_IS_FINAL, TOKEN_REVOKED_IS_FINAL_MESSAGE))]
    pub revoked: bool,
}

impl Default for GateTokenSpec {
    /// The spec of a manifest with an empty `spec: {}`, after schema defaulting.
    fn default() -> Self {
        Self {
            from: None,
            duration_sec: DEFAULT_DURATION_SEC,
            generate_service_account: false,
            namespace: default_namespace(),
            verbs: default_verbs(),
            raw_api_groups: None,
            raw_api_groups_gen_b: None,
            resources: default_resources(),
            resource_names: None,
            non_resource_urls: None,
            server: None,
            revoked: false,
        }
    }
}

impl GateTokenSpec {
    /// The effective API groups: `apiGroups` if written, else `APIGroups` if written, else the
    /// default `["subresources.kubevirt.io"]`, except that a token with non-empty
    /// `nonResourceURLs` and neither spelling written gets `None`.
    ///
    /// That last case deliberately differs from upstream, where the schema default of
    /// `APIGroups` made a token with only `nonResourceURLs` fail with "but not both".
    pub fn api_groups(&self) -> Option<Vec<String>> {
        if let Some(groups) = self
            .raw_api_groups
            .as_ref()
            .or(self.raw_api_groups_gen_b.as_ref())
        {
            return Some(groups.clone());
        }
        if non_empty(self.non_resource_urls.as_deref()) {
            None
        } else {
            Some(strings(DEFAULT_API_GROUPS))
        }
    }

    /// `from` when written and non-empty; `None` means "now".
    pub fn from(&self) -> Option<&str> {
        self.from.as_deref().filter(|f| !f.is_empty())
    }

    /// Checks what the CRD's CEL rules check, for objects stored before the rules existed:
    /// the rule (see [`effective_rule`](Self::effective_rule)), `durationSec > 0` and `from`.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.effective_rule()?;
        if self.duration_sec <= 0 {
            return Err(SpecError::NonPositiveDuration(self.duration_sec));
        }
        if let Some(from) = self.from() {
            crate::time::parse_rfc3339(from)?;
        }
        Ok(())
    }

    /// The rule this token grants, with defaults and the `apiGroups`/`APIGroups` alias resolved.
    ///
    /// Errors as upstream (§1.7 step 7) when API groups and non-resource URLs are both
    /// non-empty, or both empty.
    pub fn effective_rule(&self) -> Result<EffectiveRule, SpecError> {
        const GROUPS: &str = "apiGroups (or APIGroups)";
        const URLS: &str = "nonResourceURLs";
        let api_groups = self.api_groups();
        let has_groups = non_empty(api_groups.as_deref());
        let has_urls = non_empty(self.non_resource_urls.as_deref());
        match (has_groups, has_urls) {
            (true, true) => Err(SpecError::GroupsAndNonResourceUrls {
                groups: GROUPS,
                urls: URLS,
            }),
            (false, false) => Err(SpecError::EmptyRule {
                groups: GROUPS,
                urls: URLS,
            }),
            (true, false) => Ok(EffectiveRule {
                namespace: self.namespace.clone(),
                verbs: self.verbs.clone(),
                api_groups,
                resources: Some(self.resources.clone()),
                resource_names: self.resource_names.clone(),
                non_resource_urls: self.non_resource_urls.clone(),
            }),
            (false, true) => Ok(EffectiveRule {
                namespace: self.namespace.clone(),
                verbs: self.verbs.clone(),
                api_groups: None,
                resources: None,
                resource_names: None,
                non_resource_urls: self.non_resource_urls.clone(),
            }),
        }
    }

    /// When the token is valid, given the current time `now` (used when `from` is absent).
    pub fn validity(&self, now: Timestamp) -> Result<TokenValidity, SpecError> {
        TokenValidity::compute(self.from(), self.duration_sec, now)
    }
}

/// Phase of a GateToken. The wire form is [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateTokenPhase {
    /// `""`: not yet handled by the operator.
    New,
    /// `Pending`: signed, but `from` lies in the future.
    Pending,
    /// `Ready`: valid now.
    Ready,
    /// `Completed`: expired.
    Completed,
    /// `Error`: the spec or the signing key is unusable; a condition says why.
    Error,
    /// `Revoked` (virt-gateway extension): `spec.revoked` is set; the gateway refuses the token.
    Revoked,
}

impl GateTokenPhase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::New,
        Self::Pending,
        Self::Ready,
        Self::Completed,
        Self::Error,
        Self::Revoked,
    ];

    /// The wire form: `""`, `Pending`, `Ready`, `Completed`, `Error` or `Revoked`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "",
            Self::Pending => "Pending",
            Self::Ready => "Ready",
            Self::Completed => "Completed",
            Self::Error => "Error",
            Self::Revoked => "Revoked",
        }
    }
}

impl fmt::Display for GateTokenPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GateTokenPhase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase {
                kind: "GateToken",
                value: s.to_owned(),
            })
    }
}

/// GateTokenStatus is the observed state of a GateToken.
///
/// `conditions`, `token`, `service-account-name`, `data` and `phase` are required by the schema
/// (as in Gen B) and therefore always serialised, even when empty.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = gatetoken_status_required)]
pub struct GateTokenStatus {
    /// Standard conditions, one per type.
    #[serde(default)]
    #[schemars(transform = condition_list)]
    pub conditions: Vec<Condition>,

    /// The signed JWT (or, with generateServiceAccount, the ServiceAccount token).
    #[serde(default)]
    pub token: String,

    /// Name of the generated ServiceAccount (generateServiceAccount), or empty.
    #[serde(rename = "service-account-name", default)]
    pub service_account_name: String,

    /// Cached data, once created, user can not change this value: what the token was signed with.
    #[serde(default)]
    pub data: GateTokenData,

    /// Token phase: "" (new), Pending, Ready, Completed, Error, or Revoked (virt-gateway extension).
    #[serde(default)]
    pub phase: String,

    /// virt-gateway extension: the metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn gatetoken_status_required(schema: &mut schemars::Schema) {
    require_without_default(
        schema,
        &[
            "conditions",
            "token",
            "service-account-name",
            "data",
            "phase",
        ],
    );
}

impl GateTokenStatus {
    /// The phase, parsed.
    pub fn parsed_phase(&self) -> Result<GateTokenPhase, UnknownPhase> {
        self.phase.parse()
    }

    /// Sets the phase.
    pub fn set_phase(&mut self, phase: GateTokenPhase) {
        phase.as_str().clone_into(&mut self.phase);
    }
}

/// GateTokenData is `status.data`: what the token was signed with (Gen B keys, plus `jti` and
/// `kid`). `alg`, `duration-sec`, `exp`, `from`, `nbf` and `until` are required and always
/// serialised; the rule fields are omitted when empty.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = gatetoken_data_required)]
pub struct GateTokenData {
    /// spec.from as written, or the creation time (RFC 3339, UTC).
    #[serde(default)]
    pub from: String,

    /// Expiry time, RFC 3339 UTC.
    #[serde(default)]
    pub until: String,

    /// spec.durationSec.
    #[serde(rename = "duration-sec", default)]
    pub duration_sec: i64,

    /// Not-before, Unix seconds.
    #[serde(default)]
    pub nbf: i64,

    /// Expiry, Unix seconds.
    #[serde(default)]
    pub exp: i64,

    /// JWT signing algorithm, e.g. RS256.
    #[serde(default)]
    pub alg: String,

    /// Target namespace of the rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,

    /// Verbs of the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,

    /// API groups of the rule.
    #[serde(rename = "APIGroups", default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,

    /// Resources of the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,

    /// Resource names of the rule.
    #[serde(
        rename = "resourceNames",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,

    /// Non-resource URLs of the rule.
    #[serde(
        rename = "nonResourceURLs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,

    /// virt-gateway extension: the JWT ID (the GateToken's UID), used for revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,

    /// virt-gateway extension: ID of the signing key (RFC 7638 thumbprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

fn gatetoken_data_required(schema: &mut schemars::Schema) {
    require_without_default(
        schema,
        &["alg", "duration-sec", "exp", "from", "nbf", "until"],
    );
}

impl GateTokenData {
    /// The data of a token signed for `rule` with `validity` and algorithm `alg`; `jti` and
    /// `kid` are left for the caller.
    pub fn new(rule: &EffectiveRule, validity: &TokenValidity, alg: &str) -> Self {
        Self {
            from: validity.from.clone(),
            until: validity.until.clone(),
            duration_sec: validity.duration_sec,
            nbf: validity.nbf,
            exp: validity.exp,
            alg: alg.to_owned(),
            namespace: rule.namespace.clone(),
            verbs: rule.verbs.clone(),
            api_groups: rule.api_groups.clone().unwrap_or_default(),
            resources: rule.resources.clone().unwrap_or_default(),
            resource_names: rule.resource_names.clone().unwrap_or_default(),
            non_resource_urls: rule.non_resource_urls.clone().unwrap_or_default(),
            jti: None,
            kid: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(v: serde_json::Value) -> GateTokenSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn empty_spec_is_default() {
        assert_eq!(spec(json!({})), GateTokenSpec::default());
        let d = GateTokenSpec::default();
        assert_eq!(d.duration_sec, 3600);
        assert_eq!(d.namespace, "*");
        assert_eq!(d.verbs, ["get"]);
        assert_eq!(
            d.resources,
            ["virtualmachineinstances", "virtualmachineinstances/vnc"]
        );
        assert_eq!(
            d.api_groups(),
            Some(vec!["subresources.kubevirt.io".to_owned()])
        );
        assert!(!d.revoked && !d.generate_service_account);
    }

    #[test]
    fn api_groups_spellings() {
        let s = spec(json!({"APIGroups": ["kubevirt.io"]}));
        assert_eq!(s.api_groups(), Some(vec!["kubevirt.io".to_owned()]));
        let s = spec(json!({"apiGroups": [""]}));
        assert_eq!(s.api_groups(), Some(vec![String::new()]));
        let s = spec(json!({"apiGroups": ["a"], "APIGroups": ["b"]}));
        assert_eq!(
            s.api_groups(),
            Some(vec!["a".to_owned()]),
            "conventional spelling wins"
        );
        let s = spec(json!({"apiGroups": [], "APIGroups": ["b"]}));
        assert_eq!(
            s.api_groups(),
            Some(vec![]),
            "an explicit empty list wins too"
        );
        let s = spec(json!({"nonResourceURLs": ["/healthz"]}));
        assert_eq!(
            s.api_groups(),
            None,
            "no default groups for a non-resource token"
        );
        let s = spec(json!({"nonResourceURLs": []}));
        assert_eq!(
            s.api_groups(),
            Some(vec!["subresources.kubevirt.io".to_owned()])
        );
        let s = spec(json!({"APIGroups": null, "apiGroups": null}));
        assert_eq!(
            s.api_groups(),
            Some(vec!["subresources.kubevirt.io".to_owned()]),
            "null is absent"
        );
    }

    #[test]
    fn both_spellings_round_trip() {
        let v = json!({"apiGroups": ["a"], "APIGroups": ["b"], "nonResourceURLs": ["/x"]});
        let out = serde_json::to_value(spec(v)).unwrap();
        assert_eq!(out["apiGroups"], json!(["a"]));
        assert_eq!(out["APIGroups"], json!(["b"]));
        assert_eq!(out["nonResourceURLs"], json!(["/x"]));
        assert!(out.get("from").is_none());
        assert!(out.get("resourceNames").is_none());
        assert_eq!(out["durationSec"], json!(3600));
    }

    #[test]
    fn effective_rule_resource() {
        let s = spec(json!({"namespace": "default", "resourceNames": ["testvm"]}));
        let r = s.effective_rule().unwrap();
        assert_eq!(
            r,
            EffectiveRule {
                namespace: "default".into(),
                verbs: vec!["get".into()],
                api_groups: Some(vec!["subresources.kubevirt.io".into()]),
                resources: Some(vec![
                    "virtualmachineinstances".into(),
                    "virtualmachineinstances/vnc".into()
                ]),
                resource_names: Some(vec!["testvm".into()]),
                non_resource_urls: None,
            }
        );
        assert!(!r.is_non_resource());
    }

    #[test]
    fn effective_rule_non_resource() {
        for s in [
            spec(json!({"nonResourceURLs": ["/healthz", "/metrics/*"]})),
            spec(json!({"APIGroups": [], "nonResourceURLs": ["/healthz", "/metrics/*"]})),
            spec(
                json!({"apiGroups": [], "APIGroups": ["x"], "nonResourceURLs": ["/healthz", "/metrics/*"], "resourceNames": ["n"]}),
            ),
        ] {
            let r = s.effective_rule().unwrap();
            assert!(r.is_non_resource());
            assert_eq!(r.api_groups, None);
            assert_eq!(r.resources, None);
            assert_eq!(r.resource_names, None);
            assert_eq!(
                r.non_resource_urls,
                Some(vec!["/healthz".into(), "/metrics/*".into()])
            );
        }
    }

    #[test]
    fn effective_rule_errors() {
        let both = spec(json!({"APIGroups": ["x"], "nonResourceURLs": ["/healthz"]}));
        let e = both.effective_rule().unwrap_err();
        assert!(matches!(e, SpecError::GroupsAndNonResourceUrls { .. }));
        assert!(e.to_string().starts_with(
            "auth roles can either apply to API resources or non-resource URL paths, but not both"
        ));
        assert_eq!(both.validate(), Err(e));
        let neither = spec(json!({"apiGroups": []}));
        let e = neither.effective_rule().unwrap_err();
        assert!(matches!(e, SpecError::EmptyRule { .. }));
        assert!(e.to_string().contains("but can't be empty"));
        let neither = spec(json!({"APIGroups": [], "nonResourceURLs": []}));
        assert!(matches!(
            neither.effective_rule(),
            Err(SpecError::EmptyRule { .. })
        ));
    }

    #[test]
    fn validate_checks_duration_and_from() {
        assert_eq!(spec(json!({})).validate(), Ok(()));
        assert_eq!(spec(json!({"from": ""})).validate(), Ok(()));
        assert_eq!(
            spec(json!({"from": "2021-04-22T10:00:00+02:00"})).validate(),
            Ok(())
        );
        assert_eq!(
            spec(json!({"durationSec": 0})).validate(),
            Err(SpecError::NonPositiveDuration(0))
        );
        assert!(matches!(
            spec(json!({"from": "tomorrow"})).validate(),
            Err(SpecError::InvalidFrom(_))
        ));
    }

    #[test]
    fn validity_uses_spec() {
        let now: Timestamp = "2021-04-22T10:00:00Z".parse().unwrap();
        let v = spec(json!({"durationSec": 60})).validity(now).unwrap();
        assert_eq!((v.nbf, v.exp), (1_619_085_600, 1_619_085_660));
        let v = spec(json!({"from": "", "durationSec": 60}))
            .validity(now)
            .unwrap();
        assert_eq!(v.from, "2021-04-22T10:00:00Z");
    }

    #[test]
    fn phases() {
        for p in GateTokenPhase::ALL {
            assert_eq!(p.as_str().parse::<GateTokenPhase>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(
            "ready".parse::<GateTokenPhase>(),
            Err(UnknownPhase {
                kind: "GateToken",
                value: "ready".into()
            })
        );
        let mut st = GateTokenStatus::default();
        assert_eq!(st.parsed_phase(), Ok(GateTokenPhase::New));
        st.set_phase(GateTokenPhase::Revoked);
        assert_eq!(st.phase, "Revoked");
        assert_eq!(st.parsed_phase(), Ok(GateTokenPhase::Revoked));
    }

    #[test]
    fn default_status_serialises_every_required_key() {
        let v = serde_json::to_value(GateTokenStatus::default()).unwrap();
        assert_eq!(
            v,
            json!({
                "conditions": [],
                "token": "",
                "service-account-name": "",
                "phase": "",
                "data": {"from": "", "until": "", "duration-sec": 0, "nbf": 0, "exp": 0, "alg": ""}
            })
        );
    }

    #[test]
    fn status_tolerates_missing_keys() {
        let st: GateTokenStatus = serde_json::from_value(json!({})).unwrap();
        assert_eq!(st, GateTokenStatus::default());
        let st: GateTokenStatus =
            serde_json::from_value(json!({"phase": "Ready", "data": {"exp": 5}})).unwrap();
        assert_eq!(st.parsed_phase(), Ok(GateTokenPhase::Ready));
        assert_eq!(st.data.exp, 5);
    }

    #[test]
    fn data_from_rule_and_validity() {
        let s = spec(json!({"namespace": "default", "resourceNames": ["testvm"]}));
        let now: Timestamp = "2021-04-22T10:00:00Z".parse().unwrap();
        let mut d = GateTokenData::new(
            &s.effective_rule().unwrap(),
            &s.validity(now).unwrap(),
            GEN_B_ALG,
        );
        d.jti = Some("2a4c6c1e-0000-4000-8000-000000000000".into());
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            json!({
                "from": "2021-04-22T10:00:00Z",
                "until": "2021-04-22T11:00:00Z",
                "duration-sec": 3600,
                "nbf": 1_619_085_600,
                "exp": 1_619_089_200,
                "alg": "RS256",
                "namespace": "default",
                "verbs": ["get"],
                "APIGroups": ["subresources.kubevirt.io"],
                "resources": ["virtualmachineinstances", "virtualmachineinstances/vnc"],
                "resourceNames": ["testvm"],
                "jti": "2a4c6c1e-0000-4000-8000-000000000000"
            })
        );
        let back: GateTokenData = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }
}
