//! `/.well-known/jwks.json`: the verification keys as a JWK set.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::outcome::Outcome;
use crate::verify::TokenVerifier;

/// The JWK set of `verifier`'s keys.
pub fn jwks(verifier: &TokenVerifier) -> Response {
    let body = virt_gateway_auth::keys::jwks(&verifier.keys());
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Outcome::allowed().attach(&mut response);
    response
}
