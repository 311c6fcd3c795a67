//! Signing and verifying compact JWS tokens (JWTs) carrying [`Claims`].
//!
//! The rules, all enforced before any claim is looked at:
//! * a token longer than [`MAX_TOKEN_LEN`] bytes is refused before any decoding;
//! * the algorithm is fixed by the key type (`RS256` for RSA, `ES256` for P-256, `EdDSA` for Ed25519)
//!   and is never chosen by the token: `none`, every `HS*` (the Gen B proxy accepted HS256 tokens
//!   "signed" with the public key file as the HMAC secret, so anyone could forge them), and any
//!   algorithm that does not match the selected key are rejected;
//! * with a `kid` header the key with that id is the only candidate; without one, every key of the
//!   token's algorithm is tried (key rotation with tokens minted by the Gen B operator, which sets no
//!   `kid`);
//! * a `crit` header is refused (no extension is understood), a `typ` other than `JWT` is refused,
//!   and embedded keys (`jwk`, `jku`, `x5c`, `x5u`) are ignored: keys only come from the verifier;
//! * then the payload is decoded as [`Claims`] (strict types), `exp` is required, and `exp`, `nbf`
//!   and `iat` are checked against the caller's clock with a small leeway ([`DEFAULT_LEEWAY`]);
//!   no value of `exp`, `nbf` or `iat` (up to `u64::MAX`) overflows;
//! * last, with an [`AudiencePolicy`], `aud` must name the verifier's audience and `iss` its
//!   issuer; a token without `aud` is accepted unless the policy requires one.
//!
//! The clock is a parameter (`now`, Unix seconds) so that this crate stays free of I/O and tests are
//! exact.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::b64;
pub use crate::claims::{ALL_NAMESPACES, Claims, ClaimsError, DEFAULT_VERB};
use crate::keys::{KeyAlgorithm, KeyError, KeyPair, PublicKey, truncate};

