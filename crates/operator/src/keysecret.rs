//! The signing-key Secret `kube-gateway-jwt-secret` (Gen B name and keys): reading it leniently,
//! and building it once from a generated key. Pure: no I/O.
//!
//! The operator creates this Secret once (a plain create, never an apply or update), never
//! overwrites, regenerates or deletes it, and gives it no owner reference, so deleting a
//! GateServer never deletes the key that its tokens were signed with.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use virt_gateway_api::{JWT_SECRET_NAME, JWT_SECRET_PRIVATE_KEY, JWT_SECRET_PUBLIC_KEY};
use virt_gateway_auth::keys::{KeyError, KeyPair, PublicKey};

use crate::names::{
    COMPONENT_SIGNING_KEY, LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY,
};

/// Annotation on a generated key Secret: the key id of the key pair.
pub const ANNOTATION_SECRET_KID: &str = "ocgate.yaacov.com/kid";

/// What is wrong with the signing-key Secret of a namespace. Every message names the Secret and
/// says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySecretError {
    /// The Secret does not exist.
    #[error(
        "Secret {JWT_SECRET_NAME} not found in namespace {namespace}: tokens are signed with the key in the Secret {JWT_SECRET_NAME} of their own namespace; create the GateToken in the namespace of its GateServer, set generateSecret: true on that GateServer, or create the Secret yourself with the PEM keys {JWT_SECRET_PUBLIC_KEY} (public) and {JWT_SECRET_PRIVATE_KEY} (private)"
    )]
    Missing {
        /// The namespace searched.
        namespace: String,
    },
    /// A key of the Secret is absent or empty.
    #[error(
        "Secret {JWT_SECRET_NAME} in namespace {namespace} has no {key}: add the PEM {what} under the key {key}"
    )]
    MissingKey {
        /// The namespace of the Secret.
        namespace: String,
        /// `cert.pem` or `key.pem`.
        key: &'static str,
        /// "public key" or "private key".
        what: &'static str,
    },
    /// `cert.pem` cannot be read as a public key.
    #[error(
        "Secret {JWT_SECRET_NAME} in namespace {namespace}: {JWT_SECRET_PUBLIC_KEY} is not a usable public key: {reason}; replace it with the PEM public key (or certificate) of {JWT_SECRET_PRIVATE_KEY}"
    )]
    InvalidPublicKey {
        /// The namespace of the Secret.
        namespace: String,
        /// The parse error.
        reason: String,
    },
    /// `key.pem` cannot be read as a private key.
    #[error(
        "Secret {JWT_SECRET_NAME} in namespace {namespace}: {JWT_SECRET_PRIVATE_KEY} is not a usable private key: {reason}; replace it with a PEM RSA (PKCS#1 or PKCS#8), ECDSA P-256 or Ed25519 private key, or delete the Secret so that a GateServer with generateSecret: true creates a new key pair (tokens signed with the old key then stop working)"
    )]
    InvalidPrivateKey {
        /// The namespace of the Secret.
        namespace: String,
        /// The parse error.
        reason: String,
    },
    /// `cert.pem` is not the public half of `key.pem`.
    #[error(
        "Secret {JWT_SECRET_NAME} in namespace {namespace}: {JWT_SECRET_PUBLIC_KEY} (key id {public_kid}) is not the public half of {JWT_SECRET_PRIVATE_KEY} (key id {private_kid}): tokens signed with {JWT_SECRET_PRIVATE_KEY} would not verify; write the matching public key into {JWT_SECRET_PUBLIC_KEY}"
    )]
    Mismatch {
        /// The namespace of the Secret.
        namespace: String,
        /// Key id of `cert.pem`.
        public_kid: String,
        /// Key id of `key.pem`.
        private_kid: String,
    },
}

impl KeySecretError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "KeySecretMissing",
            _ => "KeySecretInvalid",
        }
    }
}

/// What a valid key Secret holds, as far as a GateServer needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key id of the public key (`cert.pem`).
    pub kid: String,
    /// JWS algorithm of the key (`RS256`, `ES256`, `EdDSA`).
    pub alg: &'static str,
}

fn namespace_of(secret: &Secret) -> String {
    secret.metadata.namespace.clone().unwrap_or_default()
}

fn entry<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
        .filter(|b| !b.is_empty())
}

/// Reads `cert.pem` (any PEM label, SPKI, X.509 certificate or PKCS#1, as the auth crate reads).
pub fn public_key(secret: &Secret) -> Result<PublicKey, KeySecretError> {
    let namespace = namespace_of(secret);
    let pem = entry(secret, JWT_SECRET_PUBLIC_KEY).ok_or_else(|| KeySecretError::MissingKey {
        namespace: namespace.clone(),
        key: JWT_SECRET_PUBLIC_KEY,
        what: "public key",
    })?;
    PublicKey::from_pem(pem).map_err(|e| KeySecretError::InvalidPublicKey {
        namespace,
        reason: e.to_string(),
    })
}

