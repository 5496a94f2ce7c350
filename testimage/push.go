package testimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Push uploads the image to the plain-HTTP registry named in ref
// ("127.0.0.1:5000/busybox:latest"), by the OCI distribution API: each blob
// is checked with HEAD, uploaded with POST then PUT ?digest=, and the
// manifest is PUT under the tag. Debian's docker-registry package serves it:
//
//	docker-registry serve config.yml   # http.addr: 127.0.0.1:5000, storage.filesystem.rootdirectory: DIR
//
// client may be nil for http.DefaultClient.
func (im *Image) Push(ctx context.Context, client *http.Client, ref string) error {
	if client == nil {
		client = http.DefaultClient
	}
	named, err := normalize(ref)
	if err != nil {
		return err
	}
	tag := "latest"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	base := &url.URL{Scheme: "http", Host: reference.Domain(named), Path: "/v2/" + reference.Path(named) + "/"}
	p := pusher{ctx: ctx, client: client, base: base}
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{im.LayerDesc, im.Layer}, {im.ConfigDesc, im.Config}} {
		if err := p.blob(b.desc, b.data); err != nil {
			return fmt.Errorf("testimage: push %s: %w", ref, err)
		}
	}
	u := base.ResolveReference(&url.URL{Path: "manifests/" + tag})
	if _, err := p.do(http.MethodPut, u, im.ManifestDesc.MediaType, im.Manifest, http.StatusCreated); err != nil {
		return fmt.Errorf("testimage: push %s: manifest: %w", ref, err)
	}
	return nil
}

type pusher struct {
	ctx    context.Context
	client *http.Client
	base   *url.URL
}

func (p pusher) blob(desc ocispec.Descriptor, data []byte) error {
	u := p.base.ResolveReference(&url.URL{Path: "blobs/" + desc.Digest.String()})
	if _, err := p.do(http.MethodHead, u, "", nil, http.StatusOK); err == nil {
		return nil
	}
	start := p.base.ResolveReference(&url.URL{Path: "blobs/uploads/"})
	resp, err := p.do(http.MethodPost, start, "", nil, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("blob %s: start upload: %w", desc.Digest, err)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("blob %s: upload location: %w", desc.Digest, err)
	}
	q := loc.Query()
	q.Set("digest", desc.Digest.String())
	loc.RawQuery = q.Encode()
	if _, err := p.do(http.MethodPut, loc, "application/octet-stream", data, http.StatusCreated); err != nil {
		return fmt.Errorf("blob %s: upload: %w", desc.Digest, err)
	}
	return nil
}

// do sends one request and wants status back; the body is drained and closed.
func (p pusher) do(method string, u *url.URL, contentType string, body []byte, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(p.ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.ContentLength = int64(len(body))
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %s: %s", method, u.Redacted(), resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
}
