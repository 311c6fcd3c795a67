//! Authentication: who a request acts as. The caller's credential is found ([`crate::token`]),
//! then verified as a gateway token (signature, times, cached) and checked against the
//! revocation index, giving a [`Principal`]; in pass-through mode the credential is the caller's
//! own Kubernetes token and is forwarded unchecked. The same [`Authenticator`] decides the API
//! proxy and the `/auth/*` endpoints.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{HeaderMap, Method};
use tower::Service;
use virt_gateway_auth::jwt::{Claims, VerifiedToken};

use crate::error::GatewayError;
use crate::exchange::{ApiPath, Exchange};
use crate::origin::OriginPolicy;
use crate::outcome::{Actor, Outcome};
use crate::revocation::{Refusal, Revocation};
use crate::signin::{Person, SESSION_COOKIE, SignIn, single_cookie};
use crate::token::{self, Credential, TokenSource};
use crate::util::now_unix;
use crate::verify::TokenVerifier;

/// Who a request acts as.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The holder of a verified, unrevoked gateway token.
    Token {
        /// Where the token came from.
        credential: Credential,
        /// The verified token.
        verified: Arc<VerifiedToken>,
    },
    /// Pass-through mode: the caller's own Kubernetes credential, forwarded unchecked.
    PassThrough {
        /// The credential.
        credential: Credential,
    },
    /// A person signed in with the identity provider: their ID token (or OAuth access token)
    /// is forwarded, so the API server authenticates and authorizes the person.
    Person {
        /// The session's bearer, from the sign-in cookie.
        credential: Credential,
        /// The session.
        person: Person,
    },
}

impl Principal {
    /// The credential the request carried.
    pub fn credential(&self) -> &Credential {
        match self {
            Self::Token { credential, .. }
            | Self::PassThrough { credential }
            | Self::Person { credential, .. } => credential,
        }
    }

    /// Where the credential came from.
    pub fn source(&self) -> TokenSource {
        self.credential().source
    }

    /// The verified claims (`None` in pass-through mode).
    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Self::Token { verified, .. } => Some(&verified.claims),
            Self::PassThrough { .. } | Self::Person { .. } => None,
        }
    }

    /// When a signed-in person's session ends (Unix seconds); `None` for other principals.
    pub fn session_ends(&self) -> Option<u64> {
        match self {
            Self::Person { person, .. } => Some(person.session.ends),
            _ => None,
        }
    }

    /// The token id, when the token verified and has one.
    pub fn jti(&self) -> Option<&str> {
        self.claims().and_then(|c| c.jti.as_deref())
    }

    /// Who this is, for the audit: the token id or the signed-in person's user name.
    pub fn actor(&self) -> Actor {
        Actor {
            jti: self.jti().map(str::to_owned),
            user: match self {
                Self::Person { person, .. } => Some(person.session.username.clone()),
                _ => None,
            },
        }
    }
}

/// A refusal, with the token id when the token verified before it was refused (for the audit).
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub error: GatewayError,
    /// The verified token's id.
    pub jti: Option<String>,
}

impl From<GatewayError> for Refused {
    fn from(error: GatewayError) -> Self {
        Self { error, jti: None }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        Outcome::of(&response)
            .with_jti(self.jti.as_deref())
            .attach(&mut response);
        response
    }
}

/// The error for a revocation refusal: 503 while the index is not ready, else 401 with the
/// refusal's message ("token revoked", ...).
pub fn refusal_error(refusal: &Refusal) -> GatewayError {
    match refusal {
        Refusal::NotReady => GatewayError::RevocationNotReady,
        Refusal::Stale => GatewayError::RevocationStale,
        other => GatewayError::Revoked(other.message().to_string()),
    }
}

/// Authenticates requests.
pub struct Authenticator {
    verifier: Arc<TokenVerifier>,
    revocation: Option<Arc<Revocation>>,
    passthrough: bool,
    origins: OriginPolicy,
    signin: Option<Arc<SignIn>>,
}

