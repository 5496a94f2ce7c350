package testimage

import (
	"bytes"
	"context"
	"fmt"

	"github.com/containerd/containerd"
)

// Import loads the image into containerd under ref and unpacks it into
// snapshotter (containerd's default when empty). The namespace comes from ctx
// or, when ctx has none, from the client's default namespace.
func (im *Image) Import(ctx context.Context, client *containerd.Client, ref, snapshotter string) error {
	var buf bytes.Buffer
	if err := im.WriteOCIArchive(&buf, ref); err != nil {
		return err
	}
	imgs, err := client.Import(ctx, &buf)
	if err != nil {
		return fmt.Errorf("testimage: import %s: %w", ref, err)
	}
	if len(imgs) == 0 {
		return fmt.Errorf("testimage: import %s: no image in archive", ref)
	}
	for _, img := range imgs {
		if err := containerd.NewImage(client, img).Unpack(ctx, snapshotter); err != nil {
			return fmt.Errorf("testimage: unpack %s: %w", img.Name, err)
		}
	}
	return nil
}
