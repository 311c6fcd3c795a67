//! Signing in with the identity provider: `GET /auth/login` starts a sign-in (authorization
//! code flow, PKCE S256, a random `state` bound to this browser by the sealed flow cookie, a
//! random `nonce`), `GET /auth/callback` finishes it (state, then the code exchange with the
//! verifier, then the ID token: signature, issuer, audience, expiry, nonce) and sets the sealed
//! session cookie; `GET /auth/me` tells the page who is signed in. Refusals are HTML pages with a
//! link to sign in again, never a token.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::endpoints::login::valid_then;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::outcome::{Actor, Decision, Outcome, Reason};
use crate::signin::{
    FLOW_COOKIE, FLOW_MAX_AGE, Flow, SESSION_COOKIE, Session, SignIn, cookie, single_cookie,
};
use crate::util::now_unix;

/// A refused sign-in step, shown as a page.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

fn query_pairs(request: &Parts) -> Vec<(String, String)> {
    request
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn escape_html(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A small page saying why the sign-in stopped, with a link to start again. The flow cookie is
/// always cleared: a sign-in is tried once.
fn refusal_page(refusal: &Refusal) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed</title></head>\
         <body><h1>Sign-in failed</h1><p>{}</p><p><a href=\"/auth/login\">Sign in again</a></p></body></html>",
        escape_html(&refusal.message)
    );
    let mut response = (refusal.status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(clear) = cookie(FLOW_COOKIE, "", 0) {
        headers.append(header::SET_COOKIE, clear);
    }
    let decision = Decision::for_status(refusal.status);
    let reason = if decision == Decision::Error {
        Reason::UpstreamError
    } else {
        Reason::InvalidToken
    };
    Outcome::refused(decision, reason, "sign-in refused".into()).attach(&mut response);
    response
}

fn get_only(request: &Parts) -> Result<(), Refusal> {
    if request.method == Method::GET || request.method == Method::HEAD {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not allowed here", request.method),
        ))
    }
}

/// `GET /auth/login[?then=/local/path]`.
pub async fn login(signin: &Arc<SignIn>, exchange: Exchange<()>) -> Response {
    let (parts, _) = exchange.request.into_parts();
    match start(signin, &parts).await {
        Ok(response) => response,
        Err(refusal) => refusal_page(&refusal),
    }
}

async fn start(signin: &SignIn, request: &Parts) -> Result<Response, Refusal> {
    get_only(request)?;
    let pairs = query_pairs(request);
    let then = param(&pairs, "then")
        .filter(|t| !t.is_empty())
        .unwrap_or("/");
    if !valid_then(then) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "'then' must be a local path starting with a single '/'",
        ));
    }
    let internal = |_| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "no randomness available");
    let flow = Flow {
        state: signin.sealer.random(32).map_err(internal)?,
        nonce: signin.sealer.random(32).map_err(internal)?,
        // 32 random bytes: a 43-character verifier (RFC 7636 §4.1).
        verifier: signin.sealer.random(32).map_err(internal)?,
        then: then.to_string(),
        started: now_unix(),
    };
    let location = signin
        .provider
        .authorize_url(&flow.state, &flow.nonce, &flow.verifier)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "sign-in cannot start");
            Refusal::new(StatusCode::BAD_GATEWAY, e.to_string())
        })?;
    let sealed = signin
        .sealer
        .seal(FLOW_COOKIE, &flow)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let flow_cookie = cookie(FLOW_COOKIE, &sealed, FLOW_MAX_AGE)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location)
            .map_err(|_| Refusal::new(StatusCode::BAD_GATEWAY, "invalid authorization URL"))?,
    );
    headers.append(header::SET_COOKIE, flow_cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Outcome::allowed().attach(&mut response);
    Ok(response)
}

/// `GET /auth/callback?code=…&state=…` (or `?error=…&state=…`).
pub async fn callback(signin: &Arc<SignIn>, exchange: Exchange<()>) -> Response {
    let (parts, _) = exchange.request.into_parts();
    match finish(signin, &parts).await {
        Ok(response) => response,
        Err(refusal) => {
            tracing::info!(reason = %refusal.message, "sign-in refused");
            refusal_page(&refusal)
        }
    }
}

