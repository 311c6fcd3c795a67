//! Verifies arbitrary bytes as a token against a fixed key set (RSA-4096 from the Gen B generator,
//! P-256, Ed25519). Three shapes of input, chosen by the first byte, so that the fuzzer also gets past
//! the signature check:
//! * raw: the bytes are the token;
//! * signed: the bytes are a payload, signed with the fixture Ed25519 key, so claim decoding, the
//!   time checks (any `exp`, `nbf`, `iat`, up to `u64::MAX`) and the audience policy see arbitrary
//!   JSON; an accepted token is then authorized against a few requests, and the instant its session
//!   ends is computed as the gateway computes it;
//! * assembled: the bytes are split into header and payload JSON and base64url-encoded, with a
//!   garbage signature, so header parsing sees arbitrary JSON;
//! * times: the bytes are `exp`, `nbf`, `iat`, the clock and the leeway themselves (each time as
//!   a JSON number of any form: any `u64`, negative, fractional, exponent, absent), so every
//!   value reaches the time checks without the fuzzer having to discover JSON; an accepted token
//!   must really be inside its window, and its session end (as the gateway computes it) must
//!   never panic and never lie before the clock.
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
    match mode % 4 {
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
        3 => times(f, rest),
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

/// Takes a `u64` from the front of `data` (zero-padded when short).
fn take_u64(data: &mut &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    u64::from_le_bytes(bytes)
}

/// One time claim as JSON, in the form chosen by `form`: absent, as is, near the edges of the
/// integer types, negative, fractional, with an exponent, or as a string.
fn time_json(name: &str, value: u64, form: u8) -> Option<String> {
    let number = match form % 8 {
        0 => return None,
        1 => value.to_string(),
        2 => (u64::MAX - (value % 4)).to_string(),
        3 => ((1u64 << 63) - 2 + (value % 4)).to_string(),
        4 => format!("-{}", value % 1_000_000),
        5 => format!("{value}.5"),
        6 => format!("{}e{}", value % 100, value % 40),
        _ => format!("\"{value}\""),
    };
    Some(format!("\"{name}\":{number}"))
}

fn times(f: &Fixture, mut data: &[u8]) {
    let exp = take_u64(&mut data);
    let nbf = take_u64(&mut data);
    let iat = take_u64(&mut data);
    let now = take_u64(&mut data);
    let forms = take_u64(&mut data).to_le_bytes();
    let leeway = Duration::from_secs(u64::from(forms[3]) * 3);
    let fields: Vec<String> = [("exp", exp, forms[0]), ("nbf", nbf, forms[1]), ("iat", iat, forms[2])]
        .into_iter()
        .filter_map(|(name, value, form)| time_json(name, value, form))
        .collect();
    let payload = format!("{{{},\"namespace\":\"default\"}}", fields.join(","));
    let Ok(token) = sign_payload(&f.signer, payload.as_bytes()) else {
        return;
    };
    let verifier = f.verifier.clone().with_leeway(leeway);
    let leeway_secs = verifier.leeway().as_secs();
    for now in [now, NOW, 0, u64::MAX] {
        let Ok(verified) = verifier.verify(&token, now) else {
            continue;
        };
        let c = &verified.claims;
        // Accepted means inside the window, with no wrap-around anywhere.
        assert!(now <= c.exp.saturating_add(leeway_secs), "accepted after exp");
        assert!(c.nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway_secs)), "accepted before nbf");
        assert!(c.iat.is_none_or(|iat| iat <= now.saturating_add(leeway_secs)), "accepted from the future");
        // The session end, as the gateway computes it: never before the clock that accepted it.
        if let Some(end) = expires_at(c.exp, verifier.leeway())
            && let Ok(since_epoch) = end.duration_since(std::time::UNIX_EPOCH)
        {
            assert!(since_epoch.as_secs() > now, "a session would end before it was accepted");
        }
    }
}
