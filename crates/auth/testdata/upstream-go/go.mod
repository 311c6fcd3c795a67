// Mints JWT fixtures exactly as the upstream Gen B operator did (virt-gateway-operator @ d6d6a84):
// dgrijalva/jwt-go v3.2.0, an RSA-4096 key, RS256. See README.md.
module github.com/virt-gateway/auth-testdata/upstream-go

go 1.22

require github.com/dgrijalva/jwt-go v3.2.0+incompatible
