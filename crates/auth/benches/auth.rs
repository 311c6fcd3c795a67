//! Criterion benchmarks of the auth core: verify and sign per algorithm, authorize (allow and deny),
//! request parsing, and the whole per-request decision. Run with
//! `cargo bench -p virt-gateway-auth -- --warm-up-time 1 --measurement-time 3`; figures are kept in
//! bench/auth/RESULTS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use virt_gateway_auth::authz::authorize;
use virt_gateway_auth::jwt::{Claims, Verifier, sign};
use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};
use virt_gateway_auth::request::parse;

const NOW: u64 = 1_700_000_000;
const VNC: &str =
    "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc";
const CONSOLE: &str =
    "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/console";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// RSA-4096 (the Gen B generator's key), P-256 and Ed25519 keys from committed fixtures.
fn keys() -> Vec<(&'static str, KeyPair)> {
    vec![
        (
            "RS256-4096",
            KeyPair::from_pem(&fixture("upstream-go/key.pem")).expect("rsa"),
        ),
        (
            "ES256",
            KeyPair::from_pem(&fixture("openssl/p256-pkcs8.pem")).expect("p256"),
        ),
        (
            "EdDSA",
            KeyPair::from_pem(&fixture("openssl/ed25519-pkcs8.pem")).expect("ed25519"),
        ),
    ]
}

fn sample_claims() -> Claims {
    let mut c = Claims::new(4_102_444_800);
    c.nbf = Some(NOW);
    c.namespace = "default".into();
    c.api_groups = Some(vec!["subresources.kubevirt.io".into()]);
    c.resources = Some(vec![
        "virtualmachineinstances".into(),
        "virtualmachineinstances/vnc".into(),
    ]);
    c.resource_names = Some(vec!["testvm".into()]);
    c.jti = Some("0b7c5a3e-2f59-4a5e-9d3c-6a1f0e2b4c11".into());
    c
}

fn bench_tokens(c: &mut Criterion) {
    let keys = keys();
    let claims = sample_claims();
    let mut verify = c.benchmark_group("verify");
    for (name, key) in &keys {
        let token = sign(key, &claims).expect("sign");
        let verifier = Verifier::new([key.public_key().clone()]);
        verify.bench_function(*name, |b| {
            b.iter(|| verifier.verify(black_box(&token), NOW).expect("valid"))
        });
    }
    // A Gen B token (no kid) against a verifier holding all three keys: the RSA key is found by type.
    let all = Verifier::new(keys.iter().map(|(_, k)| k.public_key().clone()));
    let genb = String::from_utf8(fixture("upstream-go/token-vnc.jwt")).expect("utf8");
    verify.bench_function("RS256-4096 Gen B token, no kid, 3 keys", |b| {
        b.iter(|| all.verify(black_box(genb.trim()), NOW).expect("valid"))
    });
    verify.finish();

    let mut signing = c.benchmark_group("sign");
    for (name, key) in &keys {
        signing.bench_function(*name, |b| {
            b.iter(|| sign(key, black_box(&claims)).expect("sign"))
        });
    }
    signing.finish();

    let mut generate = c.benchmark_group("generate");
    generate.sample_size(10);
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        generate.bench_function(alg.jws_alg(), |b| {
            b.iter(|| KeyPair::generate(alg).expect("generate"))
        });
    }
    generate.finish();
}

fn bench_authz(c: &mut Criterion) {
    let claims = sample_claims();
    let vnc = parse("GET", VNC, None).expect("parse");
    let console = parse("GET", CONSOLE, None).expect("parse");
    let mut group = c.benchmark_group("authorize");
    group.bench_function("allow (vnc)", |b| {
        b.iter(|| authorize(black_box(&claims), black_box(&vnc)))
    });
    group.bench_function("deny (console)", |b| {
        b.iter(|| authorize(black_box(&claims), black_box(&console)))
    });
    group.finish();

    let mut group = c.benchmark_group("parse");
    group.bench_function("vnc subresource", |b| {
        b.iter(|| parse("GET", black_box(VNC), None))
    });
    group.bench_function("watch with fieldSelector", |b| {
        b.iter(|| {
            parse(
                "GET",
                black_box("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances"),
                Some(black_box(
                    "watch=true&resourceVersion=12345&fieldSelector=metadata.name%3Dtestvm",
                )),
            )
        })
    });
    group.bench_function("non-resource", |b| {
        b.iter(|| parse("GET", black_box("/version"), None))
    });
    group.bench_function("percent-encoded", |b| {
        b.iter(|| {
            parse(
                "GET",
                black_box("/api/v1/namespaces/def%61ult/configmaps/a%3Ab%20c"),
                None,
            )
        })
    });
    group.finish();

    // The whole decision a gateway makes per request: verify, parse, authorize.
    let mut group = c.benchmark_group("decision");
    for (name, key) in keys() {
        let token = sign(&key, &claims).expect("sign");
        let verifier = Verifier::new([key.public_key().clone()]);
        group.bench_function(name, |b| {
            b.iter(|| {
                let verified = verifier.verify(black_box(&token), NOW).expect("valid");
                let request = parse("GET", black_box(VNC), None).expect("parse");
                authorize(&verified.claims, &request).expect("allowed")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_tokens, bench_authz);
criterion_main!(benches);
