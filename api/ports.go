package api

import (
	"fmt"
	"net"
	"strconv"
)

// Shoal's own ports, Swarm's: 2377/tcp API, 2378/tcp raft, 7946/tcp+udp
// gossip, 4789/udp VXLAN. Nodes may be started on other API, raft, gossip
// and metrics ports; their Endpoints say which.
const (
	DefaultAPIPort    = 2377
	DefaultRaftPort   = 2378
	DefaultGossipPort = 7946
	VXLANPort         = 4789
)

// OwnPorts names the ports Shoal itself uses: the defaults and every port in
// endpoints. A published port DNATs that port on every local address of
// every node, so publishing one of these would hand Shoal's own traffic to a
// task (-p 2377:80 took a whole cluster down). They are refused for both
// protocols: gossip uses both, and one rule is easier to explain than four.
func OwnPorts(endpoints ...Endpoints) map[uint16]string {
	own := map[uint16]string{
		DefaultAPIPort:    "the API port",
		DefaultRaftPort:   "the raft port",
		DefaultGossipPort: "the gossip port",
		VXLANPort:         "the VXLAN port",
	}
	for _, e := range endpoints {
		for _, p := range []struct{ addr, what string }{
			{e.API, "an API port"}, {e.Raft, "a raft port"}, {e.Gossip, "a gossip port"}, {e.Metrics, "a metrics port"},
		} {
			if _, port, err := net.SplitHostPort(p.addr); err == nil {
				if n, err := strconv.ParseUint(port, 10, 16); err == nil && n != 0 {
					if _, ok := own[uint16(n)]; !ok {
						own[uint16(n)] = fmt.Sprintf("%s (%s)", p.what, p.addr)
					}
				}
			}
		}
	}
	return own
}
