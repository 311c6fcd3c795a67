//! Pure builders of the objects the operator wants to exist. No client, no clock, no I/O: every
//! input is an argument, so each builder is unit-tested from YAML fixtures
//! (`crates/operator/tests/fixtures`).

pub mod server;
pub mod token;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

pub use server::{
    ApiAvailability, DesiredServer, Exposure, GatewayDefaults, GatewayOptions, OAuthPlan, Platform,
    build_server, gateway_command, gateway_deployment,
};
pub use token::{TokenAccount, bind_claims, token_account, token_claims, token_data};

/// Why a desired object could not be built. Only incomplete metadata (an object that did not
/// come from the API server) or an out-of-range value can cause it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The object lacks metadata that every stored object has.
    #[error(
        "{kind} has no metadata.{field}; only objects read from the API server can be reconciled"
    )]
    MissingMetadata {
        /// `GateServer` or `GateToken`.
        kind: &'static str,
        /// `name`, `namespace` or `uid`.
        field: &'static str,
    },
    /// The spec is invalid (what the CRD's CEL rules also check).
    #[error(transparent)]
    InvalidSpec(#[from] virt_gateway_api::SpecError),
    /// A time that cannot be a JWT NumericDate.
    #[error(
        "{field} is {value}, before 1970-01-01T00:00:00Z: JWT times cannot be negative; use a later from"
    )]
    NegativeTime {
        /// `nbf` or `exp`.
        field: &'static str,
        /// The value in Unix seconds.
        value: i64,
    },
}

/// `(namespace, name, controller owner reference)` of a stored object.
pub(crate) fn identity<K: Resource<DynamicType = ()>>(
    obj: &K,
    kind: &'static str,
) -> Result<(String, String, OwnerReference), BuildError> {
    let meta = obj.meta();
    let name = meta.name.clone().ok_or(BuildError::MissingMetadata {
        kind,
        field: "name",
    })?;
    let namespace = meta.namespace.clone().ok_or(BuildError::MissingMetadata {
        kind,
        field: "namespace",
    })?;
    let mut owner = obj
        .controller_owner_ref(&())
        .ok_or(BuildError::MissingMetadata { kind, field: "uid" })?;
    // As Gen B: the owner's foreground deletion waits for its children.
    owner.block_owner_deletion = Some(true);
    Ok((namespace, name, owner))
}

#[cfg(test)]
mod tests;