/// Largest token accepted, in bytes: checked before any decoding. Gateway tokens are well under
/// 2 KiB (an RS256-4096 signature is 683 characters); 16 KiB leaves room for long claim lists.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Default clock-skew allowance: 30 seconds. The operator that mints tokens and the gateway that
/// checks them usually run in the same cluster with synchronised clocks; 30 s covers a lagging node
/// without noticeably extending a token's life.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Largest leeway [`Verifier::with_leeway`] accepts (5 minutes); larger values are clamped to it, so
/// a configuration mistake cannot make expiry meaningless.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Why a token was not accepted. Each variant is a distinct failure, for logs and metrics; all of
/// them mean "401/403" to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`]; nothing was decoded.
    #[error("token is {len} bytes long; the limit is {max} bytes")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a well-formed compact JWS.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// `alg: none` (in any letter case): unsigned tokens are never accepted.
    #[error("unsigned tokens (alg \"none\") are not accepted")]
    AlgNone,
    /// An HMAC algorithm (`HS256`, `HS384`, `HS512`): never accepted, because verification keys are
    /// public.
    #[error(
        "HMAC-signed tokens (alg {alg:?}) are not accepted; tokens must be signed with an asymmetric key"
    )]
    HmacNotAccepted {
        /// The token's `alg`.
        alg: String,
    },
    /// An algorithm this crate does not use (e.g. `PS256`, `RS512`, `ES384`).
    #[error("token algorithm {alg:?} is not accepted; accepted: RS256, ES256, EdDSA")]
    UnsupportedAlgorithm {
        /// The token's `alg` (truncated).
        alg: String,
    },
    /// The `kid` header names no configured key.
    #[error("no verification key with kid {kid:?}")]
    UnknownKid {
        /// The token's `kid` (truncated).
        kid: String,
    },
    /// The key selected by `kid` is of another type than the token's `alg`.
    #[error("token algorithm {token_alg} does not match key {kid:?}, which is used with {key_alg}")]
    AlgorithmMismatch {
        /// The token's `alg`.
        token_alg: &'static str,
        /// The algorithm of the key named by `kid`.
        key_alg: &'static str,
        /// The key's id.
        kid: String,
    },
    /// No `kid`, and no configured key is of the token's algorithm.
    #[error("no verification key for algorithm {alg}")]
    NoKeyForAlgorithm {
        /// The token's `alg`.
        alg: &'static str,
    },
    /// The signature does not verify with the candidate key(s): forged or tampered.
    #[error("token signature is invalid")]
    BadSignature,
    /// A `crit` header: extensions that must be understood, and none are.
    #[error("token has a crit header; no critical extension is supported")]
    CriticalHeader,
    /// A `typ` header other than `JWT`.
    #[error("token type {typ:?} is not accepted; expected \"JWT\"")]
    UnexpectedType {
        /// The token's `typ` (truncated).
        typ: String,
    },
    /// The (authentic) payload is not acceptable claims, e.g. a claim of the wrong JSON type or no
    /// `exp`.
    #[error("invalid claims: {0}")]
    InvalidClaims(#[from] ClaimsError),
    /// `now` is past `exp` plus the leeway.
    #[error("token expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired {
        /// The `exp` claim.
        exp: u64,
        /// The verifier's clock.
        now: u64,
        /// The leeway in seconds.
        leeway: u64,
    },
    /// `now` plus the leeway is before `nbf`.
    #[error("token is not valid before {nbf} (now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: u64,
        /// The verifier's clock.
        now: u64,
        /// The leeway in seconds.
        leeway: u64,
    },
    /// `iat` is in the future beyond the leeway.
    #[error("token claims to be issued at {iat}, in the future (now {now}, leeway {leeway}s)")]
    IssuedInFuture {
        /// The `iat` claim.
        iat: u64,
        /// The verifier's clock.
        now: u64,
        /// The leeway in seconds.
        leeway: u64,
    },
    /// The token's `aud` does not name this verifier's audience (it is for another gateway), or
    /// names one while this verifier has none.
    #[error("the token is for another gateway: its audience does not name this one")]
    WrongAudience,
    /// The token has no `aud`, and the verifier requires one.
    #[error("the token names no audience, and this gateway requires one")]
    MissingAudience,
    /// The token's `iss` is not this verifier's issuer.
    #[error("the token was issued by another issuer than this gateway trusts")]
    WrongIssuer,
}

/// Which tokens a verifier accepts by their `aud` and `iss` claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudiencePolicy {
    /// This verifier's audience: a token with `aud` must name it. `None`: any token with `aud` is
    /// refused (it is bound to some gateway, and this one does not know its own name).
    pub audience: Option<String>,
    /// This verifier's issuer: a token with `iss` must name it. `None`: `iss` is not checked.
    pub issuer: Option<String>,
    /// Refuse tokens without `aud` (those of the upstream operator, or minted before audiences).
    pub required: bool,
}

impl AudiencePolicy {
    /// Checks `claims` against the policy.
    pub fn check(&self, claims: &Claims) -> Result<(), TokenError> {
        match (&claims.aud, &self.audience) {
            (Some(aud), Some(mine)) if aud.iter().any(|a| a == mine) => {}
            (Some(_), _) => return Err(TokenError::WrongAudience),
            (None, _) if self.required => return Err(TokenError::MissingAudience),
            (None, _) => {}
        }
        match (&claims.iss, &self.issuer) {
            (Some(iss), Some(mine)) if iss != mine => Err(TokenError::WrongIssuer),
            _ => Ok(()),
        }
    }
}

/// The instant a token with `exp` stops verifying with `leeway`: a token is valid while
/// `now <= exp + leeway` in whole seconds, so it stops at the start of the next second. `None`
/// when that lies beyond what the clock can represent (such a token never expires in practice).
pub fn expires_at(exp: u64, leeway: Duration) -> Option<SystemTime> {
    let last_valid = exp.checked_add(leeway.as_secs())?.checked_add(1)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(last_valid))
}

