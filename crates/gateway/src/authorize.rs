//! Authorization: the path under the API prefix is parsed exactly as kube-apiserver's
//! RequestInfo, and the principal's claims must allow it, exactly as one RBAC rule would
//! (`virt-gateway-auth`). In pass-through mode only the parsing applies (the path must still be
//! canonical); the API server authorizes with the caller's own credential.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{HeaderMap, Method};
use tower::Service;
use virt_gateway_auth::request::{self, RequestInfo};

use crate::authn::{Authenticated, Principal};
use crate::error::GatewayError;
use crate::exchange::{ApiPath, Exchange};
use crate::headers::upgrade_kind;
use crate::outcome::Outcome;

/// An API request that may be forwarded.
#[derive(Clone, Debug)]
pub struct Authorized {
    /// The path under the API prefix.
    pub api_path: ApiPath,
    /// Who it acts as.
    pub principal: Principal,
    /// The parsed request (verb, resource, namespace, name, ...).
    pub info: RequestInfo,
    /// Whether it asks for a WebSocket upgrade.
    pub websocket: bool,
}

/// Decides whether `principal` may make the request (`method`, `api_path`, `query`, `headers`).
pub fn authorize(
    principal: &Principal,
    method: &Method,
    api_path: &ApiPath,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(RequestInfo, bool), GatewayError> {
    let info = request::parse(method.as_str(), api_path.as_str(), query)?;
    if let Some(claims) = principal.claims() {
        virt_gateway_auth::authz::authorize(claims, &info)?;
    }
    let websocket = upgrade_kind(headers)?;
    Ok((info, websocket))
}

/// The authorization stage of the API pipeline: `Exchange<Authenticated>` in,
/// `Exchange<Authorized>` to `S`, or a 400/403 refusal.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
}

impl<S> Authorize<S> {
    /// Authorizes for `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S> Service<Exchange<Authenticated>> for Authorize<S>
where
    S: Service<Exchange<Authorized>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, exchange: Exchange<Authenticated>) -> Self::Future {
        let Authenticated {
            api_path,
            principal,
        } = exchange.value.clone();
        let req = &exchange.request;
        let decided = authorize(
            &principal,
            req.method(),
            &api_path,
            req.uri().query(),
            req.headers(),
        );
        match decided {
            Ok((info, websocket)) => {
                let mut inner = self.inner.clone();
                let next = exchange.with(Authorized {
                    api_path,
                    principal,
                    info,
                    websocket,
                });
                Box::pin(async move { inner.call(next).await })
            }
            Err(e) => {
                let mut response = e.into_response();
                Outcome::of(&response)
                    .by(&principal.actor())
                    .attach(&mut response);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use http::StatusCode;
    use tower::util::BoxCloneService;
    use tower::{ServiceExt, service_fn};
    use virt_gateway_auth::jwt::{Claims, VerifiedToken};
    use virt_gateway_auth::keys::KeyAlgorithm;

    use super::*;
    use crate::authn::tests::api_exchange;
    use crate::outcome::Reason;
    use crate::token::{Credential, TokenSource};

    fn principal(claims: Claims) -> Principal {
        Principal::Token {
            credential: Credential {
                token: "t".into(),
                source: TokenSource::Header,
            },
            verified: Arc::new(VerifiedToken {
                claims,
                kid: "k".into(),
                algorithm: KeyAlgorithm::EcdsaP256,
                kid_in_header: true,
            }),
        }
    }

    fn seed() -> Claims {
        let mut c = Claims::new(4_102_444_800);
        c.namespace = "default".into();
        c.jti = Some("u1".into());
        c.api_groups = Some(vec!["subresources.kubevirt.io".into()]);
        c.resources = Some(vec![
            "virtualmachineinstances".into(),
            "virtualmachineinstances/vnc".into(),
        ]);
        c.resource_names = Some(vec!["testvm".into()]);
        c
    }

    fn stage() -> Authorize<BoxCloneService<Exchange<Authorized>, Response, Infallible>> {
        Authorize::new(BoxCloneService::new(service_fn(
            |ex: Exchange<Authorized>| async move {
                let body = format!("{} ws={}", ex.value.info.verb, ex.value.websocket);
                Ok::<_, Infallible>(Response::new(Body::from(body)))
            },
        )))
    }

    fn authenticated(
        path: &str,
        headers: &[(&str, &str)],
        p: Principal,
    ) -> Exchange<Authenticated> {
        let ex = api_exchange(path, headers);
        let api_path = ex.value.clone();
        ex.with(Authenticated {
            api_path,
            principal: p,
        })
    }

    const VNC: &str =
        "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc";

    #[tokio::test]
    async fn the_seed_token_opens_its_console_and_nothing_else() {
        let ws = [("connection", "Upgrade"), ("upgrade", "websocket")];
        let response = stage()
            .oneshot(authenticated(VNC, &ws, principal(seed())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let other = VNC.replace("testvm", "othervm");
        let response = stage()
            .oneshot(authenticated(&other, &ws, principal(seed())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let outcome = Outcome::of(&response);
        assert_eq!(outcome.reason, Reason::Forbidden);
        assert_eq!(outcome.jti.as_deref(), Some("u1"));
    }

    #[tokio::test]
    async fn malformed_paths_and_other_upgrades_are_bad_requests() {
        let dots = "/api/v1/namespaces/default/../kube-system/secrets";
        let response = stage()
            .oneshot(authenticated(dots, &[], principal(seed())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let spdy = [("connection", "Upgrade"), ("upgrade", "SPDY/3.1")];
        let response = stage()
            .oneshot(authenticated(VNC, &spdy, principal(seed())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn pass_through_only_parses() {
        let p = Principal::PassThrough {
            credential: Credential {
                token: "t".into(),
                source: TokenSource::Header,
            },
        };
        let response = stage()
            .oneshot(authenticated("/api/v1/secrets", &[], p.clone()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = stage()
            .oneshot(authenticated("/api/v1//secrets", &[], p))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