impl Authenticator {
    /// Verifies tokens with `verifier` and checks them against `revocation` (when the watch is
    /// on); with `passthrough`, forwards credentials unchecked instead.
    pub fn new(
        verifier: Arc<TokenVerifier>,
        revocation: Option<Arc<Revocation>>,
        passthrough: bool,
    ) -> Self {
        Self {
            verifier,
            revocation,
            passthrough,
            origins: OriginPolicy::default(),
            signin: None,
        }
    }

    /// Accepts the sign-in session cookie of people signed in with `signin`.
    #[must_use]
    pub fn with_signin(mut self, signin: Option<Arc<SignIn>>) -> Self {
        self.signin = signin;
        self
    }

    /// The sign-in, when configured.
    pub fn signin(&self) -> Option<&Arc<SignIn>> {
        self.signin.as_ref()
    }

    /// Accepts the session cookie from cross-site pages only for `origins`.
    #[must_use]
    pub fn with_origins(mut self, origins: OriginPolicy) -> Self {
        self.origins = origins;
        self
    }

    /// The origin policy of the session cookie.
    pub fn origins(&self) -> &OriginPolicy {
        &self.origins
    }

    /// Whether credentials are passed through unchecked.
    pub fn passthrough(&self) -> bool {
        self.passthrough
    }

    /// Verifies `token` (cached until `exp`) and checks its revocation: the one decision behind
    /// API requests, `/auth/token`, `/auth/jwt/set` and `/auth/session`. Not for pass-through
    /// mode, where nothing is verified.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, Refused> {
        let verified = self
            .verifier
            .verify(token, now_unix())
            .map_err(GatewayError::from)?;
        if let Some(revocation) = &self.revocation
            && let Err(refusal) = revocation.check(verified.claims.jti.as_deref()).await
        {
            return Err(Refused {
                error: refusal_error(&refusal),
                jti: verified.claims.jti.clone(),
            });
        }
        Ok(verified)
    }

    /// The principal of a request with `method` and `headers`: its credential (required, also
    /// in pass-through mode, whose cookie is a real Kubernetes credential), refused when it is
    /// the cookie of a cross-site WebSocket or unsafe request, then verified unless passed through.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Principal, Refused> {
        let Some(credential) = token::extract(headers)? else {
            return self.signed_in(method, headers).await;
        };
        if credential.source == TokenSource::Cookie {
            self.origins.check_cookie_request(method, headers)?;
        }
        if self.passthrough {
            return Ok(Principal::PassThrough { credential });
        }
        let verified = self.verify(&credential.token).await?;
        Ok(Principal::Token {
            credential,
            verified,
        })
    }
}

impl Authenticator {
    /// The signed-in person of a request without a gateway token: the same cross-site refusal
    /// as the gateway-token cookie applies before anything else (no refresh for a foreign page).
    async fn signed_in(&self, method: &Method, headers: &HeaderMap) -> Result<Principal, Refused> {
        let Some(signin) = &self.signin else {
            return Err(GatewayError::NoToken.into());
        };
        if single_cookie(headers, SESSION_COOKIE)?.is_none() {
            return Err(GatewayError::NoToken.into());
        }
        self.origins.check_cookie_request(method, headers)?;
        let person = signin
            .authenticate(headers)
            .await?
            .ok_or(GatewayError::NoToken)?;
        Ok(Principal::Person {
            credential: Credential {
                token: person.session.bearer.clone(),
                source: TokenSource::SignIn,
            },
            person,
        })
    }
}

/// An API request whose principal is known.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The path under the API prefix.
    pub api_path: ApiPath,
    /// Who it acts as.
    pub principal: Principal,
}

/// The authentication stage of the API pipeline: `Exchange<ApiPath>` in,
/// `Exchange<Authenticated>` to `S`, or a 401/503 refusal.
#[derive(Clone)]
pub struct Authenticate<S> {
    authn: Arc<Authenticator>,
    inner: S,
}

