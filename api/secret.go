package api

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
)

// MaxSecretBytes is the most data a secret or config holds, as Swarm's 500 KB.
const MaxSecretBytes = 500 * 1024

// SecretsDir is where a task finds a secret whose target is not an absolute path.
const SecretsDir = "/run/secrets"

// Secret is sensitive data a service's tasks get as a file: kept encrypted
// on managers, sent only to nodes that run a task that references it, held
// in memory (tmpfs) there. Data is immutable; rotate by creating another.
type Secret struct {
	ID   string     `json:"id"`
	Meta Meta       `json:"meta"`
	Spec SecretSpec `json:"spec"`
}

// SecretSpec is what a user gives; the API never answers with Data.
type SecretSpec struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Data   []byte            `json:"data,omitempty"`
}

// Config is a file a service's tasks get, like a Secret but not secret:
// inspect shows its data.
type Config struct {
	ID   string     `json:"id"`
	Meta Meta       `json:"meta"`
	Spec ConfigSpec `json:"spec"`
}

// ConfigSpec is what a user gives.
type ConfigSpec struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Data   []byte            `json:"data,omitempty"`
}

// SecretReference puts a secret into a task's filesystem. The API takes a
// Name (or ID) and stores both; Target is the file name under /run/secrets
// (default the secret's name) or an absolute path; UID and GID default to
// "0", Mode to 0444.
type SecretReference struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Target string `json:"target"`
	UID    string `json:"uid"`
	GID    string `json:"gid"`
	Mode   uint32 `json:"mode"`
}

// ConfigReference puts a config into a task's filesystem at Target, an
// absolute path (default /NAME); otherwise as SecretReference.
type ConfigReference struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Target string `json:"target"`
	UID    string `json:"uid"`
	GID    string `json:"gid"`
	Mode   uint32 `json:"mode"`
}

// DefaultFileMode is a secret's or config's mode when the reference names none.
const DefaultFileMode = 0o444

var secretName = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9])?$`)

// ValidateSecretName checks a secret or config name as Swarm does: 1-64
// letters, digits, '-', '_' or '.', starting and ending with a letter or digit.
func ValidateSecretName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name: empty", kind)
	}
	if !secretName.MatchString(name) {
		return fmt.Errorf("%s name %q: want 1-64 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// ValidateSecretData checks the size of a secret's or config's data.
func ValidateSecretData(kind, name string, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%s %s: no data", kind, name)
	}
	if len(data) > MaxSecretBytes {
		return fmt.Errorf("%s %s: %d bytes of data, at most %d (500 KB)", kind, name, len(data), MaxSecretBytes)
	}
	return nil
}

// Path is where a secret reference's file is in the task.
func (r SecretReference) Path() string {
	if path.IsAbs(r.Target) {
		return r.Target
	}
	return path.Join(SecretsDir, r.Target)
}

// Path is where a config reference's file is in the task.
func (r ConfigReference) Path() string {
	if path.IsAbs(r.Target) {
		return r.Target
	}
	return "/" + r.Target
}

// ValidateTarget checks a reference's target: a clean path with no "..".
func ValidateTarget(kind, name, target string) error {
	if target == "" {
		return fmt.Errorf("%s %s: empty target", kind, name)
	}
	if strings.ContainsRune(target, 0) || path.Clean(target) != target || slices.Contains(strings.Split(target, "/"), "..") {
		return fmt.Errorf("%s %s: target %q: want a clean path with no .. in it", kind, name, target)
	}
	if target == "/" || target == SecretsDir {
		return fmt.Errorf("%s %s: target %q: want a file, not a directory", kind, name, target)
	}
	return nil
}

// Clone returns a deep copy of s.
func (s *Secret) Clone() *Secret {
	if s == nil {
		return nil
	}
	c := *s
	c.Spec.Labels = maps.Clone(s.Spec.Labels)
	c.Spec.Data = cloneSlice(s.Spec.Data)
	return &c
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	o := *c
	o.Spec.Labels = maps.Clone(c.Spec.Labels)
	o.Spec.Data = cloneSlice(c.Spec.Data)
	return &o
}

// Redacted is s without its data, as the API shows secrets.
func (s *Secret) Redacted() *Secret {
	c := *s
	c.Spec.Data = nil
	return &c
}

func (c *Client) CreateSecret(ctx context.Context, spec SecretSpec) (Secret, error) {
	var out Secret
	return out, c.do(ctx, http.MethodPost, "/v1/secrets", spec, &out)
}

func (c *Client) Secrets(ctx context.Context) ([]Secret, error) {
	var out []Secret
	return out, c.do(ctx, http.MethodGet, "/v1/secrets", nil, &out)
}

// Secret finds a secret by ID, unique ID prefix or name; never with its data.
func (c *Client) Secret(ctx context.Context, ref string) (Secret, error) {
	var out Secret
	return out, c.do(ctx, http.MethodGet, "/v1/secrets/"+url.PathEscape(ref), nil, &out)
}

func (c *Client) RemoveSecret(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/secrets/"+url.PathEscape(ref), nil, nil)
}

func (c *Client) CreateConfig(ctx context.Context, spec ConfigSpec) (Config, error) {
	var out Config
	return out, c.do(ctx, http.MethodPost, "/v1/configs", spec, &out)
}

func (c *Client) Configs(ctx context.Context) ([]Config, error) {
	var out []Config
	return out, c.do(ctx, http.MethodGet, "/v1/configs", nil, &out)
}

// Config finds a config by ID, unique ID prefix or name, with its data.
func (c *Client) Config(ctx context.Context, ref string) (Config, error) {
	var out Config
	return out, c.do(ctx, http.MethodGet, "/v1/configs/"+url.PathEscape(ref), nil, &out)
}

func (c *Client) RemoveConfig(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/configs/"+url.PathEscape(ref), nil, nil)
}

// UnlockKey is the cluster's unlock key (autolock).
type UnlockKey struct {
	Key string `json:"key"`
}

// UnlockKey returns the cluster's unlock key; an error when autolock is off.
func (c *Client) UnlockKey(ctx context.Context) (UnlockKey, error) {
	var out UnlockKey
	return out, c.do(ctx, http.MethodGet, "/v1/unlock-key", nil, &out)
}

// RotateUnlockKey replaces the unlock key; every manager rewraps its key file.
func (c *Client) RotateUnlockKey(ctx context.Context) (UnlockKey, error) {
	var out UnlockKey
	return out, c.do(ctx, http.MethodPost, "/v1/unlock-key/rotate", nil, &out)
}

// Unlock gives a locked manager (on its unix socket) the unlock key.
func (c *Client) Unlock(ctx context.Context, key string) error {
	return c.do(ctx, http.MethodPost, "/v1/unlock", UnlockKey{Key: key}, nil)
}
