//! `GET /auth/session`: what the console page may know about its session (the expiry, not-before,
//! namespace and `jti` of the caller's token), decided exactly as an API request would be.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use serde_json::{Value, json};
use virt_gateway_auth::jwt::Claims;

use crate::authn::{Authenticator, Principal, Refused};
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::outcome::Outcome;

/// The body of `/auth/session`: nothing else of the token (no signature, no policy rule). `nbf`
/// and `jti` are `null` when the token has none.
pub fn session_body(claims: &Claims) -> Value {
    json!({
        "exp": claims.exp,
        "nbf": claims.nbf,
        "namespace": claims.namespace,
        "jti": claims.jti,
    })
}

/// `GET /auth/session` for the caller's token (found as for API requests), only after it
/// verifies and passes the revocation check exactly as an API request would; otherwise the same
/// 401 (or 503 while the revocation index is not ready). `Cache-Control: no-store`. In
/// pass-through mode tokens are not verified, so there is no session to describe: 404.
pub async fn session(authn: &Arc<Authenticator>, exchange: Exchange<()>) -> Response {
    describe(authn, exchange)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn describe(authn: &Authenticator, exchange: Exchange<()>) -> Result<Response, Refused> {
    let request = &exchange.request;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Err(GatewayError::MethodNotAllowed(request.method().to_string()).into());
    }
    let principal = authn
        .authenticate(request.method(), request.headers())
        .await?;
    let verified = match principal {
        Principal::Token { verified, .. } => verified,
        Principal::Person { person, .. } => {
            let mut response =
                axum::Json(crate::endpoints::signin::person_body(&person.session)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::VARY, HeaderValue::from_static("Cookie"));
            if let Some(cookie) = person.renewed {
                headers.append(header::SET_COOKIE, cookie);
            }
            Outcome::allowed().attach(&mut response);
            return Ok(response);
        }
        Principal::PassThrough { .. } => return Err(GatewayError::NotFound.into()),
    };
    let mut response = axum::Json(session_body(&verified.claims)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, Cookie"),
    );
    Outcome::allowed()
        .with_jti(verified.claims.jti.as_deref())
        .attach(&mut response);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::authn::tests::{authenticator, token};
    use crate::endpoints::login::tests::login_exchange;

    #[test]
    fn session_body_has_the_times_namespace_and_jti_and_nothing_else() {
        let mut claims = Claims::new(4_102_444_800);
        claims.nbf = Some(1_700_000_000);
        claims.namespace = "default".into();
        claims.jti = Some("0b7e7c1a-0000-4000-8000-000000000001".into());
        claims.resource_names = Some(vec!["testvm".into()]);
        assert_eq!(
            session_body(&claims),
            json!({"exp": 4_102_444_800u64, "nbf": 1_700_000_000u64, "namespace": "default",
                   "jti": "0b7e7c1a-0000-4000-8000-000000000001"})
        );
        // Gen B tokens have no jti; a token may lack nbf: both are null, never missing.
        let claims = Claims::new(4_102_444_800);
        assert_eq!(
            session_body(&claims),
            json!({"exp": 4_102_444_800u64, "nbf": null, "namespace": "*", "jti": null})
        );
    }

    #[tokio::test]
    async fn a_session_only_for_a_verified_token_and_none_in_pass_through() {
        let (key, authn) = authenticator(None, false);
        let cookie = format!("ocgate-session-token={}", token(&key, Some("u1")));
        let response = session(
            &authn,
            login_exchange("GET", "/auth/session", &[("cookie", &cookie)], ""),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let response = session(
            &authn,
            login_exchange("POST", "/auth/session", &[("cookie", &cookie)], ""),
        )
        .await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let response = session(&authn, login_exchange("GET", "/auth/session", &[], "")).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let (_, passthrough) = authenticator(None, true);
        let response = session(
            &passthrough,
            login_exchange("GET", "/auth/session", &[("cookie", &cookie)], ""),
        )
        .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
