//! Signing keys: generation, lenient PEM reading, canonical PEM writing, RFC 7638 key ids and JWKs.
//!
//! Three key types are supported, each with exactly one JWS algorithm:
//!
//! | [`KeyAlgorithm`] | Key                         | JWS `alg` | Generated as |
//! |------------------|-----------------------------|-----------|--------------|
//! | `Rsa` (default)  | RSA, 2048–8192 bits         | `RS256`   | RSA-4096     |
//! | `EcdsaP256`      | ECDSA on NIST P-256         | `ES256`   | P-256        |
//! | `Ed25519`        | Ed25519                     | `EdDSA`   | Ed25519      |
//!
//! **Reading** is lenient, because keys come from many places:
//! * public keys ([`PublicKey::from_pem`], [`public_keys_from_pem`]): a block with *any* label holding a
//!   `SubjectPublicKeyInfo` (the Gen B operator writes one labelled `CERTIFICATE`), an X.509 certificate
//!   (only its key is used: validity dates and issuer are not checked, the certificate is a container),
//!   or a PKCS#1 `RSA PUBLIC KEY`;
//! * private keys ([`KeyPair::from_pem`]): PKCS#1 `RSA PRIVATE KEY`, PKCS#8 `PRIVATE KEY` (RSA, P-256,
//!   Ed25519), SEC1 `EC PRIVATE KEY`; other blocks in the same PEM text (an `EC PARAMETERS` block, a
//!   certificate) are skipped.
//!
//! **Writing** is canonical: public keys as SPKI `PUBLIC KEY`; RSA private keys as PKCS#1
//! `RSA PRIVATE KEY` (what the Gen B operator writes and its Go proxy reads), the others as PKCS#8
//! `PRIVATE KEY`. PEM output uses `\n` line endings.
//!
//! Every key has a `kid`: its RFC 7638 JWK thumbprint (SHA-256, base64url without padding), so the same
//! key always gets the same id, whoever computes it.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use der::asn1::{Any, BitString, ObjectIdentifier, UintRef};
use der::{Decode, Encode};
use serde_json::{Map, Value, json};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};

use crate::b64;

/// `rsaEncryption` (RFC 8017).
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480).
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `prime256v1` / `secp256r1` (RFC 5480).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `id-Ed25519` (RFC 8410).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Smallest RSA modulus accepted, in bits (also aws-lc's verification floor for RS256).
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (aws-lc's verification ceiling; bigger keys only cost CPU).
pub const RSA_MAX_BITS: usize = 8192;
/// Size of generated RSA keys, in bits (what the Gen B operator generates).
pub const RSA_GENERATED_BITS: usize = 4096;

/// The key type, which also fixes the one JWS algorithm the key is used with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA (PKCS#1 v1.5 signatures with SHA-256): JWS `RS256`. The default, for compatibility with the
    /// Gen B operator and proxy.
    #[default]
    Rsa,
    /// ECDSA on NIST P-256 with SHA-256: JWS `ES256`.
    EcdsaP256,
    /// Ed25519: JWS `EdDSA`.
    Ed25519,
}

impl KeyAlgorithm {
    /// All supported algorithms, in a stable order.
    pub const ALL: [KeyAlgorithm; 3] = [Self::Rsa, Self::EcdsaP256, Self::Ed25519];

    /// The JWS `alg` header value used with this key type.
    pub fn jws_alg(self) -> &'static str {
        match self {
            Self::Rsa => "RS256",
            Self::EcdsaP256 => "ES256",
            Self::Ed25519 => "EdDSA",
        }
    }

    /// The key type for a JWS `alg` value, if it is one this crate accepts (exact, case-sensitive).
    pub fn from_jws_alg(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Self::Rsa),
            "ES256" => Some(Self::EcdsaP256),
            "EdDSA" => Some(Self::Ed25519),
            _ => None,
        }
    }

    /// A short human name (`RSA`, `ECDSA P-256`, `Ed25519`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::EcdsaP256 => "ECDSA P-256",
            Self::Ed25519 => "Ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = KeyError;

    /// Accepts the JWS names (`RS256`, `ES256`, `EdDSA`) and the key names (`rsa`, `ecdsa-p256`,
    /// `p256`, `ed25519`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rs256" | "rsa" => Ok(Self::Rsa),
            "es256" | "ecdsa-p256" | "ecdsa" | "p256" | "p-256" => Ok(Self::EcdsaP256),
            "eddsa" | "ed25519" => Ok(Self::Ed25519),
            _ => Err(KeyError::UnknownAlgorithmName { name: truncate(s) }),
        }
    }
}

