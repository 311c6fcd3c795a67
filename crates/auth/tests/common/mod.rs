//! Fixtures shared by the integration tests. Key generation for RSA-4096 is slow, so the RSA key is the
//! committed one the Go generator made (and one generated key per test binary where generation itself
//! is under test).
#![allow(dead_code)]

use std::sync::OnceLock;

use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};

/// Reads a file under `testdata/`.
pub fn testdata(path: &str) -> Vec<u8> {
    let full = format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
}

/// Reads a text file under `testdata/`, trimmed (tokens are written without a newline, but be safe).
pub fn testdata_str(path: &str) -> String {
    String::from_utf8(testdata(path))
        .expect("UTF-8 fixture")
        .trim()
        .to_owned()
}

/// The RSA-4096 key the Go generator made, as the Gen B operator would (PKCS#1).
pub fn upstream_rsa() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        KeyPair::from_pem(&testdata("upstream-go/key.pem")).expect("upstream key.pem")
    })
}

/// A generated key of each algorithm, made once per test binary (RSA-4096 generation is slow).
pub fn generated(alg: KeyAlgorithm) -> &'static KeyPair {
    static RSA: OnceLock<KeyPair> = OnceLock::new();
    static EC: OnceLock<KeyPair> = OnceLock::new();
    static ED: OnceLock<KeyPair> = OnceLock::new();
    let cell = match alg {
        KeyAlgorithm::Rsa => &RSA,
        KeyAlgorithm::EcdsaP256 => &EC,
        KeyAlgorithm::Ed25519 => &ED,
    };
    cell.get_or_init(|| KeyPair::generate(alg).expect("key generation"))
}

/// A key of each algorithm for token tests: the committed RSA key (fast) and generated EC/Ed keys.
pub fn signing_key(alg: KeyAlgorithm) -> &'static KeyPair {
    match alg {
        KeyAlgorithm::Rsa => upstream_rsa(),
        other => generated(other),
    }
}

/// 2023-11-14T22:13:20Z, inside every fixture's validity window.
pub const NOW: u64 = 1_700_000_000;
/// 2100-01-01T00:00:00Z.
pub const FAR_FUTURE: u64 = 4_102_444_800;
