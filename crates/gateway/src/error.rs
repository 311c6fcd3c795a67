//! The error types: [`GatewayError`], the one error of request handling (rendered as a Kubernetes
//! `Status` that carries its [`Outcome`]), and [`ConfigError`] for startup.

use std::borrow::Cow;
use std::path::PathBuf;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use virt_gateway_auth::authz::Denied;
use virt_gateway_auth::jwt::TokenError;
use virt_gateway_auth::request::RequestError;

use crate::outcome::{Decision, Outcome, Reason};

/// A startup configuration error (the binary prints it and exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag value is invalid or flags contradict each other.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Why the gateway answered a request itself instead of forwarding it.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No token in the Authorization header, the session cookie or a WebSocket subprotocol.
    #[error(
        "no token: send 'Authorization: Bearer <token>', the ocgate-session-token cookie, or the WebSocket subprotocol base64url.bearer.authorization.k8s.io.<token>"
    )]
    NoToken,
    /// The token did not verify.
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenError),
    /// A credential in an unusable form (e.g. a subprotocol token that is not base64url).
    #[error("invalid credentials: {0}")]
    BadCredentials(&'static str),
    /// The sign-in session cookie is not usable (forged, tampered, ended, expired).
    #[error("not signed in: {0}; sign in again at /auth/login")]
    SignInRequired(String),
    /// The token verified, but its GateToken was revoked, deleted or completed, or is unknown.
    #[error("token refused: {0}")]
    Revoked(String),
    /// The revocation index is not ready, so no token can be checked yet.
    #[error("the revocation index is not synchronised yet; retry shortly")]
    RevocationNotReady,
    /// The revocation watch has been broken for too long: no token can be checked (fail closed).
    #[error("the revocation index is out of date (its watch is broken); retry shortly")]
    RevocationStale,
    /// The token does not allow the request.
    #[error("forbidden: {0}")]
    Forbidden(#[from] Denied),
    /// A watch-only token (`consoleRole: observe`) asked for a WebSocket that would carry its
    /// input: anything but a shared console, where observers' input is dropped.
    #[error(
        "this token may only watch a console (consoleRole: observe): it is served only on a VM's VNC console by a gateway running shared consoles (--shared-consoles)"
    )]
    ObserverOnly,
    /// A viewer marked as forwarded to this replica while another replica serves the console
    /// (shared consoles across replicas): served neither here nor elsewhere.
    #[error(
        "this VM's console is served by another gateway replica; retry (without the x-virt-gateway-console-replica header)"
    )]
    ConsoleElsewhere,
    /// A request using the session cookie came from another site (review §3, §15).
    #[error(
        "cross-site request refused: the session cookie is only accepted from the gateway's own pages (or an allowed origin); other clients send 'Authorization: Bearer <token>'"
    )]
    ForeignOrigin,
    /// The path or query could not be parsed unambiguously.
    #[error("bad request: {0}")]
    BadPath(#[from] RequestError),
    /// Any other malformed request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Nothing is served at this path.
    #[error("not found")]
    NotFound,
    /// The method is not allowed on this endpoint.
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// A request body over the endpoint's limit.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// A request body that did not arrive within `--body-read-timeout` (slow loris).
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// Too many WebSocket sessions, in total or of this token.
    #[error("{0}")]
    TooManyWebSockets(String),
    /// The API server could not be reached or failed mid-request.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The API server did not answer in time.
    #[error("the API server did not answer within {0} s")]
    UpstreamTimeout(u64),
    /// The operator did not sign a token in time (/auth/gettoken).
    #[error("{0}")]
    Timeout(String),
    /// A bug or resource problem inside the gateway.
    #[error("internal error: {0}")]
    Internal(String),
    /// A `Status` answered by the API server, passed on (/auth/gettoken).
    #[error("{message}")]
    ApiStatus {
        /// HTTP status code.
        code: u16,
        /// The Status reason (e.g. `Forbidden`).
        reason: String,
        /// The Status message.
        message: String,
    },
}

