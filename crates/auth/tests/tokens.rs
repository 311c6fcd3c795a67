//! JWT signing and verification: round trips, Gen B compatibility, and the negative suite. Every
//! refusal asserts its exact error variant.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{FAR_FUTURE, NOW, signing_key, testdata, testdata_str, upstream_rsa};
use serde_json::{Value, json};
use virt_gateway_auth::authz::{Denied, authorize};
use virt_gateway_auth::jwt::{
    AudiencePolicy, Claims, ClaimsError, MAX_LEEWAY, MAX_TOKEN_LEN, SignError, TokenError,
    Verifier, expires_at, sign, sign_json, sign_payload,
};
use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair, PublicKey};
use virt_gateway_auth::request::parse;

const VNC_PATH: &str =
    "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc";

/// The claims of the Gen B sample GateToken (the README's), valid from NOW until 2100.
fn sample_claims() -> Claims {
    let mut c = Claims::new(FAR_FUTURE);
    c.nbf = Some(NOW);
    c.namespace = "default".into();
    c.verbs = vec!["get".into()];
    c.api_groups = Some(vec!["subresources.kubevirt.io".into()]);
    c.resources = Some(vec![
        "virtualmachineinstances".into(),
        "virtualmachineinstances/vnc".into(),
    ]);
    c.resource_names = Some(vec!["testvm".into()]);
    c
}

fn verifier_for(keys: &[&KeyPair]) -> Verifier {
    Verifier::new(keys.iter().map(|k| k.public_key().clone()))
}

