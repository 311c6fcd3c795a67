//! The auth core of virt-gateway: signing keys, JWTs, Kubernetes request parsing and RBAC-exact
//! authorization. Pure: no I/O, no async runtime, no filesystem, no network, no clock (callers pass
//! `now`). Randomness (the operating system's, through aws-lc) is only used to generate keys and
//! ECDSA signatures.
//!
//! ```
//! use virt_gateway_auth::{authz, jwt, keys, request};
//!
//! // Operator side: a key and a token for the VNC console of one VM.
//! let key = keys::KeyPair::generate(keys::KeyAlgorithm::Ed25519)?;
//! let mut claims = jwt::Claims::new(4_102_444_800);
//! claims.namespace = "default".into();
//! claims.api_groups = Some(vec!["subresources.kubevirt.io".into()]);
//! claims.resources = Some(vec!["virtualmachineinstances".into(), "virtualmachineinstances/vnc".into()]);
//! claims.resource_names = Some(vec!["testvm".into()]);
//! let token = jwt::sign(&key, &claims)?;
//!
//! // Gateway side: verify, parse the request, authorize.
//! let verifier = jwt::Verifier::new([key.public_key().clone()]);
//! let verified = verifier.verify(&token, 1_700_000_000)?;
//! let vnc = request::parse(
//!     "GET",
//!     "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc",
//!     None,
//! )?;
//! assert!(authz::authorize(&verified.claims, &vnc).is_ok());
//! let console = request::parse(
//!     "GET",
//!     "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/console",
//!     None,
//! )?;
//! assert!(matches!(authz::authorize(&verified.claims, &console), Err(authz::Denied::Resource { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Modules
//! * [`keys`]: RSA-4096 (default), ECDSA P-256 and Ed25519 keys; lenient PEM reading, canonical
//!   writing, RFC 7638 `kid`s, JWK/JWKS export.
//! * [`jwt`]: [`jwt::Claims`] in the Gen B wire format, [`jwt::sign`], and [`jwt::Verifier`] with
//!   the algorithm pinned by the key, several keys selected by `kid`, size limit, `exp`/`nbf`/`iat`
//!   with a small leeway, typed errors.
//! * [`request`]: [`request::parse`] turns method, path and query into kube-apiserver's RequestInfo,
//!   refusing non-canonical paths.
//! * [`authz`]: [`authz::authorize`] matches the claims as one RBAC PolicyRule plus a namespace.
//!
//! # Differences from the upstream (Gen B) gateway
//!
//! **The one deliberate change of meaning: verbs follow Kubernetes.** Gen B mapped every `GET` to
//! `get`, so a token with `verbs: [get]` could also list collections and watch them. Here the verb is
//! the API server's own: a `GET` of a collection is `list`, a `GET` with `?watch=true` (or the legacy
//! `/watch/` path prefix) is `watch`, a `DELETE` of a collection is `deletecollection`. Collection
//! reads therefore need `list`, watches need `watch`, as in RBAC. A `get` token still reaches the
//! named object's subresource it lists: the Gen B sample token (`verbs: [get]`, `apiGroups:
//! [subresources.kubevirt.io]`, `resources: [virtualmachineinstances, virtualmachineinstances/vnc]`,
//! `resourceNames: [testvm]`, `namespace: default`) opens
//! `GET .../namespaces/default/virtualmachineinstances/testvm/vnc`, because that WebSocket upgrade is
//! a `get` of the `vnc` subresource of `testvm`.
//!
//! The rest are fixes of upstream defects (§4.4, §4.5, §12 of the upstream notes) that follow from
//! matching exactly as RBAC does:
//! * subresources are authorized: the sample token no longer opens `.../testvm/console`;
//! * `nonResourceURLs` only grant non-resource paths, matched as RBAC does (`*`, exact, or a trailing
//!   `*` prefix), and no longer bypass the namespace, group and resource checks of resource paths;
//! * short paths (`/version`, `/apis`) are non-resource requests instead of a crash;
//! * a token limited to one namespace cannot make cluster-scoped or non-resource requests (it is
//!   bound like a RoleBinding);
//! * `resourceNames` has no `*` wildcard (as RBAC);
//! * HS256 tokens "signed" with the public key, `alg: none`, non-string claim items, and paths with
//!   `..` or encoded slashes are all refused with typed errors, never a panic.
//!
//! Unchanged from Gen B: `null` means "not set" and `[]` means "nothing" for every list claim; a
//! missing `namespace` is `*` and missing `verbs` is `[get]`; tokens minted by the Gen B operator
//! (RS256, no `kid`, sorted claims with `null` lists) verify.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod b64;
mod claims;

pub mod authz;
pub mod jwt;
pub mod keys;
pub mod request;
