package agent

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/overlay/dns"
)

// TestRecordsAliases: a service's aliases resolve like its name, on the
// same networks (a stack service's short name).
func TestRecordsAliases(t *testing.T) {
	st := api.NetworkState{Services: []api.ServiceNetwork{{
		Name: "app_api", Aliases: []string{"api"}, Mode: api.EndpointVIP,
		VIPs:     []api.VIP{{NetworkID: "n1", Addr: "10.0.0.2/24"}},
		Backends: []api.NetworkAttachment{{NetworkID: "n1", Addr: "10.0.0.5/24"}},
	}}}
	table := dns.NewTable()
	table.Set(records(st))
	for _, name := range []string{"app_api", "api", "API."} {
		got, ok := table.Lookup([]string{"n1"}, name)
		if !ok || !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.0.0.2")}) {
			t.Errorf("lookup %s on n1: %v %v, want the VIP", name, got, ok)
		}
	}
	if got, ok := table.Lookup([]string{"n1"}, "tasks.api"); !ok || !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.0.0.5")}) {
		t.Errorf("lookup tasks.api: %v %v, want the task", got, ok)
	}
	if _, ok := table.Lookup([]string{"n2"}, "api"); ok {
		t.Errorf("api resolved on a network the service is not on")
	}
}
