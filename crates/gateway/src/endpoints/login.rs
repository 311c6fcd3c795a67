//! Signing in and out: `/auth/token` and `/auth/jwt/set` turn a token into the session cookie
//! (only after it verifies, exactly as an API request would), `/auth/logout` clears it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use virt_gateway_api::names::is_dns_label;

use crate::authn::{Authenticator, Refused};
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::outcome::{Actor, Outcome};
use crate::token::{self, HOST_SESSION_COOKIE, SESSION_COOKIE};
use crate::util::now_unix;

/// Largest form body accepted by `/auth/token`, `/auth/jwt/set` and `/auth/logout`.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Largest `then` accepted.
pub const MAX_THEN_LEN: usize = 4096;

/// Whether `then` is a safe local redirect target: it starts with exactly one `/`, has no `//`
/// or backslash in its path part, no control or whitespace characters, and is not too long.
pub fn valid_then(then: &str) -> bool {
    if then.len() > MAX_THEN_LEN || !then.starts_with('/') {
        return false;
    }
    if then
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return false;
    }
    let path = then.split(['?', '#']).next().unwrap_or("");
    if path.contains("//") {
        return false;
    }
    // Percent-encoded slashes or backslashes right after the first '/' can be decoded by some
    // browsers into a scheme-relative URL.
    let lower = path.to_ascii_lowercase();
    !(lower.starts_with("/%2f") || lower.starts_with("/%5c"))
}