/// Why a token could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The payload would exceed [`MAX_TOKEN_LEN`] once signed, so no verifier would accept it.
    #[error("signed token would be {len} bytes, over the {max}-byte limit verifiers enforce")]
    TooLarge {
        /// The length the token would have.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The crypto backend failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The protected header every token is signed with: the key's algorithm, its `kid`, `typ` `JWT`
/// (keys in sorted order, like Go's map encoding).
fn header_json(key: &KeyPair) -> String {
    serde_json::json!({ "alg": key.algorithm().jws_alg(), "kid": key.kid(), "typ": "JWT" })
        .to_string()
}

/// Signs `claims` with `key`: a compact JWS whose header carries the key's algorithm, `kid` and
/// `typ: JWT`, and whose payload is the exact Gen B wire form of the claims.
pub fn sign(key: &KeyPair, claims: &Claims) -> Result<String, SignError> {
    let payload = serde_json::to_vec(claims).map_err(|_| {
        SignError::Key(KeyError::Crypto {
            context: "serialising claims",
        })
    })?;
    sign_payload(key, &payload)
}

/// Signs an arbitrary JSON value as the payload, with the same header as [`sign`]. For tests and
/// tooling that need tokens with unusual claims; [`Verifier::verify`] still enforces the claim types.
pub fn sign_json(key: &KeyPair, payload: &Value) -> Result<String, SignError> {
    sign_payload(key, payload.to_string().as_bytes())
}

/// Signs arbitrary payload bytes, with the same header as [`sign`]. For tests and fuzzing that must
/// reach the claim checks with arbitrary input; production code uses [`sign`].
pub fn sign_payload(key: &KeyPair, payload: &[u8]) -> Result<String, SignError> {
    let mut token = b64::encode(header_json(key));
    token.push('.');
    token.push_str(&b64::encode(payload));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64::encode(signature));
    if token.len() > MAX_TOKEN_LEN {
        return Err(SignError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    Ok(token)
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The decoded claims.
    pub claims: Claims,
    /// The id of the key that verified the signature.
    pub kid: String,
    /// The algorithm (the key's type).
    pub algorithm: KeyAlgorithm,
    /// Whether the token named its key with a `kid` header (Gen B tokens do not).
    pub kid_in_header: bool,
}

/// Verifies tokens against a fixed set of public keys.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<PublicKey>,
    leeway_secs: u64,
    audience: Option<AudiencePolicy>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "kids",
                &self.keys.iter().map(PublicKey::kid).collect::<Vec<_>>(),
            )
            .field("leeway_secs", &self.leeway_secs)
            .field("audience", &self.audience)
            .finish()
    }
}

/// The parts of the protected header this crate looks at.
struct Header {
    alg: KeyAlgorithm,
    kid: Option<String>,
}

