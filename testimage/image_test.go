package testimage_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/testimage"
)

func build(t *testing.T) *testimage.Image {
	t.Helper()
	testenv.File(t, testimage.DefaultBusybox)
	im, err := testimage.Build("")
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return im
}

func TestBuildIsDeterministic(t *testing.T) {
	a, b := build(t), build(t)
	if a.ManifestDesc.Digest != b.ManifestDesc.Digest {
		t.Errorf("manifest digests differ: %s and %s", a.ManifestDesc.Digest, b.ManifestDesc.Digest)
	}
}

func TestBlobsMatchDescriptors(t *testing.T) {
	im := build(t)
	for _, b := range []struct {
		name string
		d    ocispec.Descriptor
		data []byte
	}{{"manifest", im.ManifestDesc, im.Manifest}, {"config", im.ConfigDesc, im.Config}, {"layer", im.LayerDesc, im.Layer}} {
		if err := b.d.Digest.Validate(); err != nil {
			t.Errorf("%s digest: %v", b.name, err)
		}
		if got := digest.FromBytes(b.data); got != b.d.Digest {
			t.Errorf("%s: got digest %s, want %s", b.name, got, b.d.Digest)
		}
		if got := int64(len(b.data)); got != b.d.Size {
			t.Errorf("%s: got size %d, want %d", b.name, got, b.d.Size)
		}
	}

	var cfg ocispec.Image
	if err := json.Unmarshal(im.Config, &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("got platform %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	if len(cfg.RootFS.DiffIDs) != 1 {
		t.Fatalf("got %d diff IDs, want 1", len(cfg.RootFS.DiffIDs))
	}
	zr, err := gzip.NewReader(bytes.NewReader(im.Layer))
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	if got := digest.FromBytes(raw); got != cfg.RootFS.DiffIDs[0] {
		t.Errorf("got diff ID %s, want %s", got, cfg.RootFS.DiffIDs[0])
	}

	files := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer tar: %v", err)
		}
		files[h.Name] = h
	}
	for _, name := range []string{"bin/busybox", "bin/sh", "bin/sleep", "bin/cat", "bin/echo", "usr/sbin/httpd", "usr/bin/wget", "etc/passwd", "etc/group", "www/index.html", "tmp/"} {
		if files[name] == nil {
			t.Errorf("layer lacks %s", name)
		}
	}
	if h := files["bin/sh"]; h != nil && (h.Typeflag != tar.TypeSymlink || h.Linkname != "/bin/busybox") {
		t.Errorf("bin/sh: got type %c link %q, want a symlink to /bin/busybox", h.Typeflag, h.Linkname)
	}
}

func TestOCIArchiveNamesTheImage(t *testing.T) {
	im := build(t)
	var buf bytes.Buffer
	if err := im.WriteOCIArchive(&buf, "registry.local:5000/shoal/busybox:v1"); err != nil {
		t.Fatalf("WriteOCIArchive: %v", err)
	}
	got := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("archive: %v", err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = b
	}
	for _, name := range []string{"oci-layout", "index.json", "blobs/sha256/" + im.ManifestDesc.Digest.Encoded(),
		"blobs/sha256/" + im.ConfigDesc.Digest.Encoded(), "blobs/sha256/" + im.LayerDesc.Digest.Encoded()} {
		if got[name] == nil {
			t.Errorf("archive lacks %s", name)
		}
	}
	var idx ocispec.Index
	if err := json.Unmarshal(got["index.json"], &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("got %d manifests, want 1", len(idx.Manifests))
	}
	ann := idx.Manifests[0].Annotations
	if got, want := ann["io.containerd.image.name"], "registry.local:5000/shoal/busybox:v1"; got != want {
		t.Errorf("got image name %q, want %q", got, want)
	}
	if got, want := ann[ocispec.AnnotationRefName], "v1"; got != want {
		t.Errorf("got ref name %q, want %q", got, want)
	}
}

func TestWriteLayout(t *testing.T) {
	im := build(t)
	dir := t.TempDir()
	if err := im.WriteLayout(dir, "busybox"); err != nil {
		t.Fatalf("WriteLayout: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", im.ManifestDesc.Digest.Encoded()))
	if err != nil {
		t.Fatalf("manifest blob: %v", err)
	}
	if !bytes.Equal(b, im.Manifest) {
		t.Errorf("manifest blob differs from the built manifest")
	}
	idx, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if !bytes.Contains(idx, []byte(`"docker.io/library/busybox:latest"`)) {
		t.Errorf("index.json %s does not name docker.io/library/busybox:latest", idx)
	}
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestPushToRegistry(t *testing.T) {
	im := build(t)
	testenv.Command(t, testimage.RegistryBinary)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	reg, err := testimage.StartRegistry(ctx, t.TempDir(), freeAddr(t))
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	t.Cleanup(func() { reg.Close() })

	ref := reg.Addr + "/shoal/busybox:v1"
	for i := range 2 { // the second push finds the blobs there
		if err := im.Push(ctx, nil, ref); err != nil {
			t.Fatalf("Push #%d: %v", i+1, err)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+reg.Addr+"/v2/shoal/busybox/manifests/v1", nil)
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("get manifest: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get manifest: got %s, want 200 OK", resp.Status)
	}
	if got := digest.FromBytes(body); got != im.ManifestDesc.Digest {
		t.Errorf("got manifest digest %s, want %s", got, im.ManifestDesc.Digest)
	}
}