/// Errors from reading, writing or generating keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input holds no PEM block at all.
    #[error("no PEM block found")]
    NoPemBlock,
    /// The PEM text itself is malformed (bad base64, unterminated block, ...).
    #[error("malformed PEM: {reason}")]
    Pem {
        /// What the PEM parser reported.
        reason: String,
    },
    /// A PEM block expected to hold a public key holds none of the accepted formats.
    #[error(
        "PEM block #{index} (label {label:?}) holds no public key: it is neither a SubjectPublicKeyInfo, \
         an X.509 certificate nor a PKCS#1 RSA public key"
    )]
    NotAPublicKey {
        /// Position of the block in the PEM text, from 0.
        index: usize,
        /// The block's label.
        label: String,
    },
    /// A private key was given where a public key is expected.
    #[error(
        "PEM block #{index} (label {label:?}) holds a private key where a public key was expected"
    )]
    PrivateKeyGiven {
        /// Position of the block in the PEM text, from 0.
        index: usize,
        /// The block's label.
        label: String,
    },
    /// No private key block in PEM text that should hold one.
    #[error("no private key found in the PEM text (block labels seen: {labels:?})")]
    NoPrivateKey {
        /// Labels of the blocks that were found.
        labels: Vec<String>,
    },
    /// Password-protected private keys are not supported.
    #[error(
        "encrypted private keys are not supported; decrypt it first (e.g. `openssl pkey -in key.pem`)"
    )]
    EncryptedPrivateKey,
    /// A private key block could not be decoded.
    #[error("invalid {format} private key: {reason}")]
    InvalidPrivateKey {
        /// The container format that was tried (`PKCS#1`, `PKCS#8`, `SEC1`).
        format: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A public key structure could not be decoded or was rejected by the crypto backend.
    #[error("invalid public key: {reason}")]
    InvalidPublicKey {
        /// Why it was rejected.
        reason: String,
    },
    /// The key's algorithm (OID) is not one of RSA, EC or Ed25519.
    #[error("unsupported key algorithm (OID {oid}); supported: RSA, ECDSA P-256, Ed25519")]
    UnsupportedAlgorithm {
        /// The algorithm OID found in the key.
        oid: String,
    },
    /// An elliptic-curve key on a curve other than P-256.
    #[error("unsupported elliptic curve (OID {curve}); only P-256 is supported")]
    UnsupportedCurve {
        /// The curve OID found in the key, or a description when absent.
        curve: String,
    },
    /// An EC public point in compressed (or another non-uncompressed) form.
    #[error(
        "unsupported EC point encoding: only uncompressed P-256 points (65 bytes, 0x04 prefix) are accepted"
    )]
    UnsupportedPointEncoding,
    /// An RSA key outside the accepted size range.
    #[error("RSA key of {bits} bits is outside the accepted range {min}..={max}", min = RSA_MIN_BITS, max = RSA_MAX_BITS)]
    UnsupportedRsaSize {
        /// Modulus size in bits.
        bits: usize,
    },
    /// A JWK that is not a valid public key of a supported type.
    #[error("invalid JWK: {reason}")]
    InvalidJwk {
        /// Why it was rejected.
        reason: String,
    },
    /// A name given for a key algorithm that is not known.
    #[error("unknown key algorithm {name:?}; use RS256/rsa, ES256/ecdsa-p256 or EdDSA/ed25519")]
    UnknownAlgorithmName {
        /// The name given (truncated).
        name: String,
    },
    /// The crypto backend failed (key generation, serialisation or signing).
    #[error("crypto backend failure while {context}")]
    Crypto {
        /// What was being done.
        context: &'static str,
    },
}

/// Truncate attacker- or user-controlled strings before they go into error messages and logs.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

/// The public half of a key in decoded form, from which SPKI, JWK and thumbprint are all derived.
#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Affine coordinates, 32 bytes each.
    P256 { x: [u8; 32], y: [u8; 32] },
    /// The 32-byte public key.
    Ed25519 { x: [u8; 32] },
}