impl<S> Authenticate<S> {
    /// Authenticates for `inner`.
    pub fn new(authn: Arc<Authenticator>, inner: S) -> Self {
        Self { authn, inner }
    }
}

impl<S> Service<Exchange<ApiPath>> for Authenticate<S>
where
    S: Service<Exchange<Authenticated>, Response = Response, Error = Infallible>
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

    fn call(&mut self, exchange: Exchange<ApiPath>) -> Self::Future {
        let authn = self.authn.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let request = &exchange.request;
            match authn
                .authenticate(request.method(), request.headers())
                .await
            {
                Ok(principal) => {
                    let api_path = exchange.value.clone();
                    let renewed = match &principal {
                        Principal::Person { person, .. } => person.renewed.clone(),
                        _ => None,
                    };
                    let mut response = inner
                        .call(exchange.with(Authenticated {
                            api_path,
                            principal,
                        }))
                        .await?;
                    // A refreshed sign-in session travels back with whatever the answer is.
                    if let Some(cookie) = renewed {
                        response
                            .headers_mut()
                            .append(http::header::SET_COOKIE, cookie);
                    }
                    Ok(response)
                }
                Err(refused) => Ok(refused.into_response()),
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use http::{HeaderValue, StatusCode};
    use kube::runtime::watcher::Event;
    use tower::util::BoxCloneService;
    use tower::{ServiceExt, service_fn};
    use virt_gateway_auth::jwt::{self, Claims};
    use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};

    use super::*;
    use crate::audit::{Audit, AuditCtx, AuditSink};
    use crate::metrics::Metrics;
    use crate::outcome::Reason;

    /// A key, and an authenticator for it.
    pub(crate) fn authenticator(
        revocation: Option<Arc<Revocation>>,
        passthrough: bool,
    ) -> (KeyPair, Arc<Authenticator>) {
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let verifier = TokenVerifier::from_keys(
            vec![key.public_key().clone()],
            Duration::ZERO,
            Arc::new(Metrics::new()),
        );
        let authn = Authenticator::new(Arc::new(verifier), revocation, passthrough);
        (key, Arc::new(authn))
    }

    pub(crate) fn token(key: &KeyPair, jti: Option<&str>) -> String {
        let mut claims = Claims::new(now_unix() + 600);
        claims.jti = jti.map(str::to_owned);
        jwt::sign(key, &claims).unwrap()
    }

    pub(crate) fn api_exchange(path: &str, headers: &[(&str, &str)]) -> Exchange<ApiPath> {
        let mut request = axum::extract::Request::new(Body::empty());
        *request.uri_mut() = format!("/k8s{path}").parse().unwrap();
        for (k, v) in headers {
            request.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let audit = Audit::new(AuditSink(Arc::new(|_| {})));
        Exchange {
            audit: AuditCtx::new(audit, "127.0.0.1:1".parse().unwrap(), "GET", path),
            request,
            value: ApiPath::under("/k8s", &format!("/k8s{path}")).unwrap(),
        }
    }

    /// The inner stage: answers 200 with the principal's jti (or "passthrough") as the body.
    fn echo() -> BoxCloneService<Exchange<Authenticated>, Response, Infallible> {
        BoxCloneService::new(service_fn(|ex: Exchange<Authenticated>| async move {
            let who = match &ex.value.principal {
                Principal::Token { .. } => ex.value.principal.jti().unwrap_or("-").to_owned(),
                Principal::PassThrough { credential } => {
                    format!("passthrough:{}", credential.token)
                }
                Principal::Person { .. } => "person".to_owned(),
            };
            Ok::<_, Infallible>(Response::new(Body::from(who)))
        }))
    }

    async fn body(response: Response) -> String {
        use http_body_util::BodyExt;
        String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_verified_token_reaches_the_next_stage_and_anything_else_is_refused() {
        let (key, authn) = authenticator(None, false);
        let good = token(&key, Some("u1"));
        let stage = Authenticate::new(authn.clone(), echo());
        let response = stage
            .clone()
            .oneshot(api_exchange(
                "/api",
                &[("authorization", &format!("Bearer {good}"))],
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, "u1");

        let response = stage
            .clone()
            .oneshot(api_exchange("/api", &[]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Outcome::of(&response).reason, Reason::NoToken);

        let other = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let forged = token(&other, Some("u1"));
        let response = stage
            .oneshot(api_exchange(
                "/api",
                &[("cookie", &format!("ocgate-session-token={forged}"))],
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Outcome::of(&response).reason, Reason::UnknownKey);
    }

    #[tokio::test]
    async fn a_revoked_token_is_refused_with_its_jti_in_the_audit() {
        let revocation = Arc::new(Revocation::new(
            vec!["a".into()],
            Duration::from_millis(10),
            Arc::new(Metrics::new()),
        ));
        let (key, authn) = authenticator(Some(revocation.clone()), false);
        let stage = Authenticate::new(authn, echo());
        let bearer = format!("Bearer {}", token(&key, Some("u1")));
        // Not listed yet: 503.
        let response = stage
            .clone()
            .oneshot(api_exchange("/api", &[("authorization", &bearer)]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        revocation.apply("a", Event::Init);
        revocation.apply("a", Event::InitDone);
        let response = stage
            .oneshot(api_exchange("/api", &[("authorization", &bearer)]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let outcome = Outcome::of(&response);
        assert_eq!(outcome.reason, Reason::TokenRevoked);
        assert_eq!(outcome.jti.as_deref(), Some("u1"));
    }

    #[tokio::test]
    async fn pass_through_still_needs_a_credential_and_checks_nothing_else() {
        let (_, authn) = authenticator(None, true);
        let stage = Authenticate::new(authn, echo());
        let response = stage
            .clone()
            .oneshot(api_exchange(
                "/api",
                &[("authorization", "Bearer anything")],
            ))
            .await
            .unwrap();
        assert_eq!(body(response).await, "passthrough:anything");
        let response = stage.oneshot(api_exchange("/api", &[])).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    /// Review §3: a sibling subdomain's page opening the console WebSocket with the victim's
    /// cookie. Refused (403, audited as foreign_origin), also in pass-through mode; the same
    /// request with a bearer header, and a same-origin one with the cookie, are served.
    #[tokio::test]
    async fn a_cookie_websocket_from_another_site_is_refused() {
        for passthrough in [false, true] {
            let (key, authn) = authenticator(None, passthrough);
            let stage = Authenticate::new(authn, echo());
            let good = token(&key, Some("u1"));
            let cookie = format!("ocgate-session-token={good}");
            let bearer = format!("Bearer {good}");
            let ws = |auth: (&'static str, &str), origin: &str| {
                let auth = (auth.0, auth.1.to_owned());
                let origin = origin.to_owned();
                move || {
                    api_exchange(
                        "/apis/subresources.kubevirt.io/v1/namespaces/a/virtualmachineinstances/v/vnc",
                        &[
                            ("host", "gw.apps.example.com"),
                            ("upgrade", "websocket"),
                            ("connection", "Upgrade"),
                            ("origin", &origin),
                            (auth.0, &auth.1),
                        ],
                    )
                }
            };
            for origin in ["https://evil.apps.example.com", "null"] {
                let response = stage
                    .clone()
                    .oneshot(ws(("cookie", &cookie), origin)())
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin}");
                assert_eq!(Outcome::of(&response).reason, Reason::ForeignOrigin);
                let response = stage
                    .clone()
                    .oneshot(ws(("authorization", &bearer), origin)())
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "bearer from {origin}");
            }
            let response = stage
                .clone()
                .oneshot(ws(("cookie", &cookie), "https://gw.apps.example.com")())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
}
