//! Signed-in people: the two sealed cookies of the sign-in (see [`crate::seal`]) and how a
//! request's session cookie becomes the person's Kubernetes credential.
//!
//! * `__Host-vg-signin-flow` holds one sign-in in progress (`state`, `nonce`, PKCE verifier,
//!   where to go afterwards) between `/auth/login` and `/auth/callback`: the `state` is bound to
//!   the browser that started the sign-in, because only that browser has the cookie.
//! * `__Host-vg-signin` holds the session: the ID token (or, for OpenShift OAuth, the access
//!   token) presented to the API server for the person, the refresh token, and who the person is
//!   (for `/auth/session`). `HttpOnly`, so no page script reads it; sealed, so nobody can read or
//!   change it without the key, and any replica holding the key accepts it after a restart.
//!
//! Both are separate from the gateway-token cookie (`ocgate-session-token`).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use crate::oidc::{Provider, ProviderError, TokenResponse};
use crate::seal::Sealer;
use crate::token;
use crate::util::now_unix;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-vg-signin";
/// The sign-in-in-progress cookie's name.
pub const FLOW_COOKIE: &str = "__Host-vg-signin-flow";
/// How long a started sign-in may take (the flow cookie's lifetime).
pub const FLOW_MAX_AGE: u64 = 600;
/// A session's bearer is refreshed when it expires within this many seconds.
pub const REFRESH_MARGIN: u64 = 60;
/// Largest sealed cookie written (browsers keep about 4 KiB per cookie).
pub const MAX_COOKIE_BYTES: usize = 3900;

/// One sign-in in progress (sealed in [`FLOW_COOKIE`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flow {
    /// The `state` sent to the provider.
    pub state: String,
    /// The `nonce` sent to the provider (OIDC).
    pub nonce: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// Local path to go to after signing in.
    pub then: String,
    /// When the sign-in started (Unix seconds).
    pub started: u64,
}

/// A signed-in session (sealed in [`SESSION_COOKIE`]).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// `oidc` or `oauth`.
    pub mode: String,
    /// What the API server gets as `Authorization: Bearer` for this person.
    pub bearer: String,
    /// When `bearer` expires (Unix seconds).
    pub bearer_exp: u64,
    /// The refresh token, if the provider issued one.
    pub refresh: Option<String>,
    /// When the session ends whatever refreshes happen (Unix seconds).
    pub ends: u64,
    /// The ID token's `sub` (a refreshed token must be the same person's).
    pub subject: String,
    /// The person's name (the username claim).
    pub username: String,
    /// The person's groups (the groups claim).
    pub groups: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("mode", &self.mode)
            .field("username", &self.username)
            .field("ends", &self.ends)
            .finish_non_exhaustive()
    }
}

/// A person authenticated by the session cookie.
#[derive(Clone, Debug)]
pub struct Person {
    /// The session (after any refresh).
    pub session: Arc<Session>,
    /// A `Set-Cookie` carrying the refreshed session, to send with the response.
    pub renewed: Option<HeaderValue>,
}

/// Sign-in: the provider, the sealing key and the cookie attributes.
pub struct SignIn {
    /// The provider.
    pub provider: Provider,
    /// Seals the cookies.
    pub sealer: Sealer,
    /// Clock leeway for ID token expiry.
    pub leeway: Duration,
}

/// A `Set-Cookie` value for one of the sign-in cookies: `__Host-` (so `Secure`, `Path=/`, no
/// `Domain`: a sibling subdomain cannot set or shadow it), `HttpOnly`, `SameSite=Lax` (sent on
/// the provider's top-level redirect back to `/auth/callback`). `max_age` 0 clears it.
pub fn cookie(name: &str, value: &str, max_age: u64) -> Result<HeaderValue, GatewayError> {
    if value.len() > MAX_COOKIE_BYTES {
        return Err(GatewayError::Internal(
            "the sign-in session is too large for a cookie (too many groups?)".into(),
        ));
    }
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    ))
    .map_err(|_| GatewayError::Internal("cannot write the sign-in cookie".into()))
}

/// The single value of cookie `name`; two different values (one tossed in by another site)
/// are refused.
pub fn single_cookie(headers: &HeaderMap, name: &str) -> Result<Option<String>, GatewayError> {
    let values: Vec<String> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| token::sanitize_token(v))
        .filter(|v| !v.is_empty())
        .collect();
    match values.as_slice() {
        [] => Ok(None),
        [first, rest @ ..] if rest.iter().all(|v| v == first) => Ok(Some(first.clone())),
        _ => Err(GatewayError::BadCredentials(
            "several different sign-in cookies; sign in again",
        )),
    }
}

fn signed_out(why: &str) -> GatewayError {
    GatewayError::SignInRequired(why.to_string())
}

impl SignIn {
    /// The session cookie for `session`.
    pub fn session_cookie(&self, session: &Session) -> Result<HeaderValue, GatewayError> {
        let sealed = self
            .sealer
            .seal(SESSION_COOKIE, session)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        cookie(
            SESSION_COOKIE,
            &sealed,
            session.ends.saturating_sub(now_unix()).max(1),
        )
    }

