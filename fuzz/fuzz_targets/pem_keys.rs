//! Reads arbitrary bytes as PEM public keys, a PEM bundle, a PEM private key, and a JWK.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_gateway_auth::keys::{KeyPair, PublicKey, public_keys_from_pem};

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = PublicKey::from_pem(data) {
        // Whatever was accepted is written canonically and reads back as the same key.
        assert_eq!(
            PublicKey::from_pem(key.to_pem().as_bytes()).as_ref(),
            Ok(&key)
        );
        assert_eq!(PublicKey::from_jwk(&key.to_jwk()).as_ref(), Ok(&key));
    }
    let _ = public_keys_from_pem(data);
    let _ = KeyPair::from_pem(data);
    if let Ok(value) = serde_json::from_slice(data) {
        let _ = PublicKey::from_jwk(&value);
    }
});