async fn finish(signin: &SignIn, request: &Parts) -> Result<Response, Refusal> {
    get_only(request)?;
    let bad = |m: &str| Refusal::new(StatusCode::BAD_REQUEST, m);
    let refused = |m: String| Refusal::new(StatusCode::UNAUTHORIZED, m);
    let sealed = single_cookie(&request.headers, FLOW_COOKIE)
        .map_err(|e| bad(&e.to_string()))?
        .ok_or_else(|| {
            bad("this sign-in was not started in this browser, or it was already finished")
        })?;
    let flow: Flow = signin
        .sealer
        .open(FLOW_COOKIE, &sealed)
        .map_err(|_| bad("the sign-in cookie is not valid"))?;
    if now_unix().saturating_sub(flow.started) > FLOW_MAX_AGE {
        return Err(bad("the sign-in took too long"));
    }
    let pairs = query_pairs(request);
    // The state first: an answer for another browser's sign-in is refused before anything else.
    let state = param(&pairs, "state").unwrap_or_default();
    if aws_lc_rs::constant_time::verify_slices_are_equal(state.as_bytes(), flow.state.as_bytes())
        .is_err()
    {
        return Err(bad("the answer does not belong to this sign-in (state)"));
    }
    if let Some(error) = param(&pairs, "error") {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(refused(format!("the identity provider refused: {code}")));
    }
    let code = param(&pairs, "code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("the answer has no code"))?;
    let tokens = signin
        .provider
        .exchange(code, &flow.verifier)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let ends = now_unix().saturating_add(signin.provider.config().session_max_age.as_secs());
    let session = signin
        .session_from(tokens, Some(&flow.nonce), ends)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let session_cookie = signin
        .session_cookie(&session)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&flow.then).map_err(|_| bad("invalid target"))?,
    );
    headers.append(header::SET_COOKIE, session_cookie);
    // A gateway-token cookie (an earlier share link) would win over the new session: signing in
    // ends it, as upstream's /auth/login cleared it.
    for clear in crate::endpoints::login::cleared_cookies(true) {
        if let Ok(value) = HeaderValue::from_str(&clear) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if let Ok(clear) = cookie(FLOW_COOKIE, "", 0) {
        headers.append(header::SET_COOKIE, clear);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::info!(user = %session.username, mode = %session.mode, "signed in");
    let person = Actor {
        jti: None,
        user: Some(session.username.clone()),
    };
    Outcome::allowed().by(&person).attach(&mut response);
    Ok(response)
}

/// `GET /auth/me`: who is signed in, never a token. `{"signedIn": false, "signInAvailable": …}`
/// without a usable session; otherwise the mode, username, groups and when the session ends.
/// A refreshed session cookie is set on the way.
pub async fn me(signin: Option<&Arc<SignIn>>, exchange: Exchange<()>) -> Response {
    let (request, _) = exchange.request.into_parts();
    if request.method != Method::GET && request.method != Method::HEAD {
        return GatewayError::MethodNotAllowed(request.method.to_string()).into_response();
    }
    let (body, renewed) = match signin {
        None => (json!({"signedIn": false, "signInAvailable": false}), None),
        Some(signin) => match signin.authenticate(&request.headers).await {
            Ok(Some(person)) => (person_body(&person.session), person.renewed),
            Ok(None) | Err(_) => (
                json!({"signedIn": false, "signInAvailable": true, "login": "/auth/login"}),
                None,
            ),
        },
    };
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Cookie"));
    if let Some(cookie) = renewed {
        headers.append(header::SET_COOKIE, cookie);
    }
    Outcome::allowed().attach(&mut response);
    response
}

/// What the page may know of a signed-in person: no token.
pub fn person_body(s: &Session) -> serde_json::Value {
    json!({
        "signedIn": true,
        "signInAvailable": true,
        "mode": s.mode,
        "username": s.username,
        "groups": s.groups,
        "sessionEnds": s.ends,
    })
}

/// The `Set-Cookie` values that end a sign-in session (for `/auth/logout`).
pub fn clear_cookies() -> Vec<HeaderValue> {
    [SESSION_COOKIE, FLOW_COOKIE]
        .iter()
        .filter_map(|name| cookie(name, "", 0).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_pages_escape_and_clear_the_flow() {
        let response = refusal_page(&Refusal::new(StatusCode::BAD_REQUEST, "<script>x</script>"));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(
            response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .starts_with("__Host-vg-signin-flow=; Path=/; Max-Age=0")
        );
        assert_eq!(Outcome::of(&response).decision, Decision::Deny);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
    }
}