/// Reads `key.pem` (PKCS#1, PKCS#8 or SEC1).
pub fn private_key(secret: &Secret) -> Result<KeyPair, KeySecretError> {
    let namespace = namespace_of(secret);
    let pem = entry(secret, JWT_SECRET_PRIVATE_KEY).ok_or_else(|| KeySecretError::MissingKey {
        namespace: namespace.clone(),
        key: JWT_SECRET_PRIVATE_KEY,
        what: "private key",
    })?;
    KeyPair::from_pem(pem).map_err(|e| KeySecretError::InvalidPrivateKey {
        namespace,
        reason: e.to_string(),
    })
}

/// Checks the whole Secret: a readable public key, a readable private key, and that they are
/// one key pair.
pub fn check(secret: &Secret) -> Result<KeyInfo, KeySecretError> {
    let public = public_key(secret)?;
    let private = private_key(secret)?;
    if public.kid() != private.kid() {
        return Err(KeySecretError::Mismatch {
            namespace: namespace_of(secret),
            public_kid: public.kid().to_owned(),
            private_kid: private.kid().to_owned(),
        });
    }
    Ok(KeyInfo {
        kid: public.kid().to_owned(),
        alg: public.algorithm().jws_alg(),
    })
}

/// The Secret the operator creates for a new key: Gen B's name and keys, the public key as SPKI
/// `PUBLIC KEY` and the private key as PKCS#1 (RSA) or PKCS#8; labelled as ours, with **no**
/// owner reference.
pub fn build(namespace: &str, key: &KeyPair) -> Result<Secret, KeyError> {
    let private = key.private_key_pem()?;
    let public = key.public_key().to_pem();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(JWT_SECRET_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
                (LABEL_NAME.to_owned(), "kube-gateway".to_owned()),
                (LABEL_COMPONENT.to_owned(), COMPONENT_SIGNING_KEY.to_owned()),
            ])),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_SECRET_KID.to_owned(),
                key.kid().to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (
                JWT_SECRET_PUBLIC_KEY.to_owned(),
                ByteString(public.into_bytes()),
            ),
            (
                JWT_SECRET_PRIVATE_KEY.to_owned(),
                ByteString(private.into_bytes()),
            ),
        ])),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use virt_gateway_auth::keys::KeyAlgorithm;

    use super::*;

    fn secret(entries: &[(&str, &[u8])]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(JWT_SECRET_NAME.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn built_secret_round_trips_and_has_no_owner() {
        let key = KeyPair::generate(KeyAlgorithm::Ed25519).unwrap();
        let s = build("ns", &key).unwrap();
        assert!(s.metadata.owner_references.is_none());
        let cert = &s.data.as_ref().unwrap()["cert.pem"].0;
        assert!(String::from_utf8_lossy(cert).starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(
            check(&s),
            Ok(KeyInfo {
                kid: key.kid().to_owned(),
                alg: "EdDSA"
            })
        );
    }

    #[test]
    fn upstream_certificate_labelled_spki_is_accepted() {
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let public = key
            .public_key()
            .to_pem()
            .replace("PUBLIC KEY", "CERTIFICATE");
        let private = key.private_key_pem().unwrap();
        let s = secret(&[
            ("cert.pem", public.as_bytes()),
            ("key.pem", private.as_bytes()),
        ]);
        assert_eq!(check(&s).unwrap().kid, key.kid());
    }

    #[test]
    fn errors_name_the_secret_and_the_fix() {
        let e = check(&secret(&[])).unwrap_err();
        assert_eq!(e.reason(), "KeySecretInvalid");
        assert!(e.to_string().contains("has no cert.pem"), "{e}");
        let e = check(&secret(&[("cert.pem", b"garbage"), ("key.pem", b"x")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Secret kube-gateway-jwt-secret in namespace ns: cert.pem is not"),
            "{e}"
        );
        let key = KeyPair::generate(KeyAlgorithm::Ed25519).unwrap();
        let other = KeyPair::generate(KeyAlgorithm::Ed25519).unwrap();
        let s = secret(&[
            ("cert.pem", key.public_key().to_pem().as_bytes()),
            (
                "key.pem",
                b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            ),
        ]);
        let e = check(&s).unwrap_err();
        assert!(
            matches!(e, KeySecretError::InvalidPrivateKey { .. }),
            "{e:?}"
        );
        let s = secret(&[
            ("cert.pem", key.public_key().to_pem().as_bytes()),
            ("key.pem", other.private_key_pem().unwrap().as_bytes()),
        ]);
        assert!(matches!(check(&s), Err(KeySecretError::Mismatch { .. })));
        let missing = KeySecretError::Missing {
            namespace: "ns".into(),
        };
        assert_eq!(missing.reason(), "KeySecretMissing");
        assert!(missing.to_string().contains("generateSecret: true"));
    }
}
