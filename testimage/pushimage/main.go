// Command pushimage builds Shoal's busybox test image (package testimage)
// from the host's busybox-static binary and pushes it to a plain-HTTP
// registry, for the demo and manual tests:
//
//	pushimage --registry 10.124.0.1:5000 --ref busybox:latest
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/testimage"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "pushimage")
	if err := run(context.Background(), os.Args[1:], os.Stdout, logger); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "pushimage: %v\n", err)
		os.Exit(1)
	}
}

// run parses args, builds the image and pushes it; it prints the pushed
// reference and the manifest digest to out.
func run(ctx context.Context, args []string, out io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("pushimage", flag.ContinueOnError)
	registry := fs.String("registry", "", "plain-HTTP registry HOST:PORT (required)")
	ref := fs.String("ref", "busybox:latest", "repository and tag to push as, NAME[:TAG]")
	busybox := fs.String("busybox", testimage.DefaultBusybox, "busybox-static binary the image is made of")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *registry == "" {
		return errors.New("--registry HOST:PORT is required")
	}
	if _, _, err := net.SplitHostPort(*registry); err != nil {
		return fmt.Errorf("--registry %q: want HOST:PORT: %w", *registry, err)
	}
	if first, _, more := strings.Cut(*ref, "/"); *ref == "" || more && strings.ContainsAny(first, ".:") {
		return fmt.Errorf("--ref %q: want NAME[:TAG], without a registry", *ref)
	}

	im, err := testimage.Build(*busybox)
	if err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	full := *registry + "/" + *ref
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	logger.Info("pushing", "ref", full, "digest", im.ManifestDesc.Digest, "layer_bytes", im.LayerDesc.Size)
	if err := im.Push(ctx, nil, full); err != nil {
		return err // Push names the reference already
	}
	fmt.Fprintf(out, "pushed %s@%s\n", full, im.ManifestDesc.Digest)
	return nil
}
