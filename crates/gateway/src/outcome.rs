//! What became of a request, as typed values: the [`Decision`], a bounded [`Reason`] and the
//! [`Outcome`] every response carries (in its extensions) to the one place that writes the audit
//! line and counts the metrics ([`crate::observe`]). A response that carries no outcome is
//! recorded as an `error` ([`Outcome::missing`]): forgetting to decide never reads as "allowed".

use std::borrow::Cow;

use axum::response::Response;
use http::StatusCode;

/// The gateway's decision about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let through (forwarded, or answered as asked).
    Allow,
    /// Refused because of the request (its token, its path, its origin, a limit).
    Deny,
    /// Not decided because something failed (upstream, internal).
    Error,
}

impl Decision {
    /// The audit `decision`: `allow`, `deny` or `error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }

    /// The metrics `outcome` label: `allowed`, `denied` or `error`.
    pub const fn metric_label(self) -> &'static str {
        match self {
            Self::Allow => "allowed",
            Self::Deny => "denied",
            Self::Error => "error",
        }
    }

    /// The one rule for answers the gateway makes itself: a 4xx refuses the request, a 5xx is an
    /// error, anything else lets it through.
    pub fn for_status(status: StatusCode) -> Self {
        if status.is_client_error() {
            Self::Deny
        } else if status.is_server_error() {
            Self::Error
        } else {
            Self::Allow
        }
    }
}

/// Why, as a bounded code: the metrics `reason` label and the audit `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Allowed.
    Ok,
    /// No token anywhere.
    NoToken,
    /// The token expired.
    TokenExpired,
    /// The token is not valid yet.
    TokenNotYetValid,
    /// No key for the token's `kid` or algorithm.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `none`, HMAC or an unsupported algorithm.
    BadAlgorithm,
    /// Any other invalid token.
    InvalidToken,
    /// The token's `aud` or `iss` is not this gateway's.
    WrongAudience,
    /// The token's GateToken is revoked, deleted, completed or unknown.
    TokenRevoked,
    /// The revocation index has not listed yet.
    RevocationNotReady,
    /// The revocation watch has been broken for longer than allowed.
    RevocationStale,
    /// The token does not allow the request.
    Forbidden,
    /// A cookie-authenticated request from a foreign origin.
    ForeignOrigin,
    /// A malformed request.
    BadRequest,
    /// Nothing here.
    NotFound,
    /// Wrong method.
    MethodNotAllowed,
    /// A body over the limit.
    TooLarge,
    /// The body did not arrive in time.
    BodyTimeout,
    /// The API server failed.
    UpstreamError,
    /// The API server (or the operator) did not answer in time.
    Timeout,
    /// The gateway is shutting down.
    ShuttingDown,
    /// A bug or resource problem.
    InternalError,
    /// The API server refused (its own `Status`, passed through).
    ApiRefused,
    /// Too many connections.
    TooManyConnections,
    /// Too many WebSocket sessions (in total or for one token).
    TooManyWebSockets,
    /// A WebSocket session ended because a side closed it.
    Closed,
    /// A WebSocket session ended with an I/O error.
    IoError,
    /// A WebSocket session ended because the gateway shut down.
    Shutdown,
    /// A WebSocket session carried nothing for too long.
    IdleTimeout,
    /// A WebSocket session reached its maximum length.
    SessionLimit,
    /// A shared console's upstream VNC connection could not be opened or ended.
    ConsoleUnavailable,
}

impl Reason {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NoToken => "no_token",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::BadAlgorithm => "bad_algorithm",
            Self::InvalidToken => "invalid_token",
            Self::WrongAudience => "wrong_audience",
            Self::TokenRevoked => "token_revoked",
            Self::RevocationNotReady => "revocation_not_ready",
            Self::RevocationStale => "revocation_stale",
            Self::Forbidden => "forbidden",
            Self::ForeignOrigin => "foreign_origin",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooLarge => "too_large",
            Self::BodyTimeout => "body_timeout",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::ShuttingDown => "shutting_down",
            Self::InternalError => "internal_error",
            Self::ApiRefused => "api_refused",
            Self::TooManyConnections => "too_many_connections",
            Self::TooManyWebSockets => "too_many_websockets",
            Self::Closed => "closed",
            Self::IoError => "io_error",
            Self::Shutdown => "shutdown",
            Self::IdleTimeout => "idle_timeout",
            Self::SessionLimit => "session_limit",
            Self::ConsoleUnavailable => "console_unavailable",
        }
    }

    /// Whether the request was refused before any token was accepted: these audit lines come
    /// from anyone on the network, so they are rate-limited.
    pub const fn is_unauthenticated(self) -> bool {
        matches!(
            self,
            Self::NoToken
                | Self::TokenExpired
                | Self::TokenNotYetValid
                | Self::UnknownKey
                | Self::BadSignature
                | Self::BadAlgorithm
                | Self::InvalidToken
                | Self::WrongAudience
                | Self::TooManyConnections
        )
    }
}

