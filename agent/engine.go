package agent

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd"

	"github.com/shoal-dev/shoal/api"
)

// EngineProber tells what container engine the node has.
type EngineProber interface {
	Probe(ctx context.Context) api.Engine
}

// Containerd probes a containerd daemon on its socket.
type Containerd struct {
	Address string
}

// Probe connects, asks the version and disconnects; an engine that does not
// answer within two seconds is reported unavailable with the reason.
func (c Containerd) Probe(ctx context.Context) api.Engine {
	e := api.Engine{Name: "containerd"}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := os.Stat(c.Address); err != nil {
		e.Error = fmt.Sprintf("containerd socket: %v", err)
		return e
	}
	client, err := containerd.New(c.Address, containerd.WithTimeout(2*time.Second))
	if err != nil {
		e.Error = fmt.Sprintf("connect to containerd at %s: %v", c.Address, err)
		return e
	}
	defer client.Close()
	v, err := client.Version(ctx)
	if err != nil {
		e.Error = fmt.Sprintf("containerd at %s: %v", c.Address, err)
		return e
	}
	e.Available = true
	e.Version = v.Version
	return e
}