impl Material {
    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::Rsa { .. } => KeyAlgorithm::Rsa,
            Self::P256 { .. } => KeyAlgorithm::EcdsaP256,
            Self::Ed25519 { .. } => KeyAlgorithm::Ed25519,
        }
    }

    /// The canonical DER `SubjectPublicKeyInfo`.
    fn to_spki_der(&self) -> Result<Vec<u8>, KeyError> {
        let enc = |e: der::Error| KeyError::InvalidPublicKey {
            reason: e.to_string(),
        };
        let (oid, parameters, key) = match self {
            Self::Rsa { n, e } => {
                let pkcs1 = pkcs1::RsaPublicKey {
                    modulus: UintRef::new(n).map_err(enc)?,
                    public_exponent: UintRef::new(e).map_err(enc)?,
                }
                .to_der()
                .map_err(enc)?;
                (OID_RSA, Some(Any::null()), pkcs1)
            }
            Self::P256 { x, y } => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                (
                    OID_EC,
                    Some(Any::encode_from(&OID_P256).map_err(enc)?),
                    point,
                )
            }
            Self::Ed25519 { x } => (OID_ED25519, None, x.to_vec()),
        };
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned { oid, parameters },
            subject_public_key: BitString::from_bytes(&key).map_err(enc)?,
        }
        .to_der()
        .map_err(enc)
    }

    /// The RFC 7638 thumbprint input: required members only, lexicographic order, no whitespace.
    fn thumbprint_input(&self) -> String {
        match self {
            Self::Rsa { n, e } => {
                format!(
                    r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                    b64::encode(e),
                    b64::encode(n)
                )
            }
            Self::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64::encode(x),
                b64::encode(y)
            ),
            Self::Ed25519 { x } => {
                format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    b64::encode(x)
                )
            }
        }
    }

    fn rsa_bits(n: &[u8]) -> usize {
        match n.iter().position(|b| *b != 0) {
            None => 0,
            Some(first) => {
                let rest = n.len() - first - 1;
                let top = n.get(first).copied().unwrap_or(0);
                rest * 8 + (8 - top.leading_zeros() as usize)
            }
        }
    }

    /// Checks the size and shape constraints that do not need the crypto backend.
    fn check(&self) -> Result<(), KeyError> {
        if let Self::Rsa { n, .. } = self {
            let bits = Self::rsa_bits(n);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(KeyError::UnsupportedRsaSize { bits });
            }
        }
        Ok(())
    }

    fn from_spki(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<Self, KeyError> {
        let invalid = |reason: &str| KeyError::InvalidPublicKey {
            reason: reason.to_owned(),
        };
        let oid = spki.algorithm.oid;
        // A public key BIT STRING always has whole bytes; anything else is malformed.
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| invalid("subjectPublicKey has unused bits"))?;
        if oid == OID_RSA {
            let pk =
                pkcs1::RsaPublicKey::from_der(bits).map_err(|e| KeyError::InvalidPublicKey {
                    reason: format!("RSA public key: {e}"),
                })?;
            Ok(Self::Rsa {
                n: pk.modulus.as_bytes().to_vec(),
                e: pk.public_exponent.as_bytes().to_vec(),
            })
        } else if oid == OID_EC {
            let curve =
                spki.algorithm
                    .parameters_oid()
                    .map_err(|_| KeyError::UnsupportedCurve {
                        curve: "missing or not a named curve".to_owned(),
                    })?;
            if curve != OID_P256 {
                return Err(KeyError::UnsupportedCurve {
                    curve: curve.to_string(),
                });
            }
            Self::from_p256_point(bits)
        } else if oid == OID_ED25519 {
            let x: [u8; 32] = bits
                .try_into()
                .map_err(|_| invalid("Ed25519 public key must be 32 bytes"))?;
            Ok(Self::Ed25519 { x })
        } else {
            Err(KeyError::UnsupportedAlgorithm {
                oid: oid.to_string(),
            })
        }
    }

    fn from_p256_point(point: &[u8]) -> Result<Self, KeyError> {
        match point.split_first() {
            Some((0x04, xy)) if xy.len() == 64 => {
                let (x, y) = xy.split_at(32);
                let x: [u8; 32] = x
                    .try_into()
                    .map_err(|_| KeyError::UnsupportedPointEncoding)?;
                let y: [u8; 32] = y
                    .try_into()
                    .map_err(|_| KeyError::UnsupportedPointEncoding)?;
                Ok(Self::P256 { x, y })
            }
            _ => Err(KeyError::UnsupportedPointEncoding),
        }
    }
}