    /// Whose session cookie a request carries, for the audit of signing out: the user name of a
    /// cookie this gateway sealed, ended or not; `None` without one or for one that does not
    /// open. Grants nothing (no refresh, no expiry check).
    pub fn sealed_username(&self, headers: &HeaderMap) -> Option<String> {
        let sealed = single_cookie(headers, SESSION_COOKIE).ok()??;
        let session: Session = self.sealer.open(SESSION_COOKIE, &sealed).ok()?;
        Some(session.username)
    }

    /// The person of a request's session cookie, refreshing the bearer when it is about to
    /// expire. `Ok(None)`: no session cookie. Refused: a cookie that does not open (forged,
    /// tampered, another key), a session past its end, a bearer that expired and cannot be
    /// refreshed.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Person>, GatewayError> {
        let Some(sealed) = single_cookie(headers, SESSION_COOKIE)? else {
            return Ok(None);
        };
        let session: Session = self
            .sealer
            .open(SESSION_COOKIE, &sealed)
            .map_err(|_| signed_out("the sign-in session cookie is not valid"))?;
        let now = now_unix();
        if now >= session.ends {
            return Err(signed_out("the sign-in session has ended"));
        }
        if session.bearer_exp > now + REFRESH_MARGIN {
            return Ok(Some(Person {
                session: Arc::new(session),
                renewed: None,
            }));
        }
        match self.refreshed(&session).await {
            Ok(fresh) => {
                let renewed = Some(self.session_cookie(&fresh)?);
                Ok(Some(Person {
                    session: Arc::new(fresh),
                    renewed,
                }))
            }
            // Still valid for a moment: use it; the next request tries again.
            Err(e) if session.bearer_exp > now => {
                tracing::info!(error = %e, "could not refresh a sign-in session yet");
                Ok(Some(Person {
                    session: Arc::new(session),
                    renewed: None,
                }))
            }
            Err(e) => {
                tracing::info!(error = %e, "sign-in session expired and was not refreshed");
                Err(signed_out("the sign-in session has expired"))
            }
        }
    }

    async fn refreshed(&self, session: &Session) -> Result<Session, ProviderError> {
        let Some(refresh) = &session.refresh else {
            return Err(ProviderError::Refused("no refresh token".into()));
        };
        let tokens = self.provider.refresh(refresh).await?;
        let mut fresh = self.session_from(tokens, None, session.ends).await?;
        if fresh.subject != session.subject {
            return Err(ProviderError::IdToken(
                "the refreshed token is another person's".into(),
            ));
        }
        // Providers that do not rotate refresh tokens omit them from the answer.
        if fresh.refresh.is_none() {
            fresh.refresh = session.refresh.clone();
        }
        Ok(fresh)
    }

    /// The session for a token response: OIDC verifies the ID token (with `nonce` at sign-in);
    /// OAuth takes the access token as it is (the API server checks it).
    pub async fn session_from(
        &self,
        tokens: TokenResponse,
        nonce: Option<&str>,
        ends: u64,
    ) -> Result<Session, ProviderError> {
        let now = now_unix();
        if self.provider.is_oidc() {
            let id_token = tokens.id_token.ok_or_else(|| {
                ProviderError::IdToken("the provider returned no ID token".into())
            })?;
            let who = self
                .provider
                .verify_id_token(&id_token, nonce, self.leeway)
                .await?;
            Ok(Session {
                mode: "oidc".into(),
                bearer: id_token,
                bearer_exp: who.expires,
                refresh: tokens.refresh_token,
                ends,
                subject: who.subject,
                username: who.username,
                groups: who.groups,
            })
        } else {
            // The token is opaque to us: the API server says whom it names (and whether it
            // accepts it at all, so a useless sign-in is refused here, with a page).
            let (username, groups) = self.provider.who_is(&tokens.access_token).await?;
            Ok(Session {
                mode: "oauth".into(),
                bearer_exp: tokens
                    .expires_in
                    .map_or(ends, |s| now.saturating_add_signed(s).min(ends)),
                bearer: tokens.access_token,
                refresh: tokens.refresh_token,
                ends,
                subject: username.clone(),
                username,
                groups,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(http::header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn a_tossed_second_sign_in_cookie_is_refused() {
        let h = headers(&["__Host-vg-signin=a; __Host-vg-signin=b"]);
        assert!(single_cookie(&h, SESSION_COOKIE).is_err());
        let h = headers(&["__Host-vg-signin=a", "__Host-vg-signin=a"]);
        assert_eq!(
            single_cookie(&h, SESSION_COOKIE).unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(single_cookie(&headers(&[]), SESSION_COOKIE).unwrap(), None);
        // The flow cookie is another cookie, not a prefix match.
        let h = headers(&["__Host-vg-signin-flow=x"]);
        assert_eq!(single_cookie(&h, SESSION_COOKIE).unwrap(), None);
    }

    #[test]
    fn cookies_are_host_only_secure_http_only_lax() {
        let c = cookie(SESSION_COOKIE, "v", 60).unwrap();
        assert_eq!(
            c,
            "__Host-vg-signin=v; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Lax"
        );
        assert!(cookie(SESSION_COOKIE, &"x".repeat(MAX_COOKIE_BYTES + 1), 1).is_err());
    }
}
