#!/usr/bin/env bash
# Regenerates the OpenSSL-made key fixtures used by tests/keys.rs, fuzz/ and benches/.
# Run once from this directory; the outputs are committed. Needs OpenSSL 3.
set -euo pipefail
cd "$(dirname "$0")"
openssl version

# RSA-2048: a real self-signed X.509 certificate (`openssl req -x509`) and its key, which OpenSSL 3
# writes as PKCS#8 "PRIVATE KEY"; the same key as PKCS#1, and its public key as PKCS#1 and SPKI.
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 36500 -subj "/CN=virt-gateway test" \
  -keyout rsa2048-pkcs8.pem -out rsa2048-cert.pem 2>/dev/null
openssl rsa -in rsa2048-pkcs8.pem -traditional -out rsa2048-pkcs1.pem 2>/dev/null
openssl rsa -in rsa2048-pkcs8.pem -RSAPublicKey_out -out rsa2048-pub-pkcs1.pem 2>/dev/null
openssl rsa -in rsa2048-pkcs8.pem -pubout -out rsa2048-pub-spki.pem 2>/dev/null

# ECDSA P-256: SEC1 with its EC PARAMETERS block (what `openssl ecparam -genkey` writes), PKCS#8,
# SPKI public key, and a self-signed certificate.
openssl ecparam -name prime256v1 -genkey -out p256-sec1.pem
openssl pkcs8 -topk8 -nocrypt -in p256-sec1.pem -out p256-pkcs8.pem
openssl ec -in p256-sec1.pem -pubout -out p256-pub.pem 2>/dev/null
openssl req -x509 -new -key p256-pkcs8.pem -sha256 -days 36500 -subj "/CN=virt-gateway test" -out p256-cert.pem

# Ed25519: PKCS#8 v1 (what `openssl genpkey` writes) and SPKI public key.
openssl genpkey -algorithm ED25519 -out ed25519-pkcs8.pem
openssl pkey -in ed25519-pkcs8.pem -pubout -out ed25519-pub.pem

# Refused inputs: a P-384 key, a 1024-bit RSA key, an encrypted PKCS#8 key.
openssl ecparam -name secp384r1 -genkey -noout -out p384-sec1.pem
openssl ec -in p384-sec1.pem -pubout -out p384-pub.pem 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024-pkcs8.pem 2>/dev/null
openssl rsa -in rsa1024-pkcs8.pem -pubout -out rsa1024-pub.pem 2>/dev/null
openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:secret -in p256-pkcs8.pem -out p256-encrypted.pem