/// A public verification key, with its `kid`, parsed once for fast verification.
///
/// Two `PublicKey`s are equal when they are the same key (same canonical SPKI).
#[derive(Clone)]
pub struct PublicKey {
    material: Material,
    spki_der: Vec<u8>,
    kid: String,
    parsed: ParsedPublicKey,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der == other.spki_der
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    fn from_material(material: Material) -> Result<Self, KeyError> {
        material.check()?;
        let spki_der = material.to_spki_der()?;
        let alg: &'static dyn signature::VerificationAlgorithm = match material {
            Material::Rsa { .. } => &RSA_PKCS1_2048_8192_SHA256,
            Material::P256 { .. } => &ECDSA_P256_SHA256_FIXED,
            Material::Ed25519 { .. } => &ED25519,
        };
        // aws-lc validates the key here (RSA key checks, point on the curve), once, not per token.
        let parsed =
            ParsedPublicKey::new(alg, &spki_der).map_err(|e| KeyError::InvalidPublicKey {
                reason: format!("rejected by aws-lc: {e}"),
            })?;
        let kid = b64::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            material.thumbprint_input().as_bytes(),
        ));
        Ok(Self {
            material,
            spki_der,
            kid,
            parsed,
        })
    }

    /// Reads a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki =
            SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KeyError::InvalidPublicKey {
                reason: format!("SubjectPublicKeyInfo: {e}"),
            })?;
        Self::from_material(Material::from_spki(&spki)?)
    }

    /// Reads a DER X.509 certificate and returns its subject public key. Only the key is used: the
    /// certificate's dates, issuer and signature are not checked (it is a key container here, as for
    /// the Go proxy).
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, KeyError> {
        let cert =
            x509_cert::Certificate::from_der(der).map_err(|e| KeyError::InvalidPublicKey {
                reason: format!("X.509 certificate: {e}"),
            })?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| KeyError::InvalidPublicKey {
                reason: format!("X.509 certificate key: {e}"),
            })?;
        Self::from_spki_der(&spki)
    }

    /// Reads a DER PKCS#1 `RSAPublicKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let pk = pkcs1::RsaPublicKey::from_der(der).map_err(|e| KeyError::InvalidPublicKey {
            reason: format!("PKCS#1 RSA public key: {e}"),
        })?;
        Self::from_material(Material::Rsa {
            n: pk.modulus.as_bytes().to_vec(),
            e: pk.public_exponent.as_bytes().to_vec(),
        })
    }

    /// Reads one public key from DER in any accepted format: SPKI, X.509 certificate, PKCS#1.
    fn from_any_public_der(der: &[u8]) -> Option<Result<Self, KeyError>> {
        // Decide the format by which structure decodes, then report that format's key errors (an
        // unsupported curve, a small RSA key) instead of a generic "not a public key".
        if let Ok(spki) = SubjectPublicKeyInfoRef::from_der(der) {
            return Some(Material::from_spki(&spki).and_then(Self::from_material));
        }
        if x509_cert::Certificate::from_der(der).is_ok() {
            return Some(Self::from_certificate_der(der));
        }
        if pkcs1::RsaPublicKey::from_der(der).is_ok() {
            return Some(Self::from_pkcs1_der(der));
        }
        None
    }

    /// Reads the public key from the first PEM block, whatever its label (lenient, like the Go proxy's
    /// `ParseRSAPublicKeyFromPEM`): a `SubjectPublicKeyInfo`, an X.509 certificate or a PKCS#1
    /// `RSA PUBLIC KEY`. A private key block is refused with [`KeyError::PrivateKeyGiven`].
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, KeyError> {
        if !has_pem_begin(pem_text) {
            return Err(KeyError::NoPemBlock);
        }
        // Only the first block matters (as Go's pem.Decode); later blocks are not even parsed.
        let block = pem::parse(pem_text).map_err(|e| KeyError::Pem {
            reason: e.to_string(),
        })?;
        Self::from_pem_block(0, &block)
    }

    fn from_pem_block(index: usize, block: &pem::Pem) -> Result<Self, KeyError> {
        let label = block.tag();
        if label.contains("PRIVATE KEY") {
            return Err(KeyError::PrivateKeyGiven {
                index,
                label: truncate(label),
            });
        }
        Self::from_any_public_der(block.contents()).unwrap_or_else(|| {
            Err(KeyError::NotAPublicKey {
                index,
                label: truncate(label),
            })
        })
    }

    /// Reads a public key from a JWK object (`kty` `RSA`, `EC` with `crv` `P-256`, or `OKP` with `crv`
    /// `Ed25519`). If the JWK names an `alg`, it must be the one this key type is used with. Other
    /// members (`kid`, `use`, ...) are ignored: the `kid` is always recomputed.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let bad = |reason: &str| KeyError::InvalidJwk {
            reason: reason.to_owned(),
        };
        let obj = jwk.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let member = |name: &str| -> Result<&str, KeyError> {
            obj.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| KeyError::InvalidJwk {
                    reason: format!("missing or non-string member {name:?}"),
                })
        };
        let bytes = |name: &str| -> Result<Vec<u8>, KeyError> {
            b64::decode(member(name)?).map_err(|_| KeyError::InvalidJwk {
                reason: format!("member {name:?} is not base64url"),
            })
        };
        let coord = |name: &str| -> Result<[u8; 32], KeyError> {
            bytes(name)?.try_into().map_err(|_| KeyError::InvalidJwk {
                reason: format!("member {name:?} must be 32 bytes"),
            })
        };
        let material = match member("kty")? {
            "RSA" => {
                let n = bytes("n")?;
                let e = bytes("e")?;
                // RFC 7518 §6.3.1: no leading zero octets; reject rather than silently renormalise.
                if n.first() == Some(&0) || e.first() == Some(&0) || n.is_empty() || e.is_empty() {
                    return Err(bad(
                        "RSA n and e must be non-empty without leading zero octets",
                    ));
                }
                Material::Rsa { n, e }
            }
            "EC" => {
                if member("crv")? != "P-256" {
                    return Err(KeyError::UnsupportedCurve {
                        curve: truncate(member("crv")?),
                    });
                }
                Material::P256 {
                    x: coord("x")?,
                    y: coord("y")?,
                }
            }
            "OKP" => {
                if member("crv")? != "Ed25519" {
                    return Err(KeyError::UnsupportedCurve {
                        curve: truncate(member("crv")?),
                    });
                }
                Material::Ed25519 { x: coord("x")? }
            }
            other => {
                return Err(KeyError::InvalidJwk {
                    reason: format!("unsupported kty {:?}", truncate(other)),
                });
            }
        };
        if let Some(alg) = obj.get("alg")
            && alg.as_str() != Some(material.algorithm().jws_alg())
        {
            return Err(bad("the JWK's alg does not match its key type"));
        }
        Self::from_material(material)
    }

    /// The key type (and therefore its one JWS algorithm).
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.material.algorithm()
    }

    /// The key id: the RFC 7638 JWK thumbprint (SHA-256, base64url, no padding).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The canonical DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as PEM: an SPKI block labelled `PUBLIC KEY`, `\n` line endings.
    pub fn to_pem(&self) -> String {
        encode_pem("PUBLIC KEY", &self.spki_der)
    }

    /// The key as a JWK object, with `kid`, `alg` and `"use": "sig"`.
    pub fn to_jwk(&self) -> Value {
        let mut m = Map::new();
        match &self.material {
            Material::Rsa { n, e } => {
                m.insert("kty".into(), json!("RSA"));
                m.insert("n".into(), json!(b64::encode(n)));
                m.insert("e".into(), json!(b64::encode(e)));
            }
            Material::P256 { x, y } => {
                m.insert("kty".into(), json!("EC"));
                m.insert("crv".into(), json!("P-256"));
                m.insert("x".into(), json!(b64::encode(x)));
                m.insert("y".into(), json!(b64::encode(y)));
            }
            Material::Ed25519 { x } => {
                m.insert("kty".into(), json!("OKP"));
                m.insert("crv".into(), json!("Ed25519"));
                m.insert("x".into(), json!(b64::encode(x)));
            }
        }
        m.insert("kid".into(), json!(self.kid));
        m.insert("alg".into(), json!(self.algorithm().jws_alg()));
        m.insert("use".into(), json!("sig"));
        Value::Object(m)
    }

    /// Checks `signature` over `message` with this key's one algorithm.
    pub(crate) fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }
}