fn segments(token: &str) -> (String, String, String) {
    let mut it = token.split('.');
    let (h, p, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    (h.to_owned(), p.to_owned(), s.to_owned())
}

fn decode_json(segment: &str) -> Value {
    serde_json::from_slice(&B64.decode(segment).unwrap()).unwrap()
}

fn encode_json(value: &Value) -> String {
    B64.encode(value.to_string())
}

/// A token with any header and payload and an empty signature (for checks that come before the
/// signature).
fn unsigned(header: &Value, payload: &Value) -> String {
    format!("{}.{}.", encode_json(header), encode_json(payload))
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn round_trip_for_each_algorithm() {
    for alg in KeyAlgorithm::ALL {
        let key = signing_key(alg);
        let mut claims = sample_claims();
        claims.iat = Some(NOW);
        claims.jti = Some("6b1c4f7e-0000-4000-8000-000000000001".into());
        let token = sign(key, &claims).unwrap();

        let (h, _, _) = segments(&token);
        assert_eq!(
            decode_json(&h),
            json!({"alg": alg.jws_alg(), "kid": key.kid(), "typ": "JWT"}),
            "{alg}"
        );
        let verified = verifier_for(&[key]).verify(&token, NOW).unwrap();
        assert_eq!(verified.claims, claims, "{alg}");
        assert_eq!(verified.kid, key.kid());
        assert_eq!(verified.algorithm, alg);
        assert!(verified.kid_in_header);
    }
}

#[test]
fn claims_serialise_to_the_exact_gen_b_wire_form() {
    // Byte for byte what the Go operator's jwt.MapClaims produced for the same token.
    let go_token = testdata_str("upstream-go/token-vnc.jwt");
    let (_, go_payload, _) = segments(&go_token);
    let go_payload = B64.decode(go_payload).unwrap();
    assert_eq!(serde_json::to_vec(&sample_claims()).unwrap(), go_payload);

    let minimal = Claims::new(100);
    assert_eq!(
        serde_json::to_string(&minimal).unwrap(),
        r#"{"apiGroups":null,"exp":100,"namespace":"*","nonResourceURLs":null,"resourceNames":null,"resources":null,"verbs":["get"]}"#
    );
    let mut full = minimal.clone();
    full.iat = Some(90);
    full.jti = Some("uid".into());
    full.nbf = Some(95);
    assert_eq!(
        full.to_json().to_string(),
        r#"{"apiGroups":null,"exp":100,"iat":90,"jti":"uid","namespace":"*","nbf":95,"nonResourceURLs":null,"resourceNames":null,"resources":null,"verbs":["get"]}"#
    );
    // And serde deserialisation applies the same strict decoding.
    let back: Claims = serde_json::from_value(full.to_json()).unwrap();
    assert_eq!(back, full);
    // aud and iss in their sorted places; one audience is a string, several an array.
    let mut bound = minimal.clone();
    bound.aud = Some(vec!["gw-a".into()]);
    bound.iss = Some("ns".into());
    assert_eq!(
        bound.to_json().to_string(),
        r#"{"apiGroups":null,"aud":"gw-a","exp":100,"iss":"ns","namespace":"*","nonResourceURLs":null,"resourceNames":null,"resources":null,"verbs":["get"]}"#
    );
    assert_eq!(
        serde_json::from_value::<Claims>(bound.to_json()).unwrap(),
        bound
    );
    bound.aud = Some(vec!["gw-a".into(), "gw-b".into()]);
    assert_eq!(bound.to_json()["aud"], json!(["gw-a", "gw-b"]));
    assert_eq!(
        serde_json::from_value::<Claims>(bound.to_json()).unwrap(),
        bound
    );
    assert!(serde_json::from_value::<Claims>(json!({"exp": 1, "aud": 7})).is_err());
    assert!(serde_json::from_value::<Claims>(json!({"exp": 1, "aud": ["a", 7]})).is_err());
    assert!(serde_json::from_value::<Claims>(json!({"exp": 1, "verbs": "get"})).is_err());
}

// ---------------------------------------------------------------------------------------------
// Upstream compatibility: tokens minted by dgrijalva/jwt-go v3.2.0 exactly as the Gen B operator did
// (testdata/upstream-go/main.go), verified with the CERTIFICATE-labelled SPKI public key it wrote.

fn upstream_verifier() -> Verifier {
    Verifier::new([PublicKey::from_pem(&testdata("upstream-go/cert.pem")).unwrap()])
}

#[test]
fn upstream_go_token_verifies_and_authorizes_the_vnc_console() {
    let token = testdata_str("upstream-go/token-vnc.jwt");
    let verified = upstream_verifier().verify(&token, NOW).unwrap();
    assert!(!verified.kid_in_header, "jwt-go sets no kid");
    assert_eq!(verified.kid, upstream_rsa().kid());
    assert_eq!(verified.algorithm, KeyAlgorithm::Rsa);
    assert_eq!(verified.claims, sample_claims());
    assert_eq!(verified.claims.non_resource_urls, None, "null stays unset");

    let vnc = parse("GET", VNC_PATH, None).unwrap();
    assert_eq!(authorize(&verified.claims, &vnc), Ok(()));
    let console = parse("GET", &VNC_PATH.replace("/vnc", "/console"), None).unwrap();
    assert!(matches!(
        authorize(&verified.claims, &console),
        Err(Denied::Resource { .. })
    ));
}

#[test]
fn upstream_go_token_with_null_lists_decodes_with_gen_b_defaults() {
    let verified = upstream_verifier()
        .verify(&testdata_str("upstream-go/token-nulls.jwt"), NOW)
        .unwrap();
    let c = verified.claims;
    assert_eq!(c.namespace, "*");
    assert_eq!(c.verbs, ["get"], "null verbs means [get]");
    assert_eq!(
        (
            c.api_groups,
            c.resources,
            c.resource_names,
            c.non_resource_urls
        ),
        (None, None, None, None)
    );
    assert_eq!(
        (c.nbf, c.exp, c.iat, c.jti),
        (Some(NOW), FAR_FUTURE, None, None)
    );
}

#[test]
fn upstream_go_expired_token_is_expired() {
    let err = upstream_verifier()
        .verify(&testdata_str("upstream-go/token-expired.jwt"), NOW)
        .unwrap_err();
    assert_eq!(
        err,
        TokenError::Expired {
            exp: 1_600_003_600,
            now: NOW,
            leeway: 30
        }
    );
}

#[test]
fn upstream_go_forgeries_that_gen_b_accepted_are_refused() {
    // HS256 keyed with the public key file: the Gen B proxy's algorithm confusion.
    assert_eq!(
        upstream_verifier().verify(&testdata_str("upstream-go/token-hs256-forged.jwt"), NOW),
        Err(TokenError::HmacNotAccepted {
            alg: "HS256".into()
        })
    );
    assert_eq!(
        upstream_verifier().verify(&testdata_str("upstream-go/token-none.jwt"), NOW),
        Err(TokenError::AlgNone)
    );
}

// ---------------------------------------------------------------------------------------------
// Negative suite

#[test]
fn alg_none_is_refused_in_any_spelling() {
    let key = signing_key(KeyAlgorithm::Ed25519);
    let v = verifier_for(&[key]);
    let payload = sample_claims().to_json();
    for alg in ["none", "None", "NONE"] {
        let token = unsigned(&json!({"alg": alg, "typ": "JWT"}), &payload);
        assert_eq!(v.verify(&token, NOW), Err(TokenError::AlgNone), "{alg}");
        // Even when the "signature" is a real signature of something.
        let (h, p, _) = segments(&token);
        let real = sign(key, &sample_claims()).unwrap();
        let (_, _, s) = segments(&real);
        assert_eq!(
            v.verify(&format!("{h}.{p}.{s}"), NOW),
            Err(TokenError::AlgNone)
        );
    }
}

#[test]
fn hmac_signed_with_the_public_key_pem_is_refused() {
    for alg in KeyAlgorithm::ALL {
        let key = signing_key(alg);
        let public_pem = key.public_key().to_pem();
        for hs in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS384,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut header = jsonwebtoken::Header::new(hs);
            header.kid = Some(key.kid().to_owned());
            let secret = jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()).unwrap();
            let token = jsonwebtoken::encode(&header, &sample_claims(), &secret).unwrap();
            let err = verifier_for(&[key]).verify(&token, NOW).unwrap_err();
            assert_eq!(
                err,
                TokenError::HmacNotAccepted {
                    alg: format!("{hs:?}")
                },
                "{alg} {hs:?}"
            );
        }
    }
}

