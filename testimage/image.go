package testimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultBusybox is where Debian's busybox-static puts its binary.
const DefaultBusybox = "/bin/busybox"

// DefaultRef is the name tests give the image when they have no registry.
const DefaultRef = "shoal.test/busybox:latest"

// IndexHTML is what /www/index.html holds, so tests can check httpd's answer.
const IndexHTML = "hello from shoal\n"

// annotationImageName is containerd's name annotation on an index entry
// (images.AnnotationImageName); client.Import names the image after it.
const annotationImageName = "io.containerd.image.name"

// fallbackApplets are linked when the busybox binary cannot list its own.
var fallbackApplets = []string{
	"bin/sh", "bin/ash", "bin/cat", "bin/cp", "bin/date", "bin/echo", "bin/false", "bin/grep",
	"bin/hostname", "bin/kill", "bin/ln", "bin/ls", "bin/mkdir", "bin/mv", "bin/ping", "bin/ps",
	"bin/pwd", "bin/rm", "bin/sleep", "bin/true", "bin/uname", "sbin/ifconfig", "sbin/ip",
	"usr/bin/env", "usr/bin/id", "usr/bin/nc", "usr/bin/nslookup", "usr/bin/test", "usr/bin/wget",
	"usr/bin/whoami", "usr/sbin/httpd",
}

// Image is a built single-layer image: its three blobs and their descriptors.
type Image struct {
	Manifest     []byte
	Config       []byte
	Layer        []byte // gzip-compressed tar
	ManifestDesc ocispec.Descriptor
	ConfigDesc   ocispec.Descriptor
	LayerDesc    ocispec.Descriptor
}

// Build makes the image from the busybox binary at busybox (DefaultBusybox
// when empty). The result depends only on that binary: times are fixed.
func Build(busybox string) (*Image, error) {
	if busybox == "" {
		busybox = DefaultBusybox
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("testimage: read busybox: %w", err)
	}
	applets := listApplets(busybox)

	var tarBuf bytes.Buffer
	if err := writeLayer(&tarBuf, bin, applets); err != nil {
		return nil, fmt.Errorf("testimage: layer: %w", err)
	}
	diffID := digest.FromBytes(tarBuf.Bytes())
	var gzBuf bytes.Buffer
	zw := gzip.NewWriter(&gzBuf)
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, fmt.Errorf("testimage: compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("testimage: compress layer: %w", err)
	}

	im := &Image{Layer: gzBuf.Bytes()}
	im.LayerDesc = descriptor(ocispec.MediaTypeImageLayerGzip, im.Layer)

	created := time.Unix(0, 0).UTC()
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config: ocispec.ImageConfig{
			Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd:          []string{"httpd", "-f", "-v", "-p", "80", "-h", "/www"},
			WorkingDir:   "/",
			ExposedPorts: map[string]struct{}{"80/tcp": {}},
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History: []ocispec.History{{
			Created:   &created,
			CreatedBy: "shoal testimage: busybox-static with applet links",
		}},
	}
	if im.Config, err = json.Marshal(cfg); err != nil {
		return nil, fmt.Errorf("testimage: config: %w", err)
	}
	im.ConfigDesc = descriptor(ocispec.MediaTypeImageConfig, im.Config)

	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    im.ConfigDesc,
		Layers:    []ocispec.Descriptor{im.LayerDesc},
	}
	if im.Manifest, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("testimage: manifest: %w", err)
	}
	im.ManifestDesc = descriptor(ocispec.MediaTypeImageManifest, im.Manifest)
	im.ManifestDesc.Platform = &ocispec.Platform{Architecture: "amd64", OS: "linux"}
	return im, nil
}

func descriptor(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// listApplets asks busybox where its applets install ("usr/bin/wget", ...).
func listApplets(busybox string) []string {
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fallbackApplets
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := path.Clean(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "/"))
		if p == "." || p == "bin/busybox" || strings.HasPrefix(p, "..") {
			continue
		}
		applets = append(applets, p)
	}
	if len(applets) == 0 {
		return fallbackApplets
	}
	return applets
}

// writeLayer writes the root filesystem as an uncompressed tar.
func writeLayer(w io.Writer, busybox []byte, applets []string) error {
	mtime := time.Unix(0, 0)
	tw := tar.NewWriter(w)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: mtime})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}

	dirs := map[string]int64{
		"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
		"etc": 0o755, "www": 0o755, "root": 0o700, "home": 0o755, "tmp": 0o1777, "var": 0o755,
		"var/tmp": 0o1777, "proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755,
	}
	for _, a := range applets {
		for d := path.Dir(a); d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if err := dir(d, dirs[d]); err != nil {
			return err
		}
	}

	if err := file("bin/busybox", 0o755, busybox); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, a := range applets {
		if seen[a] {
			continue
		}
		seen[a] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: a, Linkname: "/bin/busybox", Mode: 0o777, ModTime: mtime}); err != nil {
			return err
		}
	}

	etc := []struct {
		name string
		data string
	}{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n"},
		{"etc/hostname", "busybox\n"},
		{"etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
		{"www/index.html", IndexHTML},
	}
	for _, f := range etc {
		if err := file(f.name, 0o644, []byte(f.data)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// normalize turns "busybox" into "docker.io/library/busybox:latest" and keeps
// full names as they are, with ":latest" added when no tag or digest is given.
func normalize(ref string) (reference.Named, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("testimage: reference %q: %w", ref, err)
	}
	return named, nil
}

func (im *Image) index(ref string) ([]byte, error) {
	named, err := normalize(ref)
	if err != nil {
		return nil, err
	}
	desc := im.ManifestDesc
	desc.Annotations = map[string]string{annotationImageName: named.String()}
	if tagged, ok := named.(reference.Tagged); ok {
		desc.Annotations[ocispec.AnnotationRefName] = tagged.Tag()
	}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{desc},
	}
	return json.Marshal(idx)
}

func (im *Image) layoutFiles(ref string) ([]layoutFile, error) {
	idx, err := im.index(ref)
	if err != nil {
		return nil, err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return nil, err
	}
	blob := func(d ocispec.Descriptor, b []byte) layoutFile {
		return layoutFile{path.Join("blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()), b}
	}
	return []layoutFile{
		{ocispec.ImageLayoutFile, layout},
		{"index.json", idx},
		blob(im.LayerDesc, im.Layer),
		blob(im.ConfigDesc, im.Config),
		blob(im.ManifestDesc, im.Manifest),
	}, nil
}

type layoutFile struct {
	name string
	data []byte
}

// WriteOCIArchive writes the image as an OCI image-layout tar naming it ref,
// the form `ctr image import` and containerd's client.Import read.
func (im *Image) WriteOCIArchive(w io.Writer, ref string) error {
	files, err := im.layoutFiles(ref)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}); err != nil {
			return fmt.Errorf("testimage: archive: %w", err)
		}
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("testimage: archive %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("testimage: archive %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("testimage: archive: %w", err)
	}
	return nil
}

// WriteLayout writes the image as an OCI image-layout directory at dir.
func (im *Image) WriteLayout(dir, ref string) error {
	files, err := im.layoutFiles(ref)
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("testimage: layout: %w", err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return fmt.Errorf("testimage: layout: %w", err)
		}
	}
	return nil
}

// WriteOCIArchive builds the image from DefaultBusybox and writes it as an
// OCI archive named ref.
func WriteOCIArchive(w io.Writer, ref string) error {
	im, err := Build("")
	if err != nil {
		return err
	}
	return im.WriteOCIArchive(w, ref)
}
