//! The token claims: one RBAC-style policy rule, a target namespace, and the time window.
//!
//! Wire format (Gen B, §1.8 of the upstream notes): a JSON object whose keys serialise in sorted
//! order, with every list claim present and `null` when unset:
//!
//! ```json
//! {"apiGroups":["subresources.kubevirt.io"],"exp":4102444800,"namespace":"default","nbf":1700000000,
//!  "nonResourceURLs":null,"resourceNames":["testvm"],"resources":["virtualmachineinstances",
//!  "virtualmachineinstances/vnc"],"verbs":["get"]}
//! ```
//!
//! `aud`, `iat`, `iss` and `jti` (not in Gen B) are added in their sorted places when set, and
//! omitted otherwise. `aud` is written as a string when it names one audience (RFC 7519 allows a
//! string or an array, and both are read).
//!
//! Decoding follows Gen B's defaults — `namespace` missing or `null` ⇒ `"*"`, `verbs` missing or
//! `null` ⇒ `["get"]`, other lists missing or `null` ⇒ unset — but unlike Gen B (which silently
//! ignored a claim of the wrong type, or panicked on a non-string array item) a claim of the wrong
//! JSON type is an error. Unknown claims (`sub`, ...) are ignored.

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// The claims of a gateway token.
///
/// The meaning of each list, for authorization (see [`crate::authz`]):
///
/// | claim             | `None` (`null`/missing)        | `Some([])`     | `Some(list)`                         |
/// |-------------------|--------------------------------|----------------|--------------------------------------|
/// | `verbs`           | — (decoded as `["get"]`)       | nothing        | RBAC verbs, `*` = all                |
/// | `api_groups`      | no resource request allowed    | nothing        | RBAC groups, `""` = core, `*` = all  |
/// | `resources`       | any resource and subresource   | nothing        | RBAC resources incl. `r/sub`, `*/sub`|
/// | `resource_names`  | any object name                | nothing        | exact names (RBAC: no wildcard)      |
/// | `non_resource_urls` | no non-resource request      | nothing        | RBAC paths, trailing `*` = prefix    |
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// Allowed API groups; `""` is the core group, `*` all groups. Wire name `apiGroups`.
    #[serde(rename = "apiGroups")]
    pub api_groups: Option<Vec<String>>,
    /// Audiences: the gateways (GateServers) the token is for. Not in Gen B; omitted from the wire
    /// when unset. A token without `aud` is valid at every gateway that trusts its key and does
    /// not require an audience.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_audience"
    )]
    pub aud: Option<Vec<String>>,
    /// What the holder may do on a VM console: `control` (keys, pointer, clipboard) or
    /// `observe` (watch only). Not in Gen B; omitted from the wire when unset, which means
    /// control. Wire name `consoleRole`. Any other value is treated as `observe` (fail closed).
    #[serde(rename = "consoleRole", skip_serializing_if = "Option::is_none")]
    pub console_role: Option<String>,
    /// Expiry, Unix seconds. Required.
    pub exp: u64,
    /// Issue time, Unix seconds. Not in Gen B; omitted from the wire when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer. Not in Gen B; omitted from the wire when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Token id (the GateToken's UID, for revocation). Not in Gen B; omitted from the wire when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Target namespace of the allowed requests; `*` = all namespaces and cluster-scoped requests.
    pub namespace: String,
    /// Not-before, Unix seconds. Gen B always sets it; omitted from the wire when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Allowed non-resource paths (RBAC form: exact, `*`, or a prefix ending in `*`). Wire name
    /// `nonResourceURLs`.
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Option<Vec<String>>,
    /// Allowed object names. Wire name `resourceNames`.
    #[serde(rename = "resourceNames")]
    pub resource_names: Option<Vec<String>>,
    /// Allowed resources (`resource`, `resource/subresource`, `*/subresource`, `*`).
    pub resources: Option<Vec<String>>,
    /// Allowed verbs (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, ..., or `*`).
    #[serde(serialize_with = "serialize_verbs")]
    pub verbs: Vec<String>,
}

// One audience as a string (the common form), several as an array.
fn serialize_audience<S: Serializer>(aud: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
    match aud.as_deref() {
        Some([one]) => one.serialize(s),
        Some(many) => many.serialize(s),
        None => s.serialize_none(),
    }
}

// Always an array: after decoding, `verbs` is never "unset" (Gen B's decoder turns null into ["get"]).
fn serialize_verbs<S: Serializer>(verbs: &[String], s: S) -> Result<S::Ok, S::Error> {
    verbs.serialize(s)
}

/// The verb a token allows when its `verbs` claim is missing or `null` (Gen B default).
pub const DEFAULT_VERB: &str = "get";
/// The namespace a token targets when its `namespace` claim is missing or `null` (Gen B default).
pub const ALL_NAMESPACES: &str = "*";