#[test]
fn other_asymmetric_algorithms_are_refused() {
    let rsa_pem = upstream_rsa().private_key_pem().unwrap();
    for alg in [
        jsonwebtoken::Algorithm::PS256,
        jsonwebtoken::Algorithm::RS512,
    ] {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).unwrap();
        let token =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &sample_claims(), &key).unwrap();
        assert_eq!(
            verifier_for(&[upstream_rsa()]).verify(&token, NOW),
            Err(TokenError::UnsupportedAlgorithm {
                alg: format!("{alg:?}")
            })
        );
    }
    let token = unsigned(&json!({"alg": "ES384"}), &sample_claims().to_json());
    assert_eq!(
        verifier_for(&[upstream_rsa()]).verify(&token, NOW),
        Err(TokenError::UnsupportedAlgorithm {
            alg: "ES384".into()
        })
    );
}

#[test]
fn wrong_kid_is_refused() {
    let signer = signing_key(KeyAlgorithm::EcdsaP256);
    let other = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let token = sign(signer, &sample_claims()).unwrap();
    // The verifier does not know the signer's kid.
    assert_eq!(
        verifier_for(&[&other]).verify(&token, NOW),
        Err(TokenError::UnknownKid {
            kid: signer.kid().to_owned()
        })
    );
    // The token names another configured key than the one that signed it: only that key is tried.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(other.kid().to_owned());
    let signer_key =
        jsonwebtoken::EncodingKey::from_ec_pem(signer.private_key_pem().unwrap().as_bytes())
            .unwrap();
    let token = jsonwebtoken::encode(&header, &sample_claims(), &signer_key).unwrap();
    assert_eq!(
        verifier_for(&[signer, &other]).verify(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn kid_of_a_key_of_another_type_is_an_algorithm_mismatch() {
    let ec = signing_key(KeyAlgorithm::EcdsaP256);
    let ed = signing_key(KeyAlgorithm::Ed25519);
    // An ES256 token that names the Ed25519 key.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(ed.kid().to_owned());
    let ec_key =
        jsonwebtoken::EncodingKey::from_ec_pem(ec.private_key_pem().unwrap().as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&header, &sample_claims(), &ec_key).unwrap();
    assert_eq!(
        verifier_for(&[ec, ed]).verify(&token, NOW),
        Err(TokenError::AlgorithmMismatch {
            token_alg: "ES256",
            key_alg: "EdDSA",
            kid: ed.kid().to_owned()
        })
    );
    // No kid and no key of the token's type.
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let token = jsonwebtoken::encode(&header, &sample_claims(), &ec_key).unwrap();
    assert_eq!(
        verifier_for(&[ed]).verify(&token, NOW),
        Err(TokenError::NoKeyForAlgorithm { alg: "ES256" })
    );
    assert_eq!(
        Verifier::new([]).verify(&token, NOW),
        Err(TokenError::NoKeyForAlgorithm { alg: "ES256" })
    );
}

#[test]
fn tampering_is_detected() {
    for alg in KeyAlgorithm::ALL {
        let key = signing_key(alg);
        let v = verifier_for(&[key]);
        let token = sign(key, &sample_claims()).unwrap();
        let (h, p, s) = segments(&token);

        // Header: an extra member, same alg and kid.
        let mut header = decode_json(&h);
        header["x"] = json!(1);
        assert_eq!(
            v.verify(&format!("{}.{p}.{s}", encode_json(&header)), NOW),
            Err(TokenError::BadSignature),
            "{alg}"
        );

        // Payload: widen the namespace.
        let mut payload = decode_json(&p);
        payload["namespace"] = json!("*");
        assert_eq!(
            v.verify(&format!("{h}.{}.{s}", encode_json(&payload)), NOW),
            Err(TokenError::BadSignature),
            "{alg}"
        );

        // Signature: flip one bit.
        let mut sig = B64.decode(&s).unwrap();
        let mid = sig.len() / 2;
        sig[mid] ^= 0x01;
        assert_eq!(
            v.verify(&format!("{h}.{p}.{}", B64.encode(&sig)), NOW),
            Err(TokenError::BadSignature),
            "{alg}"
        );
        // Signature: truncated, or empty.
        assert_eq!(
            v.verify(&format!("{h}.{p}.{}", B64.encode(&sig[..10])), NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            v.verify(&format!("{h}.{p}."), NOW),
            Err(TokenError::BadSignature)
        );
    }
    // Header: swap the algorithm while keeping the kid.
    let key = signing_key(KeyAlgorithm::Rsa);
    let token = sign(key, &sample_claims()).unwrap();
    let (h, p, s) = segments(&token);
    let mut header = decode_json(&h);
    header["alg"] = json!("EdDSA");
    assert!(matches!(
        verifier_for(&[key]).verify(&format!("{}.{p}.{s}", encode_json(&header)), NOW),
        Err(TokenError::AlgorithmMismatch {
            token_alg: "EdDSA",
            key_alg: "RS256",
            ..
        })
    ));
}

#[test]
fn expiry_not_before_and_issued_at_with_leeway() {
    let key = signing_key(KeyAlgorithm::Ed25519);
    let v = verifier_for(&[key]);
    let at = |f: &dyn Fn(&mut Claims)| {
        let mut c = sample_claims();
        c.nbf = None;
        f(&mut c);
        sign(key, &c).unwrap()
    };

    let expired = at(&|c| c.exp = NOW - 31);
    assert_eq!(
        v.verify(&expired, NOW),
        Err(TokenError::Expired {
            exp: NOW - 31,
            now: NOW,
            leeway: 30
        })
    );
    let just_expired = at(&|c| c.exp = NOW - 30);
    assert!(
        v.verify(&just_expired, NOW).is_ok(),
        "within the default 30 s leeway"
    );
    let strict = v.clone().with_leeway(Duration::ZERO);
    assert!(
        strict.verify(&at(&|c| c.exp = NOW), NOW).is_ok(),
        "valid while now <= exp, as jwt-go"
    );
    assert_eq!(
        strict.verify(&just_expired, NOW),
        Err(TokenError::Expired {
            exp: NOW - 30,
            now: NOW,
            leeway: 0
        })
    );

    let early = at(&|c| c.nbf = Some(NOW + 31));
    assert_eq!(
        v.verify(&early, NOW),
        Err(TokenError::NotYetValid {
            nbf: NOW + 31,
            now: NOW,
            leeway: 30
        })
    );
    assert!(v.verify(&at(&|c| c.nbf = Some(NOW + 30)), NOW).is_ok());
    assert!(
        strict.verify(&at(&|c| c.nbf = Some(NOW)), NOW).is_ok(),
        "valid from nbf on"
    );

    let future = at(&|c| c.iat = Some(NOW + 3600));
    assert_eq!(
        v.verify(&future, NOW),
        Err(TokenError::IssuedInFuture {
            iat: NOW + 3600,
            now: NOW,
            leeway: 30
        })
    );

    // Saturating arithmetic at the edges of u64.
    assert!(v.verify(&at(&|c| c.exp = u64::MAX), u64::MAX).is_ok());
    assert!(matches!(
        v.verify(&at(&|c| c.nbf = Some(u64::MAX)), 0),
        Err(TokenError::NotYetValid { .. })
    ));

    assert_eq!(
        v.clone().with_leeway(Duration::from_secs(3600)).leeway(),
        MAX_LEEWAY
    );
    assert_eq!(v.leeway(), Duration::from_secs(30));
}

#[test]
fn the_audience_binds_a_token_to_its_gateway() {
    let key = signing_key(KeyAlgorithm::Ed25519);
    let with = |aud: Option<&[&str]>, iss: Option<&str>| {
        let mut c = sample_claims();
        c.aud = aud.map(|a| a.iter().map(|s| s.to_string()).collect());
        c.iss = iss.map(str::to_owned);
        sign(key, &c).unwrap()
    };
    let policy = |required| AudiencePolicy {
        audience: Some("ocgate.yaacov.com/namespaces/gw/gateservers/a".into()),
        issuer: Some("ocgate.yaacov.com/namespaces/gw".into()),
        required,
    };
    let a = verifier_for(&[key]).with_audience(policy(false));
    let mut other = policy(false);
    other.audience = Some("ocgate.yaacov.com/namespaces/gw/gateservers/b".into());
    let b = verifier_for(&[key]).with_audience(other);
    let for_a = with(
        Some(&["ocgate.yaacov.com/namespaces/gw/gateservers/a"]),
        Some("ocgate.yaacov.com/namespaces/gw"),
    );
    assert!(a.verify(&for_a, NOW).is_ok());
    assert_eq!(b.verify(&for_a, NOW), Err(TokenError::WrongAudience));
    // Several audiences: any one of them.
    let for_both = with(
        Some(&[
            "ocgate.yaacov.com/namespaces/gw/gateservers/b",
            "ocgate.yaacov.com/namespaces/gw/gateservers/a",
        ]),
        None,
    );
    assert!(a.verify(&for_both, NOW).is_ok() && b.verify(&for_both, NOW).is_ok());
    // No aud: accepted unless required (upgrade safety for older and upstream tokens).
    let unbound = with(None, None);
    assert!(a.verify(&unbound, NOW).is_ok());
    let strict = verifier_for(&[key]).with_audience(policy(true));
    assert_eq!(
        strict.verify(&unbound, NOW),
        Err(TokenError::MissingAudience)
    );
    assert!(strict.verify(&for_a, NOW).is_ok());
    // A gateway that does not know its audience refuses tokens bound to one.
    let anonymous = verifier_for(&[key]).with_audience(AudiencePolicy::default());
    assert_eq!(
        anonymous.verify(&for_a, NOW),
        Err(TokenError::WrongAudience)
    );
    assert!(anonymous.verify(&unbound, NOW).is_ok());
    // Another issuer.
    let foreign = with(
        Some(&["ocgate.yaacov.com/namespaces/gw/gateservers/a"]),
        Some("elsewhere"),
    );
    assert_eq!(a.verify(&foreign, NOW), Err(TokenError::WrongIssuer));
    // Without a policy neither claim is looked at.
    assert!(verifier_for(&[key]).verify(&foreign, NOW).is_ok());
}

#[test]
fn the_end_of_a_session_never_overflows() {
    assert_eq!(
        expires_at(100, Duration::from_secs(30)),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(131))
    );
    for exp in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1, 1 << 62] {
        for leeway in [Duration::ZERO, MAX_LEEWAY] {
            // Never panics; beyond the clock's range it is "never".
            let _ = expires_at(exp, leeway);
        }
    }
    assert_eq!(expires_at(u64::MAX, Duration::ZERO), None);
}

#[test]
fn missing_exp_is_refused() {
    let key = signing_key(KeyAlgorithm::Ed25519);
    let v = verifier_for(&[key]);
    let mut payload = sample_claims().to_json();
    payload.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        v.verify(&sign_json(key, &payload).unwrap(), NOW),
        Err(TokenError::InvalidClaims(ClaimsError::MissingExp))
    );
    payload["exp"] = Value::Null;
    assert_eq!(
        v.verify(&sign_json(key, &payload).unwrap(), NOW),
        Err(TokenError::InvalidClaims(ClaimsError::MissingExp))
    );
}

#[test]
fn claims_of_the_wrong_json_type_are_typed_errors() {
    let key = signing_key(KeyAlgorithm::Ed25519);
    let v = verifier_for(&[key]);
    let cases: &[(&str, Value)] = &[
        ("verbs", json!("get")),
        ("verbs", json!([1])),
        ("verbs", json!(["get", null])),
        ("apiGroups", json!("subresources.kubevirt.io")),
        ("apiGroups", json!([["nested"]])),
        ("resources", json!({"pods": true})),
        ("resources", json!([true])),
        ("resourceNames", json!(7)),
        ("resourceNames", json!(["ok", 2.5])),
        ("nonResourceURLs", json!([{"path": "/version"}])),
        ("namespace", json!(5)),
        ("namespace", json!(["default"])),
        ("jti", json!(123)),
        ("exp", json!("4102444800")),
        ("exp", json!(-1)),
        ("exp", json!(1.5)),
        ("exp", json!(true)),
        ("nbf", json!("soon")),
        ("iat", json!([NOW])),
    ];
    for (claim, bad) in cases {
        let mut payload = sample_claims().to_json();
        payload[*claim] = bad.clone();
        let err = v
            .verify(&sign_json(key, &payload).unwrap(), NOW)
            .unwrap_err();
        assert!(
            matches!(&err, TokenError::InvalidClaims(ClaimsError::WrongType { claim: c, .. }) if c == claim),
            "{claim} = {bad}: {err:?}"
        );
    }
    // An integral float is a valid NumericDate (some libraries write 4.1024448e9).
    let mut payload = sample_claims().to_json();
    payload["exp"] = json!(4_102_444_800.0_f64);
    assert_eq!(
        v.verify(&sign_json(key, &payload).unwrap(), NOW)
            .unwrap()
            .claims
            .exp,
        FAR_FUTURE
    );
    // Unknown claims are ignored.
    payload["iss"] = json!("someone");
    payload["aud"] = json!(["x"]);
    assert!(v.verify(&sign_json(key, &payload).unwrap(), NOW).is_ok());
}

#[test]
fn payload_that_is_not_a_claims_object() {
    let key = signing_key(KeyAlgorithm::Ed25519);
    let v = verifier_for(&[key]);
    assert_eq!(
        v.verify(&sign_payload(key, b"[1,2]").unwrap(), NOW),
        Err(TokenError::InvalidClaims(ClaimsError::NotAnObject))
    );
    assert!(matches!(
        v.verify(&sign_payload(key, b"{\"exp\":").unwrap(), NOW),
        Err(TokenError::InvalidClaims(ClaimsError::InvalidJson { .. }))
    ));
    // Deep nesting hits serde_json's recursion limit, not the stack.
    let deep = format!(
        "{{\"exp\":1,\"x\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(matches!(
        v.verify(&sign_payload(key, deep.as_bytes()).unwrap(), NOW),
        Err(TokenError::InvalidClaims(ClaimsError::InvalidJson { .. }))
    ));
}