/// One `Set-Cookie` of the session: `name=token` with the attributes every session cookie has,
/// `max_age` `None` for a browser-session cookie, `Some(0)` to clear it.
fn cookie(name: &str, token: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut cookie = format!(
        "{name}={}; Path=/; HttpOnly; SameSite=Lax",
        token::sanitize_token(token)
    );
    if let Some(age) = max_age {
        let expires = if age == 0 {
            UNIX_EPOCH
        } else {
            SystemTime::now()
                .checked_add(Duration::from_secs(age))
                .unwrap_or(SystemTime::now())
        };
        cookie.push_str(&format!(
            "; Max-Age={age}; Expires={}",
            httpdate::fmt_http_date(expires)
        ));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The `Set-Cookie` headers that sign in with `token` (`max_age` as in [`cookie`]). Over HTTPS
/// the session is the `__Host-` cookie ([`HOST_SESSION_COOKIE`]: `Secure`, `Path=/`, no
/// `Domain`, so no sibling subdomain can overwrite it) and an old Gen B cookie of this host is
/// cleared, since two different session cookies are refused; over plain HTTP, where browsers
/// refuse `__Host-`, it is Gen B's `ocgate-session-token`.
pub fn session_cookies(token: &str, max_age: Option<u64>, https: bool) -> Vec<String> {
    if https {
        vec![
            cookie(HOST_SESSION_COOKIE, token, max_age, true),
            cookie(SESSION_COOKIE, "", Some(0), true),
        ]
    } else {
        vec![cookie(SESSION_COOKIE, token, max_age, false)]
    }
}

/// The `Set-Cookie` headers that sign out: both names over HTTPS (a `__Host-` cookie can only
/// be cleared with `Secure`), Gen B's over plain HTTP.
pub fn cleared_cookies(https: bool) -> Vec<String> {
    let mut cookies = vec![cookie(SESSION_COOKIE, "", Some(0), https)];
    if https {
        cookies.insert(0, cookie(HOST_SESSION_COOKIE, "", Some(0), true));
    }
    cookies
}

/// The sign-in endpoints and what they need.
pub struct Login {
    /// Decides tokens exactly as the API proxy does.
    pub authn: Arc<Authenticator>,
    /// Whether the main listener is HTTPS.
    pub https: bool,
    /// The API prefix, e.g. `/k8s/` (for `/auth/jwt/set` links).
    pub api_path: String,
    /// Redirect target of `/auth/jwt/set` (the noVNC page).
    pub client_path: String,
}

/// Form or query parameters of a GET/POST.
struct Params {
    pairs: Vec<(String, String)>,
    headers: HeaderMap,
}

impl Params {
    async fn read(req: Request) -> Result<Self, GatewayError> {
        let (parts, body) = req.into_parts();
        let mut pairs: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        if parts.method == Method::POST {
            let bytes = Limited::new(body, MAX_FORM_BYTES)
                .collect()
                .await
                .map_err(|e| GatewayError::from_body_error(e.as_ref()))?
                .to_bytes();
            let is_form = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.starts_with("application/x-www-form-urlencoded"));
            if is_form {
                // Form fields win over query parameters (as Go's FormValue).
                let mut form: Vec<(String, String)> =
                    form_urlencoded::parse(&bytes).into_owned().collect();
                form.extend(pairs);
                pairs = form;
            }
        } else if parts.method != Method::GET && parts.method != Method::HEAD {
            return Err(GatewayError::MethodNotAllowed(parts.method.to_string()));
        }
        Ok(Self {
            pairs,
            headers: parts.headers,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A verified token for the cookie, its lifetime (`None` in pass-through mode) and its `jti`.
struct SignIn {
    token: String,
    max_age: Option<u64>,
    jti: Option<String>,
}

impl Login {
    /// Whether the browser reached us over HTTPS: our own listener is TLS, or a TLS-terminating
    /// proxy (the OpenShift router, ingress-nginx) says so in `X-Forwarded-Proto: https`. A
    /// client that sends that header itself over plain HTTP only gets a `Secure` cookie its
    /// browser drops, and no other site's page can add the header to a navigation or form post.
    fn secure(&self, headers: &HeaderMap) -> bool {
        self.https
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    }

    /// Refuses to set a session from another site's page (login CSRF, review §15): the victim
    /// would then act in the attacker's session.
    fn same_site_only(&self, headers: &HeaderMap) -> Result<(), Refused> {
        if self.authn.origins().is_cross_site_sign_in(headers) {
            return Err(GatewayError::ForeignOrigin.into());
        }
        Ok(())
    }

    /// Verifies a token for a cookie, exactly as an API request would be.
    async fn sign_in(&self, raw: Option<&str>) -> Result<SignIn, Refused> {
        let token = token::sanitize_token(raw.unwrap_or_default());
        if token.is_empty() {
            return Err(GatewayError::NoToken.into());
        }
        if self.authn.passthrough() {
            return Ok(SignIn {
                token,
                max_age: None,
                jti: None,
            });
        }
        let verified = self.authn.verify(&token).await?;
        Ok(SignIn {
            max_age: Some(verified.claims.exp.saturating_sub(now_unix()).max(1)),
            jti: verified.claims.jti.clone(),
            token,
        })
    }

    fn redirect_with_cookie(
        &self,
        location: &str,
        sign_in: &SignIn,
        headers: &HeaderMap,
    ) -> Result<Response, Refused> {
        let cookies = session_cookies(&sign_in.token, sign_in.max_age, self.secure(headers));
        let mut response = redirect(location, &cookies)?;
        Outcome::allowed()
            .with_jti(sign_in.jti.as_deref())
            .attach(&mut response);
        Ok(response)
    }

    /// `/auth/token`: `token` and `then` (GET query or POST form) → the session cookie and a 302.
    pub async fn token(&self, exchange: Exchange<()>) -> Response {
        self.token_inner(exchange)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    }

    async fn token_inner(&self, exchange: Exchange<()>) -> Result<Response, Refused> {
        let params = Params::read(exchange.request).await?;
        let then = params.get("then").filter(|t| !t.is_empty()).unwrap_or("/");
        if !valid_then(then) {
            return Err(GatewayError::BadRequest(
                "'then' must be a local path starting with a single '/' (no scheme, host, '//' or backslash)".into(),
            ).into());
        }
        self.same_site_only(&params.headers)?;
        let sign_in = self.sign_in(params.get("token")).await?;
        self.redirect_with_cookie(then, &sign_in, &params.headers)
    }

    /// `/auth/jwt/set` (Gen C, 2024): `token`, `name`, `namespace` → the cookie and a 302 to the
    /// noVNC page for that VM.
    pub async fn jwt_set(&self, exchange: Exchange<()>) -> Response {
        self.jwt_set_inner(exchange)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    }

    async fn jwt_set_inner(&self, exchange: Exchange<()>) -> Result<Response, Refused> {
        let params = Params::read(exchange.request).await?;
        let name = params.get("name").unwrap_or_default();
        let namespace = params.get("namespace").unwrap_or_default();
        if !is_dns_label(name) || !is_dns_label(namespace) {
            return Err(GatewayError::BadRequest(
                "'name' and 'namespace' must be DNS labels (lower-case letters, digits and '-', at most 63 characters)".into(),
            ).into());
        }
        self.same_site_only(&params.headers)?;
        let sign_in = self.sign_in(params.get("token")).await?;
        let api = self.api_path.trim_start_matches('/');
        let location = format!(
            "{}?path={api}apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/vnc",
            self.client_path
        );
        self.redirect_with_cookie(&location, &sign_in, &params.headers)
    }

    /// `/auth/logout`: clears the cookie and redirects to `then` (default `/`).
    pub async fn logout(&self, exchange: Exchange<()>) -> Response {
        self.logout_inner(exchange)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    }

    async fn logout_inner(&self, exchange: Exchange<()>) -> Result<Response, Refused> {
        let params = Params::read(exchange.request).await?;
        let then = params.get("then").filter(|t| !t.is_empty()).unwrap_or("/");
        if !valid_then(then) {
            return Err(GatewayError::BadRequest("'then' must be a local path".into()).into());
        }
        let mut response = redirect(then, &cleared_cookies(self.secure(&params.headers)))?;
        // Signing out ends the identity-provider session cookie too (not the provider's own
        // session: the next /auth/login may pass without a password while that lasts).
        let mut signed_out = Actor::default();
        if let Some(signin) = self.authn.signin() {
            signed_out.user = signin.sealed_username(&params.headers);
            for clear in crate::endpoints::signin::clear_cookies() {
                response.headers_mut().append(header::SET_COOKIE, clear);
            }
        }
        Outcome::allowed().by(&signed_out).attach(&mut response);
        Ok(response)
    }
}

fn redirect(location: &str, cookies: &[String]) -> Result<Response, GatewayError> {
    let location = HeaderValue::from_str(location)
        .map_err(|_| GatewayError::BadRequest("invalid redirect target".into()))?;
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    for cookie in cookies {
        let mut value = HeaderValue::from_str(cookie)
            .map_err(|_| GatewayError::BadRequest("invalid token characters".into()))?;
        value.set_sensitive(true);
        headers.append(header::SET_COOKIE, value);
    }
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::body::Body;

    use super::*;
    use crate::audit::{Audit, AuditCtx, AuditSink};
    use crate::authn::tests::{authenticator, token as mint};
    use crate::outcome::{Decision, Reason};

    #[test]
    fn then_must_be_local() {
        for ok in [
            "/",
            "/noVNC/vnc_lite.html?path=k8s/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachineinstances/vm/vnc",
            "/a/b#frag",
            "/x?next=https://example.com",
        ] {
            assert!(valid_then(ok), "{ok}");
        }
        for bad in [
            "",
            "https://evil.example.com/",
            "//evil.example.com/",
            "/\\evil.example.com",
            "\\\\evil",
            "/a//b",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=y",
            "/%2F%2Fevil.example.com",
            "/%5cevil",
            "evil.example.com",
            "/a b",
        ] {
            assert!(!valid_then(bad), "{bad}");
        }
        assert!(!valid_then(&format!("/{}", "a".repeat(MAX_THEN_LEN))));
    }

    #[test]
    fn cookies_over_plain_http_use_gen_b_s_name() {
        let c = session_cookies("\"a.b.c\"", Some(60), false);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            c[0].starts_with(
                "ocgate-session-token=a.b.c; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Expires="
            ),
            "{c:?}"
        );
        assert!(!c[0].contains("Secure"), "{c:?}");
        assert_eq!(
            session_cookies("t", None, false),
            ["ocgate-session-token=t; Path=/; HttpOnly; SameSite=Lax"]
        );
        assert_eq!(
            cleared_cookies(false),
            [
                "ocgate-session-token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
            ]
        );
    }

    /// Issue 14 point 5: over HTTPS the session is a `__Host-` cookie, which browsers only accept
    /// with `Secure`, `Path=/` and no `Domain`; the old Gen B cookie is cleared, else the two
    /// different values would be refused as a tossed cookie.
    #[test]
    fn cookies_over_https_use_the_host_prefix() {
        let c = session_cookies("a.b.c", Some(60), true);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(
            c[0].starts_with(
                "__Host-ocgate-session-token=a.b.c; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Expires="
            ) && c[0].ends_with("; Secure"),
            "{c:?}"
        );
        assert!(!c[0].to_ascii_lowercase().contains("domain"), "{c:?}");
        assert!(
            c[1].starts_with("ocgate-session-token=; Path=/;") && c[1].contains("Max-Age=0"),
            "{c:?}"
        );
        assert_eq!(
            session_cookies("t", None, true)[0],
            "__Host-ocgate-session-token=t; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let cleared = cleared_cookies(true);
        assert_eq!(cleared.len(), 2);
        assert!(cleared[0].starts_with("__Host-ocgate-session-token=; Path=/;"));
        assert!(
            cleared
                .iter()
                .all(|c| c.contains("Max-Age=0") && c.ends_with("; Secure"))
        );
    }

    pub(crate) fn login_exchange(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Exchange<()> {
        let mut request = axum::extract::Request::new(Body::from(body.to_owned()));
        *request.method_mut() = method.parse().unwrap();
        *request.uri_mut() = uri.parse().unwrap();
        for (k, v) in headers {
            request.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let audit = Audit::new(AuditSink(Arc::new(|_| {})));
        Exchange {
            audit: AuditCtx::new(audit, "127.0.0.1:1".parse().unwrap(), method, uri),
            request,
            value: (),
        }
    }

    #[tokio::test]
    async fn a_cookie_only_for_a_token_that_verifies() {
        let (key, authn) = authenticator(None, false);
        let login = Login {
            authn,
            https: false,
            api_path: "/k8s/".into(),
            client_path: "/noVNC/vnc_lite.html".into(),
        };
        let good = mint(&key, Some("u1"));
        let response = login
            .token(login_exchange(
                "POST",
                "/auth/token",
                &[("content-type", "application/x-www-form-urlencoded")],
                &format!("token={good}&then=/console"),
            ))
            .await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], "/console");
        assert!(
            response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .starts_with(&format!("ocgate-session-token={good};"))
        );
        let outcome = Outcome::of(&response);
        assert_eq!(
            (outcome.decision, outcome.jti.as_deref()),
            (Decision::Allow, Some("u1"))
        );

        // Behind a TLS-terminating proxy: the `__Host-` cookie, and Gen B's cleared.
        let response = login
            .token(login_exchange(
                "POST",
                "/auth/token",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("x-forwarded-proto", "https"),
                ],
                &format!("token={good}&then=/console"),
            ))
            .await;
        let set: Vec<&str> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(set.len(), 2, "{set:?}");
        assert!(
            set[0].starts_with(&format!("__Host-ocgate-session-token={good}; Path=/;"))
                && set[0].ends_with("; Secure")
        );
        assert!(set[1].starts_with("ocgate-session-token=; Path=/;"));

        let response = login
            .token(login_exchange("GET", "/auth/token?token=a.b.c", &[], ""))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().get("set-cookie").is_none());
        assert_eq!(Outcome::of(&response).reason, Reason::InvalidToken);

        let response = login
            .token(login_exchange(
                "GET",
                &format!("/auth/token?token={good}&then=//evil.example.com/"),
                &[],
                "",
            ))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
