//! Key generation, formats (lenient reading, canonical writing), kids and JWKs.

mod common;

use common::{generated, testdata, upstream_rsa};
use serde_json::json;
use virt_gateway_auth::keys::{
    KeyAlgorithm, KeyError, KeyPair, PublicKey, jwks, public_keys_from_pem,
};

fn pem_label(pem_text: &str) -> &str {
    pem_text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .expect("a PEM block")
}

fn public(path: &str) -> PublicKey {
    PublicKey::from_pem(&testdata(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn private(path: &str) -> KeyPair {
    KeyPair::from_pem(&testdata(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn generated_keys_round_trip_through_pem() {
    for alg in KeyAlgorithm::ALL {
        let key = generated(alg);
        assert_eq!(key.algorithm(), alg);
        assert_eq!(key.kid().len(), 43, "SHA-256 thumbprint, base64url: {alg}");

        let public_pem = key.public_key().to_pem();
        assert_eq!(pem_label(&public_pem), "PUBLIC KEY", "{alg}");
        assert!(!public_pem.contains('\r'), "LF line endings");
        assert_eq!(
            &PublicKey::from_pem(public_pem.as_bytes()).unwrap(),
            key.public_key(),
            "{alg}"
        );

        let private_pem = key.private_key_pem().unwrap();
        let expected_label = if alg == KeyAlgorithm::Rsa {
            "RSA PRIVATE KEY"
        } else {
            "PRIVATE KEY"
        };
        assert_eq!(pem_label(&private_pem), expected_label, "{alg}");
        let reread = KeyPair::from_pem(private_pem.as_bytes()).unwrap();
        assert_eq!(reread.kid(), key.kid(), "{alg}");
        assert_eq!(reread.public_key(), key.public_key(), "{alg}");
    }
}

#[test]
fn generated_rsa_keys_are_4096_bits() {
    let jwk = generated(KeyAlgorithm::Rsa).public_key().to_jwk();
    let n = jwk["n"].as_str().unwrap();
    // 512 bytes is 683 base64url characters (unpadded), and the top bit is set.
    assert_eq!(n.len(), 683);
    assert_eq!(jwk["e"], "AQAB");
}

#[test]
fn debug_output_never_shows_key_material() {
    let key = generated(KeyAlgorithm::Ed25519);
    let debug = format!("{key:?}");
    assert!(debug.contains(key.kid()));
    assert!(!debug.contains("PRIVATE"));
    let pem = key.private_key_pem().unwrap();
    let body = pem.lines().nth(1).unwrap();
    assert!(!debug.contains(body));
}

// The Gen B operator writes an SPKI public key in a block labelled CERTIFICATE, and the private key
// as PKCS#1 (§1.5.1); both come from the Go generator under testdata/upstream-go.
#[test]
fn upstream_certificate_labelled_spki_and_pkcs1_private_key() {
    let cert = testdata("upstream-go/cert.pem");
    assert!(String::from_utf8_lossy(&cert).starts_with("-----BEGIN CERTIFICATE-----"));
    let key = public("upstream-go/cert.pem");
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa);
    assert_eq!(&key, upstream_rsa().public_key());
    // Written back out canonically, as an SPKI "PUBLIC KEY" with the same DER.
    let pem = pem::parse(key.to_pem()).unwrap();
    assert_eq!(pem.tag(), "PUBLIC KEY");
    assert_eq!(pem.contents(), pem::parse(&cert).unwrap().contents());
    // And the private key is written back exactly as Go wrote it (PKCS#1 DER, same bytes).
    let go_key = pem::parse(testdata("upstream-go/key.pem")).unwrap();
    let ours = pem::parse(upstream_rsa().private_key_pem().unwrap()).unwrap();
    assert_eq!(ours.tag(), "RSA PRIVATE KEY");
    assert_eq!(ours.contents(), go_key.contents());
}

#[test]
fn rsa_formats_all_give_the_same_key() {
    let from_cert = public("openssl/rsa2048-cert.pem"); // a real `openssl req -x509` certificate
    assert_eq!(from_cert.algorithm(), KeyAlgorithm::Rsa);
    assert_eq!(from_cert, public("openssl/rsa2048-pub-spki.pem"));
    assert_eq!(from_cert, public("openssl/rsa2048-pub-pkcs1.pem")); // RSA PUBLIC KEY
    assert_eq!(
        &from_cert,
        private("openssl/rsa2048-pkcs8.pem").public_key()
    ); // PRIVATE KEY (OpenSSL 3)
    assert_eq!(
        &from_cert,
        private("openssl/rsa2048-pkcs1.pem").public_key()
    ); // RSA PRIVATE KEY
}

#[test]
fn p256_formats_all_give_the_same_key() {
    let from_cert = public("openssl/p256-cert.pem");
    assert_eq!(from_cert.algorithm(), KeyAlgorithm::EcdsaP256);
    assert_eq!(from_cert, public("openssl/p256-pub.pem"));
    // SEC1, preceded by its EC PARAMETERS block, as `openssl ecparam -genkey` writes it.
    assert_eq!(&from_cert, private("openssl/p256-sec1.pem").public_key());
    assert_eq!(&from_cert, private("openssl/p256-pkcs8.pem").public_key());
}

#[test]
fn ed25519_formats_give_the_same_key() {
    let key = public("openssl/ed25519-pub.pem");
    assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
    assert_eq!(&key, private("openssl/ed25519-pkcs8.pem").public_key());
    // OpenSSL writes PKCS#8 v1; we write v1 too, and read our own output back.
    let again = KeyPair::from_pem(
        private("openssl/ed25519-pkcs8.pem")
            .private_key_pem()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(again.public_key(), &key);
}

#[test]
fn rcgen_certificates_give_their_key() {
    use rcgen::{CertificateParams, PublicKeyData};
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        let key_pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = CertificateParams::new(vec!["gateway.test".to_owned()])
            .unwrap()
            .self_signed(&key_pair)
            .unwrap();
        let from_cert = PublicKey::from_pem(cert.pem().as_bytes()).unwrap();
        let from_spki = PublicKey::from_spki_der(&key_pair.subject_public_key_info()).unwrap();
        assert_eq!(from_cert, from_spki);
    }
    // A certificate for one of our own keys, made by rcgen from our PKCS#8 output.
    let ours = generated(KeyAlgorithm::EcdsaP256);
    let key_pair = rcgen::KeyPair::from_pem(&ours.private_key_pem().unwrap()).unwrap();
    let cert = CertificateParams::new(vec!["gateway.test".to_owned()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    assert_eq!(
        &PublicKey::from_pem(cert.pem().as_bytes()).unwrap(),
        ours.public_key()
    );
}

#[test]
fn refused_keys_give_typed_errors() {
    assert!(matches!(
        PublicKey::from_pem(&testdata("openssl/p384-pub.pem")),
        Err(KeyError::UnsupportedCurve { .. })
    ));
    assert!(matches!(
        KeyPair::from_pem(&testdata("openssl/p384-sec1.pem")),
        Err(KeyError::InvalidPrivateKey { format: "SEC1", .. })
    ));
    assert_eq!(
        PublicKey::from_pem(&testdata("openssl/rsa1024-pub.pem")),
        Err(KeyError::UnsupportedRsaSize { bits: 1024 })
    );
    assert!(matches!(
        KeyPair::from_pem(&testdata("openssl/rsa1024-pkcs8.pem")),
        Err(KeyError::UnsupportedRsaSize { bits: 1024 } | KeyError::InvalidPrivateKey { .. })
    ));
    assert_eq!(
        KeyPair::from_pem(&testdata("openssl/p256-encrypted.pem")).unwrap_err(),
        KeyError::EncryptedPrivateKey
    );
    assert!(matches!(
        PublicKey::from_pem(&testdata("openssl/p256-pkcs8.pem")),
        Err(KeyError::PrivateKeyGiven { index: 0, .. })
    ));
    assert!(matches!(
        KeyPair::from_pem(&testdata("openssl/p256-cert.pem")),
        Err(KeyError::NoPrivateKey { labels }) if labels == ["CERTIFICATE"]
    ));
    assert_eq!(
        PublicKey::from_pem(b"not a pem at all").unwrap_err(),
        KeyError::NoPemBlock
    );
    assert_eq!(KeyPair::from_pem(b"").unwrap_err(), KeyError::NoPemBlock);
    let junk = pem::encode(&pem::Pem::new(
        "CERTIFICATE",
        vec![0x30, 0x03, 0x02, 0x01, 0x05],
    ));
    assert!(matches!(
        PublicKey::from_pem(junk.as_bytes()),
        Err(KeyError::NotAPublicKey { index: 0, .. })
    ));
    let junk_private = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
    assert!(matches!(
        KeyPair::from_pem(junk_private.as_bytes()),
        Err(KeyError::InvalidPrivateKey {
            format: "PKCS#8",
            ..
        })
    ));
    assert!(matches!(
        PublicKey::from_pem(b"-----BEGIN X-----\n!!!!\n-----END X-----\n"),
        Err(KeyError::Pem { .. })
    ));
}

#[test]
fn bundles_read_every_key_and_point_at_the_bad_block() {
    let mut bundle = testdata("upstream-go/cert.pem");
    bundle.extend(testdata("openssl/p256-cert.pem"));
    bundle.extend(testdata("openssl/ed25519-pub.pem"));
    let keys = public_keys_from_pem(&bundle).unwrap();
    let algs: Vec<_> = keys.iter().map(PublicKey::algorithm).collect();
    assert_eq!(
        algs,
        [
            KeyAlgorithm::Rsa,
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Ed25519
        ]
    );

    bundle.extend(testdata("openssl/ed25519-pkcs8.pem"));
    assert!(matches!(
        public_keys_from_pem(&bundle),
        Err(KeyError::PrivateKeyGiven { index: 3, .. })
    ));
    assert_eq!(public_keys_from_pem(b"").unwrap_err(), KeyError::NoPemBlock);
}

// RFC 7638 §3.1 (RSA) and RFC 8037 Appendix A.3 (Ed25519) give thumbprints for example keys.
#[test]
fn kid_is_the_rfc7638_thumbprint() {
    let rsa = PublicKey::from_jwk(&json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    }))
    .unwrap();
    assert_eq!(rsa.kid(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");

    let ed = PublicKey::from_jwk(&json!({
        "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    }))
    .unwrap();
    assert_eq!(ed.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn kid_matches_an_independent_thumbprint_implementation() {
    for alg in KeyAlgorithm::ALL {
        let key = generated(alg).public_key();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.to_jwk()).unwrap();
        let theirs = jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap();
        assert_eq!(key.kid(), theirs, "{alg}");
    }
}

#[test]
fn jwk_and_jwks_round_trip() {
    let keys: Vec<PublicKey> = KeyAlgorithm::ALL
        .iter()
        .map(|a| generated(*a).public_key().clone())
        .collect();
    for key in &keys {
        let jwk = key.to_jwk();
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk["alg"], key.algorithm().jws_alg());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(&PublicKey::from_jwk(&jwk).unwrap(), key);
    }
    let set = jwks(&keys);
    let listed: Vec<&str> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(listed, keys.iter().map(PublicKey::kid).collect::<Vec<_>>());

    let mut wrong_alg = keys[1].to_jwk();
    wrong_alg["alg"] = json!("RS256");
    assert!(matches!(
        PublicKey::from_jwk(&wrong_alg),
        Err(KeyError::InvalidJwk { .. })
    ));
    assert!(matches!(
        PublicKey::from_jwk(&json!({"kty": "oct", "k": "c2VjcmV0"})),
        Err(KeyError::InvalidJwk { .. })
    ));
    assert!(matches!(
        PublicKey::from_jwk(&json!({"kty": "EC", "crv": "P-384", "x": "", "y": ""})),
        Err(KeyError::UnsupportedCurve { .. })
    ));
    // A point that is not on the curve is refused by aws-lc when the key is loaded, not at first use.
    let mut off_curve = keys[1].to_jwk();
    off_curve["y"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert!(matches!(
        PublicKey::from_jwk(&off_curve),
        Err(KeyError::InvalidPublicKey { .. })
    ));
}

#[test]
fn algorithm_names() {
    for alg in KeyAlgorithm::ALL {
        assert_eq!(KeyAlgorithm::from_jws_alg(alg.jws_alg()), Some(alg));
        assert_eq!(alg.jws_alg().parse::<KeyAlgorithm>().unwrap(), alg);
    }
    assert_eq!(
        "ed25519".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::Ed25519
    );
    assert_eq!(
        "P-256".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::EcdsaP256
    );
    assert!(matches!(
        "HS256".parse::<KeyAlgorithm>(),
        Err(KeyError::UnknownAlgorithmName { .. })
    ));
    assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::Rsa);
    assert_eq!(
        KeyAlgorithm::from_jws_alg("rs256"),
        None,
        "JWS names are case-sensitive"
    );
}