impl GatewayError {
    /// The HTTP status code.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::NoToken
            | Self::InvalidToken(_)
            | Self::BadCredentials(_)
            | Self::Revoked(_)
            | Self::SignInRequired(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::ForeignOrigin | Self::ObserverOnly => StatusCode::FORBIDDEN,
            Self::BadPath(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyWebSockets(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) | Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::RevocationNotReady | Self::RevocationStale | Self::ConsoleElsewhere => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ApiStatus { code, .. } => {
                StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        }
    }

    /// The Kubernetes `Status.reason`.
    pub fn k8s_reason(&self) -> &'static str {
        match self.status_code() {
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::BAD_REQUEST => "BadRequest",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
            StatusCode::REQUEST_TIMEOUT => "Timeout",
            StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
            StatusCode::GATEWAY_TIMEOUT => "Timeout",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
            StatusCode::BAD_GATEWAY => "BadGateway",
            _ => "InternalError",
        }
    }

    /// The bounded reason code for metrics labels and the audit log.
    pub fn reason(&self) -> Reason {
        match self {
            Self::NoToken => Reason::NoToken,
            Self::InvalidToken(e) => match e {
                TokenError::Expired { .. } => Reason::TokenExpired,
                TokenError::NotYetValid { .. } => Reason::TokenNotYetValid,
                TokenError::UnknownKid { .. } | TokenError::NoKeyForAlgorithm { .. } => {
                    Reason::UnknownKey
                }
                TokenError::BadSignature => Reason::BadSignature,
                TokenError::AlgNone
                | TokenError::HmacNotAccepted { .. }
                | TokenError::UnsupportedAlgorithm { .. } => Reason::BadAlgorithm,
                _ => Reason::InvalidToken,
            },
            Self::BadCredentials(_) | Self::SignInRequired(_) => Reason::InvalidToken,
            Self::Revoked(_) => Reason::TokenRevoked,
            Self::RevocationNotReady => Reason::RevocationNotReady,
            Self::RevocationStale => Reason::RevocationStale,
            Self::Forbidden(_) | Self::ObserverOnly => Reason::Forbidden,
            Self::ForeignOrigin => Reason::ForeignOrigin,
            Self::BadPath(_) | Self::BadRequest(_) => Reason::BadRequest,
            Self::NotFound => Reason::NotFound,
            Self::MethodNotAllowed(_) => Reason::MethodNotAllowed,
            Self::PayloadTooLarge => Reason::TooLarge,
            Self::BodyTimeout(_) => Reason::BodyTimeout,
            Self::TooManyWebSockets(_) => Reason::TooManyWebSockets,
            Self::Upstream(_) | Self::ConsoleElsewhere => Reason::UpstreamError,
            Self::UpstreamTimeout(_) | Self::Timeout(_) => Reason::Timeout,
            Self::Internal(_) => Reason::InternalError,
            Self::ApiStatus { .. } => Reason::ApiRefused,
        }
    }

    /// The error for a request body that could not be read: too large (a
    /// `Limited` body), too slow ([`crate::limits::DeadlineBody`]), or broken.
    pub fn from_body_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(t) = e.downcast_ref::<crate::limits::BodyTimedOut>() {
                return Self::BodyTimeout(t.0.as_secs());
            }
            if e.is::<http_body_util::LengthLimitError>() {
                return Self::PayloadTooLarge;
            }
            next = e.source();
        }
        Self::BadRequest("the request body could not be read".into())
    }

    /// The outcome of a request answered with this error.
    pub fn outcome(&self) -> Outcome {
        Outcome::refused(
            Decision::for_status(self.status_code()),
            self.reason(),
            self.audit_detail(),
        )
    }

    /// The `detail` of the audit line: the client's message where it holds only our own text,
    /// and a fixed description where the message would echo request data (paths, names, a
    /// token's `kid`, upstream errors with URLs), which may hold a token pasted in the wrong
    /// place (review §13) or what the public must not read (§14).
    pub fn audit_detail(&self) -> Cow<'static, str> {
        let fixed = match self {
            Self::InvalidToken(_) | Self::BadCredentials(_) => "the token did not verify",
            Self::Forbidden(_) => "the token does not allow this request",
            Self::BadPath(_) | Self::BadRequest(_) => "malformed request",
            Self::MethodNotAllowed(_) => "method not allowed here",
            Self::Upstream(_) => "the API server could not be reached",
            Self::ApiStatus { .. } => "the API server refused the request",
            Self::Internal(_) => "internal error",
            Self::Timeout(_) => "timed out",
            _ => return Cow::Owned(self.to_string()),
        };
        Cow::Borrowed(fixed)
    }
}

