//! The value that travels through the request pipeline: the HTTP request, what the audit log
//! knows about it, and what the stages before have established (`T`): the path under the API
//! prefix, then the authenticated principal, then the authorized request. Each stage takes an
//! `Exchange<In>` and hands the next an `Exchange<Out>`, so the compiler checks the order of the
//! stages and no stage looks anything up in request extensions.

use std::net::SocketAddr;

use axum::extract::Request;

use crate::audit::AuditCtx;

/// The client's address, set by the server on every request of a connection.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// A request in the pipeline.
pub struct Exchange<T> {
    /// The HTTP request.
    pub request: Request,
    /// Who, what and when, for the audit log.
    pub audit: AuditCtx,
    /// What the stages before established.
    pub value: T,
}

impl<T> Exchange<T> {
    /// The next stage's exchange: the same request with `value`.
    pub fn with<U>(self, value: U) -> Exchange<U> {
        Exchange {
            request: self.request,
            audit: self.audit,
            value,
        }
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        self.audit.client
    }
}

/// The path under the API prefix, e.g. `/api/v1/pods` for `/k8s/api/v1/pods` (`/` for the prefix
/// itself). Only [`crate::routes`] makes one, from the prefix it matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPath(String);

impl ApiPath {
    /// The path under `prefix` (without its trailing `/`), when `raw` is the prefix or lies under it.
    pub fn under(prefix: &str, raw: &str) -> Option<Self> {
        match raw.strip_prefix(prefix)? {
            "" => Some(Self("/".into())),
            rest if rest.starts_with('/') => Some(Self(rest.into())),
            _ => None,
        }
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_match_whole_segments() {
        assert_eq!(ApiPath::under("/k8s", "/k8s").unwrap().as_str(), "/");
        assert_eq!(ApiPath::under("/k8s", "/k8s/").unwrap().as_str(), "/");
        assert_eq!(
            ApiPath::under("/k8s", "/k8s/api/v1/pods").unwrap().as_str(),
            "/api/v1/pods"
        );
        assert_eq!(ApiPath::under("/k8s", "/k8sdemo.html"), None);
        assert_eq!(ApiPath::under("/k8s", "/other"), None);
    }
}