#[test]
fn oversized_tokens_fail_before_decoding() {
    let v = verifier_for(&[signing_key(KeyAlgorithm::Rsa)]);
    let mib = 1 << 20;
    // A 1 MiB token that looks well formed (valid base64url segments).
    let huge = format!(
        "{}.{}.{}",
        encode_json(&json!({"alg": "RS256"})),
        "A".repeat(mib),
        "A".repeat(16)
    );
    assert_eq!(
        v.verify(&huge, NOW),
        Err(TokenError::TooLarge {
            len: huge.len(),
            max: MAX_TOKEN_LEN
        })
    );
    let junk = "x".repeat(mib);
    assert_eq!(
        v.verify(&junk, NOW),
        Err(TokenError::TooLarge {
            len: mib,
            max: MAX_TOKEN_LEN
        })
    );
    // Exactly at the limit it is decoded (and fails for other reasons).
    let at_limit = "x".repeat(MAX_TOKEN_LEN);
    assert!(matches!(
        v.verify(&at_limit, NOW),
        Err(TokenError::Malformed { .. })
    ));

    // Signing refuses to produce what no verifier would accept.
    let mut claims = sample_claims();
    claims.resource_names = Some(vec!["n".repeat(MAX_TOKEN_LEN)]);
    assert!(matches!(
        sign(signing_key(KeyAlgorithm::Ed25519), &claims),
        Err(SignError::TooLarge { .. })
    ));
}

