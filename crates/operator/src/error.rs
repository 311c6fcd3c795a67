//! Errors of the operator, each with a category that decides what the controller does next.

use std::time::Duration;

use crate::builders::BuildError;

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// The object itself is wrong: report it and wait for it to change (no retry loop).
    Invalid,
    /// The API server refused for lack of permission (for example the RBAC escalation check):
    /// report it, retry slowly (an administrator may grant the permission).
    Forbidden,
    /// Anything that may succeed later (network, conflicts, 5xx): retry with backoff.
    Transient,
}

/// An operator error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, naming the object ("apply Deployment ns/name").
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A desired object could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Generating or serialising a key failed.
    #[error("cannot generate the signing key: {0}")]
    KeyGeneration(#[source] virt_gateway_auth::keys::KeyError),
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(#[source] virt_gateway_auth::jwt::SignError),
    /// A blocking task (key generation, signing) panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Leader election failed.
    #[error("leader election: {0}")]
    LeaderElection(String),
    /// This replica lost the leader Lease while running; it stops so that only one replica acts.
    #[error("lost the leader Lease; stopping so that only one replica acts")]
    LostLeadership,
    /// The metrics or health server could not start.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The API server does not serve the CRDs.
    #[error(
        "the API server does not serve {0}: install the CRDs first (`virt-gateway-operator crds | kubectl apply -f -`)"
    )]
    CrdMissing(String),
}

impl Error {
    /// Wraps a kube error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }

    /// The HTTP status code of an API error, if this is one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Kube {
                source: kube::Error::Api(status),
                ..
            } => Some(status.code),
            _ => None,
        }
    }

    /// The category of this error.
    pub fn category(&self) -> Category {
        match self {
            Self::Kube { .. } => match self.status_code() {
                Some(401 | 403) => Category::Forbidden,
                // 400 Bad Request and 422 Invalid: the object as built from the spec was refused
                // (a namespace name that is not a namespace, say): it will not pass until the
                // spec changes.
                Some(400 | 422) => Category::Invalid,
                _ => Category::Transient,
            },
            Self::Build(_) => Category::Invalid,
            Self::KeyGeneration(_)
            | Self::Sign(_)
            | Self::Task(_)
            | Self::Finalizer(_)
            | Self::LeaderElection(_)
            | Self::LostLeadership
            | Self::Listen { .. }
            | Self::CrdMissing(_) => Category::Transient,
        }
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => match self.status_code() {
                Some(401 | 403) => "forbidden",
                Some(404) => "not_found",
                Some(409) => "conflict",
                Some(400 | 422) => "invalid",
                Some(_) => "api",
                None => "connection",
            },
            Self::Build(_) => "build",
            Self::KeyGeneration(_) => "key_generation",
            Self::Sign(_) => "sign",
            Self::Task(_) => "task",
            Self::Finalizer(_) => "finalizer",
            Self::LeaderElection(_) | Self::LostLeadership => "leader_election",
            Self::Listen { .. } => "listen",
            Self::CrdMissing(_) => "crd_missing",
        }
    }

    /// Whether the API answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }
}

/// Whether a kube error is an API error with this status code.
pub fn has_code(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

/// Exponential backoff for the `n`-th consecutive failure (from 1): 1 s, 2 s, 4 s, ... capped.
pub fn backoff(n: u32, cap: Duration) -> Duration {
    let secs = 1u64
        .checked_shl(n.saturating_sub(1).min(20))
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(cap)
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube {
            action: "apply x".into(),
            source: kube::Error::Api(
                kube::core::Status::failure("m", "r")
                    .with_code(code)
                    .boxed(),
            ),
        }
    }

    #[test]
    fn categories() {
        assert_eq!(api(403).category(), Category::Forbidden);
        assert_eq!(api(422).category(), Category::Invalid);
        assert_eq!(api(409).category(), Category::Transient);
        assert_eq!(api(500).category(), Category::Transient);
        assert_eq!(api(409).metric_label(), "conflict");
        assert!(api(404).is_not_found());
        assert!(api(403).to_string().starts_with("apply x: "));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let cap = Duration::from_secs(300);
        assert_eq!(backoff(1, cap), Duration::from_secs(1));
        assert_eq!(backoff(2, cap), Duration::from_secs(2));
        assert_eq!(backoff(5, cap), Duration::from_secs(16));
        assert_eq!(backoff(60, cap), cap);
        assert_eq!(backoff(0, cap), Duration::from_secs(1));
    }
}