impl Claims {
    /// Claims that expire at `exp`, with Gen B's decoding defaults: namespace `*`, verbs `["get"]`,
    /// every other list unset (`apiGroups` unset means no resource request is allowed: set it).
    pub fn new(exp: u64) -> Self {
        Self {
            api_groups: None,
            aud: None,
            console_role: None,
            exp,
            iat: None,
            iss: None,
            jti: None,
            namespace: ALL_NAMESPACES.to_owned(),
            nbf: None,
            non_resource_urls: None,
            resource_names: None,
            resources: None,
            verbs: vec![DEFAULT_VERB.to_owned()],
        }
    }

    /// Decodes claims from a JSON value (a token payload), with Gen B defaults and strict types.
    pub fn from_json(value: &Value) -> Result<Self, ClaimsError> {
        let obj = value.as_object().ok_or(ClaimsError::NotAnObject)?;
        let exp = numeric_date(obj, "exp")?.ok_or(ClaimsError::MissingExp)?;
        Ok(Self {
            api_groups: string_list(obj, "apiGroups")?,
            aud: audience(obj)?,
            console_role: string(obj, "consoleRole")?,
            exp,
            iat: numeric_date(obj, "iat")?,
            iss: string(obj, "iss")?,
            jti: string(obj, "jti")?,
            namespace: string(obj, "namespace")?.unwrap_or_else(|| ALL_NAMESPACES.to_owned()),
            nbf: numeric_date(obj, "nbf")?,
            non_resource_urls: string_list(obj, "nonResourceURLs")?,
            resource_names: string_list(obj, "resourceNames")?,
            resources: string_list(obj, "resources")?,
            verbs: string_list(obj, "verbs")?.unwrap_or_else(|| vec![DEFAULT_VERB.to_owned()]),
        })
    }

    /// Decodes claims from JSON bytes (a token payload).
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, ClaimsError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ClaimsError::InvalidJson {
            reason: e.to_string(),
        })?;
        Self::from_json(&value)
    }

    /// The claims in their exact wire form (see the module docs).
    pub fn to_json(&self) -> Value {
        // Serialising this struct cannot fail (strings, integers, lists); fall back to null anyway
        // rather than panic.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl TryFrom<Value> for Claims {
    type Error = ClaimsError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Self::from_json(&value)
    }
}

impl<'de> serde::Deserialize<'de> for Claims {
    /// Deserialises with the same defaults and strict type checks as [`Claims::from_json`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// Why a token payload is not acceptable claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// The payload is not JSON.
    #[error("claims are not valid JSON: {reason}")]
    InvalidJson {
        /// What the JSON parser reported.
        reason: String,
    },
    /// The payload is JSON but not an object.
    #[error("claims are not a JSON object")]
    NotAnObject,
    /// The `exp` claim is missing or `null`; every token must expire.
    #[error("the exp claim is missing; every token must expire")]
    MissingExp,
    /// A claim has the wrong JSON type (including a list with a non-string item).
    #[error("claim {claim:?} has the wrong type: expected {expected}")]
    WrongType {
        /// The claim's wire name.
        claim: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

fn present<'a>(obj: &'a Map<String, Value>, claim: &str) -> Option<&'a Value> {
    obj.get(claim).filter(|v| !v.is_null())
}

fn string(obj: &Map<String, Value>, claim: &'static str) -> Result<Option<String>, ClaimsError> {
    match present(obj, claim) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ClaimsError::WrongType {
            claim,
            expected: "a string",
        }),
    }
}

fn string_list(
    obj: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<Vec<String>>, ClaimsError> {
    let wrong = ClaimsError::WrongType {
        claim,
        expected: "an array of strings or null",
    };
    match present(obj, claim) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| wrong.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong),
    }
}

/// `aud`: a string (one audience) or an array of strings (RFC 7519 §4.1.3).
fn audience(obj: &Map<String, Value>) -> Result<Option<Vec<String>>, ClaimsError> {
    match present(obj, "aud") {
        Some(Value::String(one)) => Ok(Some(vec![one.clone()])),
        Some(Value::Array(_)) => string_list(obj, "aud"),
        None => Ok(None),
        Some(_) => Err(ClaimsError::WrongType {
            claim: "aud",
            expected: "a string or an array of strings",
        }),
    }
}

/// Largest float that still counts every integer exactly (2^53).
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// A NumericDate (RFC 7519): a non-negative integer of seconds. An integral float (`1.7e9`, as some
/// libraries write) is accepted too; fractions, negatives and other types are errors.
fn numeric_date(obj: &Map<String, Value>, claim: &'static str) -> Result<Option<u64>, ClaimsError> {
    let wrong = ClaimsError::WrongType {
        claim,
        expected: "a non-negative integer number of seconds",
    };
    match present(obj, claim) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(Some(u));
            }
            match n.as_f64() {
                Some(f)
                    if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= MAX_EXACT_FLOAT =>
                {
                    // Exact: f is integral and within u64's exactly-representable range.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Ok(Some(f as u64))
                }
                _ => Err(wrong),
            }
        }
        Some(_) => Err(wrong),
    }
}