/// Reads every public key in a PEM bundle (for key rotation: several keys in one file or secret).
/// Each block must hold a public key in an accepted format; the first one that does not is reported
/// with its position.
pub fn public_keys_from_pem(pem_text: &[u8]) -> Result<Vec<PublicKey>, KeyError> {
    let blocks = parse_pem_blocks(pem_text)?;
    blocks
        .iter()
        .enumerate()
        .map(|(i, b)| PublicKey::from_pem_block(i, b))
        .collect()
}

/// A JWK Set (`{"keys": [...]}`) for the given public keys.
pub fn jwks(keys: &[PublicKey]) -> Value {
    json!({ "keys": keys.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
}

fn has_pem_begin(text: &[u8]) -> bool {
    text.windows(10).any(|w| w == b"-----BEGIN")
}

/// All PEM blocks in `text`, at least one: text without any `-----BEGIN` line is "no PEM block",
/// anything else the PEM parser refuses is "malformed PEM".
fn parse_pem_blocks(text: &[u8]) -> Result<Vec<pem::Pem>, KeyError> {
    if !has_pem_begin(text) {
        return Err(KeyError::NoPemBlock);
    }
    match pem::parse_many(text) {
        Ok(blocks) if blocks.is_empty() => Err(KeyError::NoPemBlock),
        Ok(blocks) => Ok(blocks),
        Err(e) => Err(KeyError::Pem {
            reason: e.to_string(),
        }),
    }
}

fn encode_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

enum Signing {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private signing key with its public half.
///
/// `Debug` shows only the algorithm and `kid`, never key material.
pub struct KeyPair {
    signing: Signing,
    public: PublicKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a new key: RSA-4096, ECDSA P-256 or Ed25519. RSA-4096 generation takes a second or
    /// more; the randomness comes from the operating system through aws-lc.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let signing = match algorithm {
            KeyAlgorithm::Rsa => {
                Signing::Rsa(RsaKeyPair::generate(KeySize::Rsa4096).map_err(|_| {
                    KeyError::Crypto {
                        context: "generating an RSA-4096 key",
                    }
                })?)
            }
            KeyAlgorithm::EcdsaP256 => Signing::P256(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| {
                    KeyError::Crypto {
                        context: "generating a P-256 key",
                    }
                })?,
            ),
            KeyAlgorithm::Ed25519 => {
                Signing::Ed25519(Ed25519KeyPair::generate().map_err(|_| KeyError::Crypto {
                    context: "generating an Ed25519 key",
                })?)
            }
        };
        Self::from_signing(signing)
    }

    fn from_signing(signing: Signing) -> Result<Self, KeyError> {
        let material = match &signing {
            Signing::Rsa(k) => {
                let pk = pkcs1::RsaPublicKey::from_der(k.public_key().as_ref()).map_err(|e| {
                    KeyError::InvalidPrivateKey {
                        format: "RSA",
                        reason: format!("public half: {e}"),
                    }
                })?;
                Material::Rsa {
                    n: pk.modulus.as_bytes().to_vec(),
                    e: pk.public_exponent.as_bytes().to_vec(),
                }
            }
            Signing::P256(k) => Material::from_p256_point(k.public_key().as_ref())?,
            Signing::Ed25519(k) => Material::Ed25519 {
                x: k.public_key()
                    .as_ref()
                    .try_into()
                    .map_err(|_| KeyError::InvalidPrivateKey {
                        format: "Ed25519",
                        reason: "public key is not 32 bytes".to_owned(),
                    })?,
            },
        };
        let public = PublicKey::from_material(material)?;
        Ok(Self { signing, public })
    }

    /// Reads a private key from PEM text. Accepted: PKCS#1 `RSA PRIVATE KEY`; PKCS#8 `PRIVATE KEY`
    /// holding an RSA, P-256 or Ed25519 key (v1 or v2, as OpenSSL 3 and aws-lc write them); SEC1
    /// `EC PRIVATE KEY` on P-256. Blocks that are not private keys (an `EC PARAMETERS` block, a
    /// certificate next to the key) are skipped; the first private key block is used.
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, KeyError> {
        let blocks = parse_pem_blocks(pem_text)?;
        let block = blocks
            .iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or_else(|| KeyError::NoPrivateKey {
                labels: blocks.iter().map(|b| truncate(b.tag())).collect(),
            })?;
        match block.tag() {
            "RSA PRIVATE KEY" => Self::from_pkcs1_der(block.contents()),
            "EC PRIVATE KEY" => Self::from_sec1_der(block.contents()),
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::EncryptedPrivateKey),
            _ => Self::from_pkcs8_der(block.contents()),
        }
    }

    /// Reads a DER PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = RsaKeyPair::from_der(der).map_err(|e| KeyError::InvalidPrivateKey {
            format: "PKCS#1",
            reason: e.to_string(),
        })?;
        Self::from_signing(Signing::Rsa(key))
    }

    /// Reads a DER SEC1 `ECPrivateKey` (P-256 only).
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| KeyError::InvalidPrivateKey {
                format: "SEC1",
                reason: e.to_string(),
            })?;
        Self::from_signing(Signing::P256(key))
    }

    /// Reads a DER PKCS#8 `PrivateKeyInfo` holding an RSA, P-256 or Ed25519 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::InvalidPrivateKey {
            format: "PKCS#8",
            reason,
        };
        let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| invalid(e.to_string()))?;
        let oid = info.algorithm.oid;
        let signing = if oid == OID_RSA {
            Signing::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| invalid(e.to_string()))?)
        } else if oid == OID_EC {
            match info.algorithm.parameters_oid() {
                Ok(curve) if curve == OID_P256 => {}
                Ok(curve) => {
                    return Err(KeyError::UnsupportedCurve {
                        curve: curve.to_string(),
                    });
                }
                Err(_) => {
                    return Err(KeyError::UnsupportedCurve {
                        curve: "missing or not a named curve".to_owned(),
                    });
                }
            }
            Signing::P256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| invalid(e.to_string()))?,
            )
        } else if oid == OID_ED25519 {
            Signing::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(|e| invalid(e.to_string()))?)
        } else {
            return Err(KeyError::UnsupportedAlgorithm {
                oid: oid.to_string(),
            });
        };
        Self::from_signing(signing)
    }

    /// The private key as PEM: PKCS#1 `RSA PRIVATE KEY` for RSA (Gen B compatible), PKCS#8
    /// `PRIVATE KEY` (v1, as OpenSSL writes) for the others. Handle the result as a secret.
    pub fn private_key_pem(&self) -> Result<String, KeyError> {
        let fail = |context| move |_| KeyError::Crypto { context };
        match &self.signing {
            Signing::Rsa(k) => {
                let pkcs8_doc = k.as_der().map_err(fail("serialising an RSA key"))?;
                // PKCS#8 wraps the PKCS#1 RSAPrivateKey in its privateKey OCTET STRING: unwrap it.
                let info = pkcs8::PrivateKeyInfo::from_der(pkcs8_doc.as_ref()).map_err(|_| {
                    KeyError::Crypto {
                        context: "re-reading a serialised RSA key",
                    }
                })?;
                Ok(encode_pem("RSA PRIVATE KEY", info.private_key))
            }
            Signing::P256(k) => {
                let doc = k.to_pkcs8v1().map_err(fail("serialising a P-256 key"))?;
                Ok(encode_pem("PRIVATE KEY", doc.as_ref()))
            }
            Signing::Ed25519(k) => {
                let doc = k.to_pkcs8v1().map_err(fail("serialising an Ed25519 key"))?;
                Ok(encode_pem("PRIVATE KEY", doc.as_ref()))
            }
        }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key type.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }

    /// The key id (RFC 7638 thumbprint of the public half).
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    /// Signs `message` with the key's one algorithm (RS256, ES256 in the fixed-size JWS form, EdDSA).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.signing {
            Signing::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Crypto {
                        context: "signing with RSA",
                    })?;
                Ok(sig)
            }
            Signing::P256(k) => Ok(k
                .sign(&rng, message)
                .map_err(|_| KeyError::Crypto {
                    context: "signing with ECDSA P-256",
                })?
                .as_ref()
                .to_vec()),
            Signing::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}