#[test]
fn malformed_tokens() {
    let key = signing_key(KeyAlgorithm::Ed25519);
    let v = verifier_for(&[key]);
    let good = sign(key, &sample_claims()).unwrap();
    let (h, p, s) = segments(&good);
    let header = |value: Value| format!("{}.{p}.{s}", encode_json(&value));
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "expected three dot-separated segments"),
        ("abc".into(), "expected three dot-separated segments"),
        (format!("{h}.{p}"), "expected three dot-separated segments"),
        (
            format!("{h}.{p}.{s}.{s}"),
            "expected three dot-separated segments",
        ),
        (
            format!("{h}.{p}.{s}.."),
            "expected three dot-separated segments",
        ),
        (format!("%%%.{p}.{s}"), "header is not base64url"),
        (format!("{h}=.{p}.{s}"), "header is not base64url"),
        (format!(" {h}.{p}.{s}"), "header is not base64url"),
        (
            format!("{}.{p}.{s}", B64.encode("not json")),
            "header is not JSON",
        ),
        (
            header(json!(["alg", "EdDSA"])),
            "header is not a JSON object",
        ),
        (header(json!({"typ": "JWT"})), "header has no string alg"),
        (header(json!({"alg": 1})), "header has no string alg"),
        (
            header(json!({"alg": "EdDSA", "kid": 5})),
            "header kid is not a string",
        ),
        (
            header(json!({"alg": "EdDSA", "typ": 5})),
            "header typ is not a string",
        ),
        (format!("{h}.{p}.{s}="), "signature is not base64url"),
        (format!("{h}.{p}.a+b/"), "signature is not base64url"),
    ];
    for (token, reason) in &cases {
        assert_eq!(
            v.verify(token, NOW),
            Err(TokenError::Malformed { reason }),
            "{token:?}"
        );
    }
    // A payload that is not base64url, under a valid signature: refused after the signature check.
    let signing_input = format!("{h}.!!!!");
    let enc =
        jsonwebtoken::EncodingKey::from_ed_pem(key.private_key_pem().unwrap().as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &enc,
        jsonwebtoken::Algorithm::EdDSA,
    )
    .unwrap();
    assert_eq!(
        v.verify(&format!("{signing_input}.{sig}"), NOW),
        Err(TokenError::Malformed {
            reason: "payload is not base64url"
        })
    );

    assert_eq!(
        v.verify(&header(json!({"alg": "EdDSA", "crit": ["b64"]})), NOW),
        Err(TokenError::CriticalHeader)
    );
    assert_eq!(
        v.verify(&header(json!({"alg": "EdDSA", "typ": "at+jwt"})), NOW),
        Err(TokenError::UnexpectedType {
            typ: "at+jwt".into()
        })
    );
    // typ is case-insensitive, and may be absent; kid may be null (treated as absent).
    let key_only = verifier_for(&[key]);
    for hdr in [
        json!({"alg": "EdDSA", "typ": "jwt"}),
        json!({"alg": "EdDSA"}),
        json!({"alg": "EdDSA", "kid": null}),
    ] {
        // Not signed for this header, so the signature fails; but the header itself is accepted.
        assert_eq!(
            key_only.verify(&header(hdr), NOW),
            Err(TokenError::BadSignature)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Key rotation and interoperability

#[test]
fn several_keys_are_selected_by_kid_or_tried_in_turn() {
    let old = upstream_rsa();
    let new = signing_key(KeyAlgorithm::EcdsaP256);
    let ed = signing_key(KeyAlgorithm::Ed25519);
    let v = Verifier::new([
        old.public_key().clone(),
        new.public_key().clone(),
        ed.public_key().clone(),
        old.public_key().clone(),
    ]);
    assert_eq!(v.keys().len(), 3, "duplicates dropped");

    // A Gen B token (no kid) is tried against every RSA key.
    let genb = v
        .verify(&testdata_str("upstream-go/token-vnc.jwt"), NOW)
        .unwrap();
    assert_eq!(genb.kid, old.kid());
    // Tokens with a kid go straight to their key.
    for key in [old, new, ed] {
        assert_eq!(
            v.verify(&sign(key, &sample_claims()).unwrap(), NOW)
                .unwrap()
                .kid,
            key.kid()
        );
    }
    // Two RSA keys, token without kid signed by the second one.
    let rsa2 = common::generated(KeyAlgorithm::Rsa);
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let enc = jsonwebtoken::EncodingKey::from_rsa_pem(rsa2.private_key_pem().unwrap().as_bytes())
        .unwrap();
    let token = jsonwebtoken::encode(&header, &sample_claims(), &enc).unwrap();
    let both = Verifier::new([old.public_key().clone(), rsa2.public_key().clone()]);
    assert_eq!(both.verify(&token, NOW).unwrap().kid, rsa2.kid());
    assert_eq!(
        Verifier::new([old.public_key().clone()]).verify(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn interoperates_with_an_independent_jwt_library() {
    for alg in KeyAlgorithm::ALL {
        let key = signing_key(alg);
        let private_pem = key.private_key_pem().unwrap();
        let public_pem = key.public_key().to_pem();
        let (jalg, enc, dec) = match alg {
            KeyAlgorithm::Rsa => (
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
                jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap(),
            ),
            KeyAlgorithm::EcdsaP256 => (
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
                jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap(),
            ),
            KeyAlgorithm::Ed25519 => (
                jsonwebtoken::Algorithm::EdDSA,
                jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
                jsonwebtoken::DecodingKey::from_ed_pem(public_pem.as_bytes()).unwrap(),
            ),
        };
        // Ours, read by them.
        let ours = sign(key, &sample_claims()).unwrap();
        let data = jsonwebtoken::decode::<Value>(&ours, &dec, &jsonwebtoken::Validation::new(jalg))
            .unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
        assert_eq!(data.claims, sample_claims().to_json());
        // Theirs, read by us.
        let mut header = jsonwebtoken::Header::new(jalg);
        header.kid = Some(key.kid().to_owned());
        let theirs = jsonwebtoken::encode(&header, &sample_claims(), &enc).unwrap();
        assert_eq!(
            verifier_for(&[key]).verify(&theirs, NOW).unwrap().claims,
            sample_claims(),
            "{alg}"
        );
    }
}

#[test]
fn shared_types_are_send_and_sync() {
    // The gateway shares one Verifier (and the operator one KeyPair) across tasks.
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<KeyPair>();
    assert_send_sync::<PublicKey>();
    assert_send_sync::<Claims>();
    assert_send_sync::<TokenError>();
    assert_send_sync::<virt_gateway_auth::request::RequestInfo>();
    assert_send_sync::<Denied>();
}

/// `consoleRole` is optional and omitted when unset (tokens without it keep their exact wire
/// form), round-trips when set, and must be a string.
#[test]
fn console_role_claim_is_optional_and_typed() {
    let mut c = Claims::new(4_102_444_800);
    assert!(c.to_json().get("consoleRole").is_none());
    c.console_role = Some("observe".into());
    assert_eq!(c.to_json()["consoleRole"], "observe");
    assert_eq!(Claims::from_json(&c.to_json()).unwrap(), c);
    let mut bad = c.to_json();
    bad["consoleRole"] = json!(1);
    assert!(Claims::from_json(&bad).is_err());
}