/// A Kubernetes `meta/v1` `Status` of kind Failure.
#[derive(Serialize)]
struct Status<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: serde_json::Map<String, serde_json::Value>,
    status: &'static str,
    message: &'a str,
    reason: &'static str,
    code: u16,
}

/// Renders a `Status` body (serde does the escaping).
pub fn status_body(code: StatusCode, reason: &'static str, message: &str) -> Vec<u8> {
    let status = Status {
        kind: "Status",
        api_version: "v1",
        metadata: serde_json::Map::new(),
        status: "Failure",
        message,
        reason,
        code: code.as_u16(),
    };
    serde_json::to_vec(&status).unwrap_or_else(|_| {
        b"{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\"}".to_vec()
    })
}

/// A `Status` response.
pub fn status_response(code: StatusCode, reason: &'static str, message: &str) -> Response {
    let mut response = (code, status_body(code, reason, message)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl IntoResponse for GatewayError {
    /// The `Status` response, carrying this error's [`Outcome`].
    fn into_response(self) -> Response {
        let outcome = self.outcome();
        let mut response = self.render();
        outcome.attach(&mut response);
        response
    }
}

impl GatewayError {
    fn render(self) -> Response {
        if let Self::ApiStatus {
            code,
            reason,
            message,
        } = &self
        {
            let code = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16(),
            });
            let mut response = (code, body.to_string()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return response;
        }
        let code = self.status_code();
        let mut response = status_response(code, self.k8s_reason(), &self.to_string());
        if code == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if code == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if code == StatusCode::REQUEST_TIMEOUT {
            // The rest of a body that stalled must not be read as the next request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_is_escaped_json() {
        let body = status_body(StatusCode::FORBIDDEN, "Forbidden", "name \"a\\b\"\n<x>");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "Forbidden");
        assert_eq!(v["code"], 403);
        assert_eq!(v["message"], "name \"a\\b\"\n<x>");
        assert_eq!(v["metadata"], serde_json::json!({}));
    }

    #[test]
    fn codes_and_reasons() {
        assert_eq!(
            GatewayError::NoToken.status_code(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(GatewayError::NoToken.k8s_reason(), "Unauthorized");
        assert_eq!(
            GatewayError::Upstream("x".into()).status_code(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            GatewayError::UpstreamTimeout(3).status_code(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            GatewayError::InvalidToken(TokenError::BadSignature).reason(),
            Reason::BadSignature
        );
    }

    #[test]
    fn every_error_response_carries_its_outcome() {
        let response = GatewayError::NoToken.into_response();
        let outcome = Outcome::of(&response);
        assert_eq!(
            (outcome.decision, outcome.reason),
            (Decision::Deny, Reason::NoToken)
        );
        let response = GatewayError::Upstream("refused".into()).into_response();
        let outcome = Outcome::of(&response);
        assert_eq!(
            (outcome.decision, outcome.reason),
            (Decision::Error, Reason::UpstreamError)
        );
        let response = GatewayError::ApiStatus {
            code: 403,
            reason: "Forbidden".into(),
            message: "no".into(),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(Outcome::of(&response).reason, Reason::ApiRefused);
    }

    /// Review §13: a 403 echoed the path's namespace, which may be a token pasted by mistake,
    /// into the audit `detail` although `path` is redacted.
    #[test]
    fn audit_details_never_echo_request_data() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjF9.c2ln";
        let errors = [
            GatewayError::Forbidden(Denied::Namespace {
                namespace: jwt.into(),
                allowed: "a".into(),
            }),
            GatewayError::BadRequest(format!("bad {jwt}")),
            GatewayError::MethodNotAllowed(jwt.into()),
            GatewayError::Upstream(format!("https://10.0.0.1/{jwt}")),
            GatewayError::InvalidToken(TokenError::UnknownKid { kid: jwt.into() }),
        ];
        for e in errors {
            assert!(e.to_string().contains(jwt), "the client still sees {e}");
            let detail = e.outcome().detail.unwrap();
            assert!(!detail.contains(jwt), "{detail}");
        }
    }
}
