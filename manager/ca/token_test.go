package ca

import (
	"errors"
	"strings"
	"testing"
)

var (
	goodDigest = strings.Repeat("a", 50) + "27"
	goodSecret = strings.Repeat("b", 24) + "7q"
	goodToken  = "SHOAL-1-" + goodDigest + "-" + goodSecret
)

func TestParseJoinToken(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; empty means success
	}{
		{"good", goodToken, ""},
		{"empty", "", "not a shoal join token"},
		{"wrong prefix", "SWMTKN-1-" + goodDigest + "-" + goodSecret, "not a shoal join token"},
		{"lowercase prefix", strings.ToLower(goodToken[:6]) + goodToken[6:], "not a shoal join token"},
		{"wrong version", "SHOAL-2-" + goodDigest + "-" + goodSecret, "unsupported version 2"},
		{"non-numeric version", "SHOAL-x-" + goodDigest + "-" + goodSecret, "malformed version"},
		{"padded version", "SHOAL-01-" + goodDigest + "-" + goodSecret, "malformed version"},
		{"prefix only", "SHOAL-", "malformed version"},
		{"missing secret", "SHOAL-1-" + goodDigest, "want 4"},
		{"extra dashes", goodToken + "-x", "want 4"},
		{"dash in digest", "SHOAL-1-" + goodDigest[:10] + "-" + goodDigest[10:] + "-" + goodSecret, "want 4"},
		{"short digest", "SHOAL-1-" + goodDigest[1:] + "-" + goodSecret, "malformed CA digest"},
		{"long digest", "SHOAL-1-" + goodDigest + "a-" + goodSecret, "malformed CA digest"},
		{"uppercase digest", "SHOAL-1-" + strings.ToUpper(goodDigest) + "-" + goodSecret, "malformed CA digest"},
		{"digest with 1", "SHOAL-1-1" + goodDigest[1:] + "-" + goodSecret, "malformed CA digest"},
		{"short secret", "SHOAL-1-" + goodDigest + "-" + goodSecret[1:], "malformed secret"},
		{"secret with 8", "SHOAL-1-" + goodDigest + "-8" + goodSecret[1:], "malformed secret"},
		{"empty secret", "SHOAL-1-" + goodDigest + "-", "malformed secret"},
		{"trailing newline", goodToken + "\n", "malformed secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseJoinToken(tt.in)
			if tt.wantErr == "" {
				want := JoinToken{Version: 1, CADigest: goodDigest, Secret: goodSecret}
				if err != nil || tok != want {
					t.Fatalf("got %+v, %v, want %+v", tok, err, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := ParseJoinToken("nope"); !errors.Is(err, ErrNotJoinToken) {
		t.Errorf("got %v, want %v", err, ErrNotJoinToken)
	}
}

func TestNewJoinToken(t *testing.T) {
	root := newRoot(t, "c1", t0)
	digest := Digest(root.Cert)
	a, err := NewJoinToken(digest)
	if err != nil {
		t.Fatalf("NewJoinToken: %v", err)
	}
	tok, err := ParseJoinToken(a)
	if err != nil {
		t.Fatalf("ParseJoinToken(%q): %v", a, err)
	}
	if tok.CADigest != digest || len(tok.Secret) != secretLen || tok.String() != a {
		t.Errorf("got %+v, want digest %s and a %d-character secret", tok, digest, secretLen)
	}
	b, _ := NewJoinToken(digest)
	if a == b {
		t.Errorf("two tokens are equal: %s", a)
	}
	if _, err := NewJoinToken("ABC"); err == nil {
		t.Errorf("NewJoinToken with a bad digest: got nil error")
	}
}

func TestTokenMatches(t *testing.T) {
	tests := []struct {
		presented, current string
		want               bool
	}{
		{goodToken, goodToken, true},
		{goodToken[:len(goodToken)-1] + "a", goodToken, false},
		{goodToken[:10], goodToken, false},
		{"", goodToken, false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := TokenMatches(tt.presented, tt.current); got != tt.want {
			t.Errorf("TokenMatches(%q, %q): got %v, want %v", tt.presented, tt.current, got, tt.want)
		}
	}
}

func FuzzParseJoinToken(f *testing.F) {
	for _, s := range []string{goodToken, "", "SHOAL-", "SHOAL-1-", "SHOAL-1--", "SHOAL-2-a-b", "SHOAL-99999999999999999999-x", goodToken + "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			return
		}
		if tok.String() != s {
			t.Fatalf("String() = %q, want %q", tok.String(), s)
		}
		again, err := ParseJoinToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("round trip: got %+v, %v, want %+v", again, err, tok)
		}
	})
}
