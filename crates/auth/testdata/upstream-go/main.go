// Command upstream-go writes test fixtures for the Rust auth crate, produced with the same Go code
// paths as the upstream Gen B operator (virt-gateway-operator @ d6d6a84, dgrijalva/jwt-go v3.2.0):
//
//   - key.pem:  a fresh RSA-4096 private key, PKCS#1 DER, PEM label "RSA PRIVATE KEY";
//   - cert.pem: its public key, PKIX SubjectPublicKeyInfo DER, PEM label "CERTIFICATE" (the upstream's
//     mislabelling, kept on purpose);
//   - token-*.jwt: tokens signed with jwt-go from a jwt.MapClaims built like the operator's, so keys
//     are serialised sorted and unset lists are JSON null;
//   - the two forgeries the Gen B proxy accepted: alg "none", and HS256 keyed with cert.pem's bytes.
//
// Run it once from this directory with `go run .`; the outputs are committed. Re-running replaces
// the key, so the Rust tests that read these files must be re-run (they check claims, not bytes).
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log"
	"os"

	jwt "github.com/dgrijalva/jwt-go"
)

// Times are fixed so the fixtures are stable: nbf 2023-11-14T22:13:20Z, exp 2100-01-01T00:00:00Z.
const (
	nbf        int64 = 1700000000
	expFar     int64 = 4102444800
	expiredNbf int64 = 1600000000
	expiredExp int64 = 1600003600
)

// claims mirrors the operator's map: the status.data copies of the GateToken spec. A nil []string
// becomes JSON null, as in the operator.
func claims(nbf, exp int64, namespace string, verbs, apiGroups, resources, resourceNames, nonResourceURLs []string) jwt.MapClaims {
	return jwt.MapClaims{
		"exp":             exp,
		"nbf":             nbf,
		"namespace":       namespace,
		"verbs":           verbs,
		"apiGroups":       apiGroups,
		"resources":       resources,
		"resourceNames":   resourceNames,
		"nonResourceURLs": nonResourceURLs,
	}
}

func write(name string, data []byte) {
	if err := os.WriteFile(name, data, 0o644); err != nil {
		log.Fatalf("write %s: %v", name, err)
	}
}

func sign(method jwt.SigningMethod, c jwt.MapClaims, key interface{}) string {
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		log.Fatalf("sign: %v", err)
	}
	return s
}

func main() {
	// The operator's key generation (controllers/gateserver_controller.go).
	key, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		log.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		log.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pubDER})
	write("key.pem", keyPEM)
	write("cert.pem", certPEM)

	// The operator's signing path (controllers/gatetoken_controller.go): read key.pem back, RS256.
	signingKey, err := jwt.ParseRSAPrivateKeyFromPEM(keyPEM)
	if err != nil {
		log.Fatal(err)
	}
	vnc := claims(nbf, expFar, "default",
		[]string{"get"},
		[]string{"subresources.kubevirt.io"},
		[]string{"virtualmachineinstances", "virtualmachineinstances/vnc"},
		[]string{"testvm"},
		nil)
	write("token-vnc.jwt", []byte(sign(jwt.SigningMethodRS256, vnc, signingKey)))

	expired := claims(expiredNbf, expiredExp, "default",
		[]string{"get"},
		[]string{"subresources.kubevirt.io"},
		[]string{"virtualmachineinstances", "virtualmachineinstances/vnc"},
		[]string{"testvm"},
		nil)
	write("token-expired.jwt", []byte(sign(jwt.SigningMethodRS256, expired, signingKey)))

	// Every list unset (null) and a namespace of "*": exercises the decoding defaults.
	nulls := claims(nbf, expFar, "*", nil, nil, nil, nil, nil)
	write("token-nulls.jwt", []byte(sign(jwt.SigningMethodRS256, nulls, signingKey)))

	// The algorithm-confusion forgery the Gen B proxy accepted: HS256 keyed with the public key file.
	forged := claims(nbf, expFar, "*", []string{"*"}, []string{"*"}, []string{"*"}, nil, []string{"*"})
	write("token-hs256-forged.jwt", []byte(sign(jwt.SigningMethodHS256, forged, certPEM)))

	// An unsigned token.
	write("token-none.jwt", []byte(sign(jwt.SigningMethodNone, forged, jwt.UnsafeAllowNoneSignatureType)))

	log.Printf("wrote key.pem, cert.pem and 5 tokens")
}
