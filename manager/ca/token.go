package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	tokenPrefix  = "SHOAL-"
	tokenVersion = 1
	digestLen    = 52 // base32 of 32 bytes, no padding
	secretLen    = 26 // base32 of 16 bytes, no padding
)

// ErrNotJoinToken is returned by ParseJoinToken for strings that are not shoal join tokens.
var ErrNotJoinToken = errors.New("ca: not a shoal join token (want SHOAL-1-<ca digest>-<secret>)")

// JoinToken is a parsed "SHOAL-<version>-<CA digest>-<secret>" token.
type JoinToken struct {
	Version  int
	CADigest string
	Secret   string
}

// String formats the token.
func (t JoinToken) String() string {
	return fmt.Sprintf("%s%d-%s-%s", tokenPrefix, t.Version, t.CADigest, t.Secret)
}

// NewJoinToken makes a token pinning the CA with the given Digest and carrying a fresh
// 128-bit secret.
func NewJoinToken(caDigest string) (string, error) {
	if err := checkB32("CA digest", caDigest, digestLen); err != nil {
		return "", err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ca: token secret: %w", err)
	}
	secret := strings.ToLower(b32.EncodeToString(b[:]))
	return JoinToken{Version: tokenVersion, CADigest: caDigest, Secret: secret}.String(), nil
}

// ParseJoinToken parses and checks the shape of a join token. It does not check the secret
// against the cluster's current tokens: use TokenMatches for that.
func ParseJoinToken(s string) (JoinToken, error) {
	if !strings.HasPrefix(s, tokenPrefix) {
		return JoinToken{}, ErrNotJoinToken
	}
	parts := strings.Split(s[len(tokenPrefix):], "-")
	v, err := strconv.Atoi(parts[0])
	if err != nil || parts[0] != strconv.Itoa(v) {
		return JoinToken{}, fmt.Errorf("ca: join token: malformed version %q", parts[0])
	}
	if v != tokenVersion {
		return JoinToken{}, fmt.Errorf("ca: join token: unsupported version %d (want %d)", v, tokenVersion)
	}
	if len(parts) != 3 {
		return JoinToken{}, fmt.Errorf("ca: join token: got %d dash-separated fields, want 4 (SHOAL-1-<ca digest>-<secret>)", len(parts)+1)
	}
	if err := checkB32("CA digest", parts[1], digestLen); err != nil {
		return JoinToken{}, err
	}
	if err := checkB32("secret", parts[2], secretLen); err != nil {
		return JoinToken{}, err
	}
	return JoinToken{Version: v, CADigest: parts[1], Secret: parts[2]}, nil
}

// checkB32 checks that s is n characters of lowercase base32 (a-z, 2-7).
func checkB32(what, s string, n int) error {
	if len(s) != n {
		return fmt.Errorf("ca: join token: malformed %s: got %d characters, want %d", what, len(s), n)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return fmt.Errorf("ca: join token: malformed %s: character %q at %d is not lowercase base32", what, c, i)
		}
	}
	return nil
}

// TokenMatches compares a presented token with the current one in constant time (hashing
// first, so not even the length leaks). An empty current token matches nothing.
func TokenMatches(presented, current string) bool {
	if current == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256([]byte(current))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