impl Verifier {
    /// A verifier for tokens signed by any of `keys` (duplicates are dropped), with
    /// [`DEFAULT_LEEWAY`].
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut unique: Vec<PublicKey> = Vec::new();
        for key in keys {
            if !unique.iter().any(|k| k.kid() == key.kid()) {
                unique.push(key);
            }
        }
        Self {
            keys: unique,
            leeway_secs: DEFAULT_LEEWAY.as_secs(),
            audience: None,
        }
    }

    /// Checks `aud` and `iss` with `policy` (without one, neither claim is looked at).
    #[must_use]
    pub fn with_audience(mut self, policy: AudiencePolicy) -> Self {
        self.audience = Some(policy);
        self
    }

    /// Sets the clock-skew leeway applied to `exp`, `nbf` and `iat` (whole seconds; clamped to
    /// [`MAX_LEEWAY`]). Use `Duration::ZERO` for Gen B's exact behaviour.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.min(MAX_LEEWAY).as_secs();
        self
    }

    /// The leeway in use.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_secs)
    }

    /// The verification keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Verifies `token` at time `now` (Unix seconds) and returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed {
                reason: "expected three dot-separated segments",
            });
        };
        let header = parse_header(header_b64)?;
        let signature = b64::decode(signature_b64).map_err(|_| TokenError::Malformed {
            reason: "signature is not base64url",
        })?;
        // The signing input is the token up to the second dot, exactly as received.
        let signing_input = token
            .get(..header_b64.len() + 1 + payload_b64.len())
            .unwrap_or_default();

        let key = self.select_and_verify(&header, signing_input.as_bytes(), &signature)?;

        // Only authentic payloads are parsed.
        let payload = b64::decode(payload_b64).map_err(|_| TokenError::Malformed {
            reason: "payload is not base64url",
        })?;
        let claims = Claims::from_json_slice(&payload)?;
        self.check_times(&claims, now)?;
        if let Some(policy) = &self.audience {
            policy.check(&claims)?;
        }
        Ok(VerifiedToken {
            claims,
            kid: key.kid().to_owned(),
            algorithm: key.algorithm(),
            kid_in_header: header.kid.is_some(),
        })
    }

    fn select_and_verify(
        &self,
        header: &Header,
        message: &[u8],
        signature: &[u8],
    ) -> Result<&PublicKey, TokenError> {
        if let Some(kid) = &header.kid {
            let key = self
                .keys
                .iter()
                .find(|k| k.kid() == kid)
                .ok_or_else(|| TokenError::UnknownKid { kid: truncate(kid) })?;
            if key.algorithm() != header.alg {
                return Err(TokenError::AlgorithmMismatch {
                    token_alg: header.alg.jws_alg(),
                    key_alg: key.algorithm().jws_alg(),
                    kid: key.kid().to_owned(),
                });
            }
            return if key.verify_signature(message, signature) {
                Ok(key)
            } else {
                Err(TokenError::BadSignature)
            };
        }
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.algorithm() == header.alg)
            .peekable();
        if candidates.peek().is_none() {
            return Err(TokenError::NoKeyForAlgorithm {
                alg: header.alg.jws_alg(),
            });
        }
        candidates
            .find(|k| k.verify_signature(message, signature))
            .ok_or(TokenError::BadSignature)
    }

    fn check_times(&self, claims: &Claims, now: u64) -> Result<(), TokenError> {
        let leeway = self.leeway_secs;
        if now > claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now,
                leeway,
            });
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(TokenError::NotYetValid { nbf, now, leeway });
        }
        if let Some(iat) = claims.iat
            && iat > now.saturating_add(leeway)
        {
            return Err(TokenError::IssuedInFuture { iat, now, leeway });
        }
        Ok(())
    }
}

fn parse_header(header_b64: &str) -> Result<Header, TokenError> {
    let bytes = b64::decode(header_b64).map_err(|_| TokenError::Malformed {
        reason: "header is not base64url",
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed {
        reason: "header is not JSON",
    })?;
    let obj = value.as_object().ok_or(TokenError::Malformed {
        reason: "header is not a JSON object",
    })?;
    let alg = obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed {
            reason: "header has no string alg",
        })?;
    let alg = classify_alg(alg)?;
    if obj.contains_key("crit") {
        return Err(TokenError::CriticalHeader);
    }
    match obj.get("typ") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(Value::String(t)) => return Err(TokenError::UnexpectedType { typ: truncate(t) }),
        Some(_) => {
            return Err(TokenError::Malformed {
                reason: "header typ is not a string",
            });
        }
    }
    let kid = match obj.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => {
            return Err(TokenError::Malformed {
                reason: "header kid is not a string",
            });
        }
    };
    Ok(Header { alg, kid })
}

fn classify_alg(alg: &str) -> Result<KeyAlgorithm, TokenError> {
    if let Some(known) = KeyAlgorithm::from_jws_alg(alg) {
        return Ok(known);
    }
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    if alg.len() >= 2 && alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
        return Err(TokenError::HmacNotAccepted { alg: truncate(alg) });
    }
    Err(TokenError::UnsupportedAlgorithm { alg: truncate(alg) })
}
