//! Verifies arbitrary bytes as a token against a fixed key set (RSA-4096 from the Gen B generator,
//! P-256, Ed25519). Three shapes of input, chosen by the first byte, so that the fuzzer also gets past
//! the signature check:
//! * raw: the bytes are the token;
//! * signed: the bytes are a payload, signed with the fixture Ed25519 key, so claim decoding, the
//!   time checks (any `exp`, `nbf`, `iat`, up to `u64::MAX`) and the audience policy see arbitrary
//!   JSON; an accepted token is then authorized against a few requests, and the instant its session
//!   ends is computed as the gateway computes it;
//! * assembled: the bytes are split into header and payload JSON and base64url-encoded, with a
//!   garbage signature, so header parsing sees arbitrary JSON.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use virt_gateway_auth::authz::authorize;
use std::time::Duration;

use virt_gateway_auth::jwt::{AudiencePolicy, MAX_LEEWAY, Verifier, expires_at, sign_payload};
use virt_gateway_auth::keys::{KeyPair, PublicKey};
use virt_gateway_auth::request::parse;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/auth/testdata");
const NOW: u64 = 1_700_000_000;

struct Fixture {
    verifier: Verifier,
    bound: Verifier,
    signer: KeyPair,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let read = |p: &str| std::fs::read(format!("{TESTDATA}/{p}")).expect("fixture");
        let signer = KeyPair::from_pem(&read("openssl/ed25519-pkcs8.pem")).expect("ed25519 key");
        let keys = [
            PublicKey::from_pem(&read("upstream-go/cert.pem")).expect("rsa"),
            PublicKey::from_pem(&read("openssl/p256-pub.pem")).expect("p256"),
            signer.public_key().clone(),
        ];
        let verifier = Verifier::new(keys);
        let bound = verifier.clone().with_audience(AudiencePolicy {
            audience: Some("ocgate.yaacov.com/namespaces/gw/gateservers/a".into()),
            issuer: Some("ocgate.yaacov.com/namespaces/gw".into()),
            required: true,
        });
        Fixture {
            verifier,
            bound,
            signer,
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            let _ = f.verifier.verify(&token, NOW);
        }
        1 => {
            let Ok(token) = sign_payload(&f.signer, rest) else {
                return;
            };
            let _ = f.bound.verify(&token, NOW);
            let _ = f.bound.verify(&token, u64::MAX);
            if let Ok(verified) = f.verifier.verify(&token, NOW) {
                let claims = &verified.claims;
                for leeway in [Duration::ZERO, MAX_LEEWAY] {
                    let _ = expires_at(claims.exp, leeway);
                    let _ = claims.nbf.map(|nbf| expires_at(nbf, leeway));
                    let _ = claims.iat.map(|iat| expires_at(iat, leeway));
                }
                for (method, path, query) in [
                    (
                        "GET",
                        "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc",
                        None,
                    ),
                    ("GET", "/api/v1/namespaces/default/pods", Some("watch=1")),
                    ("GET", "/version", None),
                    ("DELETE", "/api/v1/nodes", None),
                ] {
                    let request = parse(method, path, query).expect("fixed request parses");
                    let _ = authorize(&verified.claims, &request);
                }
            }
        }
        _ => {
            let (header, payload) = match rest.iter().position(|b| *b == 0xff) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{\"exp\":4102444800}"[..]),
            };
            let token = format!("{}.{}.{}", b64(header), b64(payload), b64(&[0u8; 64]));
            let _ = f.verifier.verify(&token, NOW);
        }
    }
});