/// Who a request acted as, for its audit line: a verified token's id, a signed-in person's user
/// name, or neither (pass-through, anonymous).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    /// The token id (`jti`).
    pub jti: Option<String>,
    /// The signed-in person's user name.
    pub user: Option<String>,
}

/// What became of one request: carried by its response to the audit log and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Allow, deny or error.
    pub decision: Decision,
    /// Why.
    pub reason: Reason,
    /// A bounded description for the audit log. Never request data (paths, names, tokens).
    pub detail: Option<Cow<'static, str>>,
    /// The token id (`jti`), once a token verified.
    pub jti: Option<String>,
    /// The signed-in person's user name (the provider's username claim), when the request acted
    /// as a person: their requests carry no `jti`, and the audit must still say who acted.
    pub user: Option<String>,
    /// The API server's status code, when the request was forwarded.
    pub upstream_status: Option<u16>,
    /// The request became a WebSocket session (audited as `websocket_open`/`websocket_close`).
    pub websocket: bool,
}

impl Outcome {
    /// Allowed.
    pub fn allowed() -> Self {
        Self {
            decision: Decision::Allow,
            reason: Reason::Ok,
            detail: None,
            jti: None,
            user: None,
            upstream_status: None,
            websocket: false,
        }
    }

    /// A refusal or failure.
    pub fn refused(decision: Decision, reason: Reason, detail: Cow<'static, str>) -> Self {
        Self {
            decision,
            reason,
            detail: Some(detail),
            ..Self::allowed()
        }
    }

    /// What a response without an outcome is recorded as: an error, never an allow.
    pub fn missing() -> Self {
        Self::refused(
            Decision::Error,
            Reason::InternalError,
            Cow::Borrowed("the response carried no decision"),
        )
    }

    /// The same, with the token id.
    #[must_use]
    pub fn with_jti(mut self, jti: Option<&str>) -> Self {
        if let Some(jti) = jti {
            self.jti = Some(jti.to_owned());
        }
        self
    }

    /// The same, naming who acted (whatever `actor` knows; the rest stays).
    #[must_use]
    pub fn by(mut self, actor: &Actor) -> Self {
        if actor.jti.is_some() {
            self.jti.clone_from(&actor.jti);
        }
        if actor.user.is_some() {
            self.user.clone_from(&actor.user);
        }
        self
    }

    /// Attaches this outcome to `response` (replacing any earlier one).
    pub fn attach(self, response: &mut Response) {
        response.extensions_mut().insert(self);
    }

    /// The outcome `response` carries, or [`Outcome::missing`].
    pub fn of(response: &Response) -> Self {
        response
            .extensions()
            .get::<Self>()
            .cloned()
            .unwrap_or_else(Self::missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_statuses() {
        for (code, decision) in [
            (200, Decision::Allow),
            (101, Decision::Allow),
            (302, Decision::Allow),
            (400, Decision::Deny),
            (401, Decision::Deny),
            (403, Decision::Deny),
            (404, Decision::Deny),
            (413, Decision::Deny),
            (422, Decision::Deny),
            (429, Decision::Deny),
            (500, Decision::Error),
            (502, Decision::Error),
            (503, Decision::Error),
        ] {
            assert_eq!(
                Decision::for_status(StatusCode::from_u16(code).unwrap()),
                decision,
                "{code}"
            );
        }
    }

    #[test]
    fn a_response_without_an_outcome_is_an_error() {
        let response = Response::new(axum::body::Body::empty());
        let outcome = Outcome::of(&response);
        assert_eq!(outcome.decision, Decision::Error);
        assert_eq!(outcome.reason, Reason::InternalError);
        let mut response = Response::new(axum::body::Body::empty());
        Outcome::allowed()
            .with_jti(Some("u1"))
            .attach(&mut response);
        assert_eq!(
            Outcome::of(&response),
            Outcome {
                jti: Some("u1".into()),
                ..Outcome::allowed()
            }
        );
    }
}
