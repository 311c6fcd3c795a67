//! Routing: which part answers a request. The path is classified once ([`classify`]); the API
//! prefix is interpreted only here, yielding the [`ApiPath`] the pipeline works on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::Method;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::audit::{Audit, AuditCtx};
use crate::authn::{Authenticate, Authenticator};
use crate::authorize::Authorize;
use crate::endpoints::gettoken::GetToken;
use crate::endpoints::health::{self, Readiness};
use crate::endpoints::login::Login;
use crate::endpoints::{jwks, session, signin};
use crate::error::GatewayError;
use crate::exchange::{ApiPath, ClientAddr, Exchange};
use crate::headers;
use crate::limits::DeadlineBody;
use crate::metrics::Metrics;
use crate::observe::{Kind, Observe, observe};
use crate::proxy::Forward;
use crate::revocation::Revocation;
use crate::static_files;
use crate::verify::TokenVerifier;
use hyper::body::Body as _;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/auth/token`.
    Token,
    /// `/auth/jwt/set`.
    JwtSet,
    /// `/auth/logout`.
    Logout,
    /// `/auth/session`.
    Session,
    /// `/auth/gettoken`.
    GetToken,
    /// `/auth/login` (sign in with the identity provider).
    SignInStart,
    /// `/auth/callback` (the provider's answer).
    SignInCallback,
    /// `/auth/me` (who is signed in).
    Me,
    /// `/.well-known/jwks.json`.
    Jwks,
    /// The API proxy.
    Api(ApiPath),
    /// A static file under the base path.
    Static,
    /// Nothing.
    NotFound,
}

/// The route of `path`, given the API prefix (without its trailing `/`) and the base path (with
/// its trailing `/`). The API prefix matches whole segments only (`/k8sdemo.html` is static).
pub fn classify(path: &str, api_prefix: &str, base_path: &str) -> Route {
    match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/auth/token" => Route::Token,
        "/auth/jwt/set" => Route::JwtSet,
        "/auth/logout" => Route::Logout,
        "/auth/session" => Route::Session,
        "/auth/gettoken" => Route::GetToken,
        "/auth/login" => Route::SignInStart,
        "/auth/callback" => Route::SignInCallback,
        "/auth/me" => Route::Me,
        "/.well-known/jwks.json" => Route::Jwks,
        _ => {
            if let Some(api_path) = ApiPath::under(api_prefix, path) {
                Route::Api(api_path)
            } else if path.starts_with(base_path) || format!("{path}/") == base_path {
                Route::Static
            } else {
                Route::NotFound
            }
        }
    }
}

/// The API pipeline.
pub type ApiService = BoxCloneSyncService<Exchange<ApiPath>, Response, Infallible>;

/// Assembles the API pipeline: observe → authenticate → authorize → forward.
pub fn api_pipeline(
    metrics: Arc<Metrics>,
    authn: Arc<Authenticator>,
    forward: Forward,
) -> ApiService {
    BoxCloneSyncService::new(Observe::new(
        Kind::Api,
        metrics,
        Authenticate::new(authn, Authorize::new(forward)),
    ))
}

/// Everything the main listener serves.
pub struct Routes {
    /// The audit log.
    pub audit: Audit,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The API prefix without its trailing `/`.
    pub api_prefix: String,
    /// The static files' mount point (ends with `/`).
    pub base_path: String,
    /// The static web root.
    pub public_dir: PathBuf,
    /// The API pipeline.
    pub api: ApiService,
    /// The authenticator (for `/auth/session`).
    pub authn: Arc<Authenticator>,
    /// The sign-in endpoints.
    pub login: Arc<Login>,
    /// `/auth/gettoken`.
    pub gettoken: Arc<GetToken>,
    /// The verification keys (for the JWKS).
    pub verifier: Arc<TokenVerifier>,
    /// Readiness.
    pub readiness: Arc<Readiness>,
    /// The `frame-ancestors` policy of every response.
    pub frame_ancestors: http::HeaderValue,
    /// Whether `/.well-known/jwks.json` is served (off unless enabled: review §2).
    pub publish_jwks: bool,
    /// Time every request body has to arrive (review §11: slow loris).
    pub body_read_timeout: std::time::Duration,
}

fn client_of(req: &Request) -> SocketAddr {
    req.extensions()
        .get::<ClientAddr>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

fn get_or_head(req: &Request) -> Result<(), GatewayError> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        Ok(())
    } else {
        Err(GatewayError::MethodNotAllowed(req.method().to_string()))
    }
}

impl Routes {
    fn exchange<T>(&self, request: Request, value: T) -> Exchange<T> {
        let audit = AuditCtx::new(
            self.audit.clone(),
            client_of(&request),
            request.method().as_str(),
            request.uri().path(),
        );
        Exchange {
            request,
            audit,
            value,
        }
    }

    /// An `/auth/*` endpoint, observed on the same path as the API proxy.
    async fn auth<F, Fut>(&self, request: Request, endpoint: F) -> Response
    where
        F: FnOnce(Exchange<()>) -> Fut,
        Fut: Future<Output = Response>,
    {
        let exchange = self.exchange(request, ());
        let ctx = exchange.audit.clone();
        let response = endpoint(exchange).await;
        observe(Kind::Auth, &self.metrics, ctx, response)
    }

    /// Answers one request, with the security headers of [`headers::add_security_headers`].
    pub async fn handle(&self, request: Request) -> Response {
        let route = classify(request.uri().path(), &self.api_prefix, &self.base_path);
        // The API and /auth/* take tokens; a static page does when linked with ?token=.
        let takes_token = match &route {
            Route::Static => request
                .uri()
                .query()
                .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "token")),
            Route::Healthz | Route::Readyz | Route::Jwks | Route::NotFound => false,
            _ => true,
        };
        // An empty body (most GETs) cannot be slow: no timer on the hot path for it.
        let request = if request.body().is_end_stream() {
            request
        } else {
            request
                .map(|body| axum::body::Body::new(DeadlineBody::new(body, self.body_read_timeout)))
        };
        let mut response = self.route(route, request).await;
        headers::add_security_headers(response.headers_mut(), &self.frame_ancestors, takes_token);
        response
    }

    async fn route(&self, route: Route, request: Request) -> Response {
        match route {
            Route::Api(api_path) => {
                let exchange = self.exchange(request, api_path);
                self.api
                    .clone()
                    .oneshot(exchange)
                    .await
                    .unwrap_or_else(|e| match e {})
            }
            // Boxed: the futures of the endpoints are large (sign-in, gettoken and static files
            // hold HTTP clients and file reads), and an unboxed one sizes the future of every
            // request, which hyper moves (memcpy) on each call: ~14 % of the proxy's instructions.
            other => Box::pin(self.other(other, request)).await,
        }
    }

    /// Every route but the API proxy.
    async fn other(&self, route: Route, request: Request) -> Response {
        match route {
            // Answered by `route`; never reaches here.
            Route::Api(_) => GatewayError::NotFound.into_response(),
            Route::Token => self.auth(request, |ex| self.login.token(ex)).await,
            Route::JwtSet => self.auth(request, |ex| self.login.jwt_set(ex)).await,
            Route::Logout => self.auth(request, |ex| self.login.logout(ex)).await,
            Route::Session => {
                self.auth(request, |ex| session::session(&self.authn, ex))
                    .await
            }
            Route::GetToken => self.auth(request, |ex| self.gettoken.handle(ex)).await,
            Route::SignInStart => match self.authn.signin() {
                None => GatewayError::NotFound.into_response(),
                Some(s) => self.auth(request, |ex| signin::login(s, ex)).await,
            },
            Route::SignInCallback => match self.authn.signin() {
                None => GatewayError::NotFound.into_response(),
                Some(s) => self.auth(request, |ex| signin::callback(s, ex)).await,
            },
            Route::Me => {
                self.auth(request, |ex| signin::me(self.authn.signin(), ex))
                    .await
            }
            Route::Jwks if !self.publish_jwks => GatewayError::NotFound.into_response(),
            Route::Jwks => match get_or_head(&request) {
                Ok(()) => jwks::jwks(&self.verifier),
                Err(e) => e.into_response(),
            },
            Route::Healthz => health::healthz(),
            Route::Readyz => self.readiness.readyz_public(),
            Route::Static => static_files::serve(&self.public_dir, &self.base_path, request).await,
            Route::NotFound => GatewayError::NotFound.into_response(),
        }
    }
}

/// Everything the metrics listener serves.
pub struct MetricsRoutes {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The revocation index (its age gauge is refreshed when scraped).
    pub revocation: Option<Arc<Revocation>>,
    /// Readiness.
    pub readiness: Arc<Readiness>,
}

impl MetricsRoutes {
    /// Answers one request.
    pub async fn handle(&self, request: Request) -> Response {
        match request.uri().path() {
            "/metrics" => health::metrics(&self.metrics, self.revocation.as_deref()),
            "/healthz" => health::healthz(),
            "/readyz" => self.readiness.readyz(),
            _ => GatewayError::NotFound.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_has_one_route() {
        let r = |p: &str| classify(p, "/k8s", "/");
        assert_eq!(r("/healthz"), Route::Healthz);
        assert_eq!(r("/auth/token"), Route::Token);
        assert_eq!(r("/auth/jwt/set"), Route::JwtSet);
        assert_eq!(r("/auth/gettoken"), Route::GetToken);
        assert_eq!(r("/auth/login"), Route::SignInStart);
        assert_eq!(r("/auth/callback"), Route::SignInCallback);
        assert_eq!(r("/auth/me"), Route::Me);
        assert_eq!(r("/.well-known/jwks.json"), Route::Jwks);
        assert_eq!(
            r("/k8s/api/v1/pods"),
            Route::Api(ApiPath::under("/k8s", "/k8s/api/v1/pods").unwrap())
        );
        assert_eq!(
            r("/k8s"),
            Route::Api(ApiPath::under("/k8s", "/k8s").unwrap())
        );
        assert_eq!(r("/k8sdemo.html"), Route::Static);
        assert_eq!(r("/auth/token/"), Route::Static);
        let r = |p: &str| classify(p, "/k8s", "/app/");
        assert_eq!(r("/app"), Route::Static);
        assert_eq!(r("/app/index.html"), Route::Static);
        assert_eq!(r("/other"), Route::NotFound);
    }
}
