package deks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DEKSize is the size of a data-encryption key (AES-256).
const DEKSize = 32

// unlockPrefix starts every unlock key, as Swarm's SWMKEY-1-.
const unlockPrefix = "SHLKEY-1-"

var (
	// ErrWrongKey: the unlock key does not open the key file.
	ErrWrongKey = errors.New("wrong unlock key: it does not open this manager's key file")
	// ErrLocked: the key file is wrapped and no unlock key was given.
	ErrLocked = errors.New("this manager is locked (autolock): unlock it with shoal unlock and the cluster's unlock key")
)

// NewDEK returns a random data-encryption key.
func NewDEK() []byte {
	k := make([]byte, DEKSize)
	_, _ = rand.Read(k) // crypto/rand does not fail
	return k
}

// NewUnlockKey returns a random unlock key, as an operator types it.
func NewUnlockKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return unlockPrefix + base64.RawURLEncoding.EncodeToString(k)
}

// parseUnlockKey returns the key's bytes.
func parseUnlockKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, unlockPrefix) {
		return nil, fmt.Errorf("unlock key: want %s... as shoal unlock-key prints it", unlockPrefix)
	}
	k, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, unlockPrefix))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("unlock key: want %s followed by 43 base64 characters", unlockPrefix)
	}
	return k, nil
}

// kek derives the key-encryption key from an unlock key. The unlock key is
// 256 random bits, so a KDF for passwords (scrypt) would add nothing.
func kek(unlockKey string) (cipher.AEAD, error) {
	raw, err := parseUnlockKey(unlockKey)
	if err != nil {
		return nil, err
	}
	k, err := hkdf.Key(sha256.New, raw, nil, "shoal raft dek wrapping", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// file is the key file on disk: the DEK in the clear (no autolock) or
// wrapped with the unlock key.
type file struct {
	Version int    `json:"version"`
	DEK     []byte `json:"dek,omitempty"`
	Wrapped []byte `json:"wrapped,omitempty"`
}

// KeyFile is a manager's DEK file, root only (0600 in a 0700 directory),
// outside the raft directory.
type KeyFile struct{ Path string }

// Exists reports whether the key file exists.
func (k KeyFile) Exists() bool {
	_, err := os.Stat(k.Path)
	return err == nil
}

// Locked reports whether the key file is wrapped by an unlock key.
func (k KeyFile) Locked() (bool, error) {
	f, err := k.read()
	if err != nil {
		return false, err
	}
	return f != nil && f.Wrapped != nil, nil
}

func (k KeyFile) read() (*file, error) {
	b, err := os.ReadFile(k.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil || (f.DEK == nil) == (f.Wrapped == nil) {
		return nil, fmt.Errorf("key file %s is damaged", k.Path)
	}
	return &f, nil
}

// Load returns the DEK; unlockKey opens a wrapped file (ErrLocked without
// one, ErrWrongKey with a wrong one). A missing file is nil, nil.
func (k KeyFile) Load(unlockKey string) ([]byte, error) {
	f, err := k.read()
	if err != nil || f == nil {
		return nil, err
	}
	if f.DEK != nil {
		if len(f.DEK) != DEKSize {
			return nil, fmt.Errorf("key file %s is damaged", k.Path)
		}
		return f.DEK, nil
	}
	if unlockKey == "" {
		return nil, ErrLocked
	}
	aead, err := kek(unlockKey)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(f.Wrapped) < ns {
		return nil, fmt.Errorf("key file %s is damaged", k.Path)
	}
	dek, err := aead.Open(nil, f.Wrapped[:ns], f.Wrapped[ns:], []byte(unlockPrefix))
	if err != nil {
		return nil, ErrWrongKey
	}
	return dek, nil
}

// Save writes dek, wrapped with unlockKey unless it is empty, replacing the
// file atomically.
func (k KeyFile) Save(dek []byte, unlockKey string) error {
	f := file{Version: 1}
	if unlockKey == "" {
		f.DEK = dek
	} else {
		aead, err := kek(unlockKey)
		if err != nil {
			return err
		}
		nonce := make([]byte, aead.NonceSize())
		_, _ = rand.Read(nonce)
		f.Wrapped = aead.Seal(nonce, nonce, dek, []byte(unlockPrefix))
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	tmp := k.Path + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if _, err := out.Write(b); err != nil {
		out.Close()
		return fmt.Errorf("key file: %w", err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("key file: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if err := os.Rename(tmp, k.Path); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	return nil
}

// ValidUnlockKey checks the form of an unlock key.
func ValidUnlockKey(s string) error {
	_, err := parseUnlockKey(s)
	return err
}
