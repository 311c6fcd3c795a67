//! The `ocgate.yaacov.com/v1beta1` API of virt-gateway: the [`GateServer`] and [`GateToken`]
//! custom resources, their CRDs, and pure helpers for the operator.
//!
//! The types accept every field of the upstream "Gen B" contract (kube-gateway-operator,
//! April 2021) with its defaults and validations, so manifests written for the upstream operator
//! keep working unchanged, plus a few documented extensions. See `crates/api/README.md` for the
//! full list of decisions; the main points are:
//!
//! * **Two spellings.** GateToken accepts both `APIGroups` (Gen B) and `apiGroups`
//!   (conventional); GateServer accepts both `generateSecret` and the deprecated, misspelled
//!   `gnerateSecret` of the seed sample. Both spellings are declared in the schema, so the API
//!   server prunes neither. The conventional spelling wins when both are present. These fields
//!   have **no schema default** (a default on one spelling would make the other look unset);
//!   read them through [`GateTokenSpec::api_groups`] and [`GateServerSpec::generate_secret`],
//!   which apply the default in code.
//! * **Validation at admission.** CEL rules (`x-kubernetes-validations`) reject what the
//!   upstream only found at reconcile time: API groups together with non-resource URLs, an
//!   empty rule, `durationSec <= 0` and a `from` that is not an RFC 3339 date-time. The rule
//!   texts live in [`cel`]; the same checks exist in code ([`GateTokenSpec::validate`],
//!   [`GateServerSpec::validate`]) for objects that were stored before the rules existed.
//! * **Status shape.** Every status field that the Gen B schema marks as required is always
//!   serialised, even when empty.
//!
//! * **Delegation at admission.** A `ValidatingAdmissionPolicy` per resource ([`admission`])
//!   lets a user create a GateToken (GateServer) only for a rule they may use themselves; it
//!   ships in `deploy/crds/` with the CRDs.
//!
//! The crate performs no I/O; its `crdgen` binary prints or writes the CRD manifests and the
//! delegation policy (see [`crd`] and [`admission`]).

#![warn(missing_docs)]

pub mod admission;
pub mod cel;
pub mod conditions;
pub mod crd;
pub mod error;
pub mod gateserver;
pub mod gatetoken;
pub mod names;
pub mod rule;
mod schema;
pub mod time;

pub use conditions::{
    ConditionStatus, find_condition, is_condition_true, new_condition, remove_condition,
    set_condition,
};
pub use error::{CrdError, SpecError, TimeError, UnknownPhase};
pub use gateserver::{
    ConsoleControllers, GateServer, GateServerConsoles, GateServerLimits, GateServerOidc,
    GateServerPhase, GateServerSpec, GateServerStatus, OIDC_CLIENT_SECRET_KEY,
};
pub use gatetoken::{
    ConsoleRole, GateToken, GateTokenData, GateTokenPhase, GateTokenSpec, GateTokenStatus,
};
pub use rule::EffectiveRule;
pub use time::{TokenValidity, parse_rfc3339};

/// The API group of both resources.
pub const GROUP: &str = "ocgate.yaacov.com";

/// The only API version of both resources.
pub const VERSION: &str = "v1beta1";

/// `apiVersion` of both resources (`ocgate.yaacov.com/v1beta1`).
pub const API_VERSION: &str = "ocgate.yaacov.com/v1beta1";

/// The CRD category of both resources, so that `kubectl get ocgate` lists them together.
pub const CATEGORY: &str = "ocgate";

/// The key-pair Secret of Gen B, shared by the GateServers and GateTokens of a namespace.
pub const JWT_SECRET_NAME: &str = "kube-gateway-jwt-secret";

/// Key of the public key (PEM) in [`JWT_SECRET_NAME`].
pub const JWT_SECRET_PUBLIC_KEY: &str = "cert.pem";

/// Key of the private key (PEM) in [`JWT_SECRET_NAME`].
pub const JWT_SECRET_PRIVATE_KEY: &str = "key.pem";
