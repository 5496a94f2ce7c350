package controlapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/allocator"
	"github.com/shoal-dev/shoal/store"
)

// Network calls, and the network and port checks of service specs. The
// checks ("no network uses 10.0.1.0/24") and the write are one store.Update,
// which holds the store's update lock from read to apply, so two calls
// cannot both pass them.

func findNetwork(tx store.ReadTx, ref string) (*api.Network, error) {
	return one("network", ref, tx.FindNetworks(ref), func(o *api.Network) string { return o.ID })
}

// networkError turns what the allocator refuses into a 400.
func networkError(err error) error {
	var overlap *allocator.OverlapError
	if errors.As(err, &overlap) || errors.Is(err, allocator.ErrBadSubnet) ||
		errors.Is(err, allocator.ErrPoolExhausted) || errors.Is(err, allocator.ErrVNIExhausted) {
		return badRequest("%s", strings.TrimPrefix(err.Error(), "allocator: "))
	}
	return err
}

func (s *Server) createNetwork(w http.ResponseWriter, r *http.Request) {
	var spec api.NetworkSpec
	if !decode(w, r, &spec, false) {
		return
	}
	if !validName(spec.Name) {
		writeError(w, http.StatusBadRequest, "create network: network name %q: want 1-63 letters, digits, dashes or underscores, starting and ending with a letter or digit", spec.Name)
		return
	}
	if err := checkLabels("labels", spec.Labels); err != nil {
		writeStoreError(w, "create network", err)
		return
	}
	if spec.Name == allocator.IngressName && !spec.Ingress {
		writeError(w, http.StatusBadRequest, "create network: the name %q is kept for the ingress network", spec.Name)
		return
	}
	if spec.Subnet != "" {
		if _, err := allocator.ParseSubnet(spec.Subnet); err != nil {
			writeStoreError(w, "create network", networkError(err))
			return
		}
	}
	var created *api.Network
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		existing := tx.Networks()
		for _, n := range existing {
			if n.Spec.Name == spec.Name {
				return badRequest("a network named %q exists already (%s)", spec.Name, n.ID)
			}
			if spec.Ingress && n.Spec.Ingress {
				return badRequest("an ingress network exists already: %s (%s)", n.Spec.Name, n.ID)
			}
		}
		n, err := allocator.NewNetwork(api.NewID(), spec, existing)
		if err != nil {
			return networkError(err)
		}
		created = n
		return tx.PutNetwork(n)
	})
	if err != nil {
		writeStoreError(w, "create network", err)
		return
	}
	s.log.Info("network created", "network", created.ID, "name", created.Spec.Name,
		"subnet", created.Spec.Subnet, "vni", created.VNI)
	s.answerNetwork(w, created.ID)
}

func (s *Server) answerNetwork(w http.ResponseWriter, id string) {
	var n *api.Network
	s.cfg.Store.View(func(tx store.ReadTx) { n = tx.Network(id) })
	if n == nil {
		writeError(w, http.StatusNotFound, "network %s is gone", id)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request) {
	out := []*api.Network{}
	s.cfg.Store.View(func(tx store.ReadTx) { out = append(out, tx.Networks()...) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getNetwork(w http.ResponseWriter, r *http.Request) {
	var n *api.Network
	var err error
	s.cfg.Store.View(func(tx store.ReadTx) { n, err = findNetwork(tx, r.PathValue("ref")) })
	if err != nil {
		writeStoreError(w, "inspect network", err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) removeNetwork(w http.ResponseWriter, r *http.Request) {
	var removed *api.Network
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		n, err := findNetwork(tx, r.PathValue("ref"))
		if err != nil {
			return err
		}
		removed = n
		for _, svc := range tx.Services() {
			if slices.Contains(svc.Spec.Networks, n.ID) {
				return badRequest("network %s is used by service %s", n.Spec.Name, svc.Spec.Name)
			}
			if n.Spec.Ingress && len(svc.Spec.Endpoint.IngressPorts()) > 0 {
				return badRequest("network %s is used by service %s: it publishes ports", n.Spec.Name, svc.Spec.Name)
			}
		}
		for _, t := range tx.Tasks() {
			if !allocator.HoldsAddresses(t) {
				continue
			}
			for _, a := range t.Networks {
				if a.NetworkID == n.ID {
					return badRequest("network %s is used by task %s of service %s", n.Spec.Name, t.ID, t.ServiceName)
				}
			}
		}
		return tx.DeleteNetwork(n.ID)
	})
	if err != nil {
		writeStoreError(w, "remove network", err)
		return
	}
	s.log.Info("network removed", "network", removed.ID, "name", removed.Spec.Name)
	w.WriteHeader(http.StatusNoContent)
}

// validateEndpoint fills the endpoint's defaults and checks what needs no
// state: the mode, the ports, and that network references are not empty.
func validateEndpoint(spec *api.ServiceSpec) error {
	for _, ref := range spec.Networks {
		if strings.TrimSpace(ref) == "" {
			return badRequest("networks: empty network name")
		}
	}
	e := &spec.Endpoint
	switch e.Mode {
	case "":
		e.Mode = api.EndpointVIP
	case api.EndpointVIP, api.EndpointDNSRR:
	default:
		return badRequest("endpoint mode %q: want vip or dnsrr", e.Mode)
	}
	if e.Mode == api.EndpointDNSRR && len(e.IngressPorts()) > 0 {
		return badRequest("endpoint mode dnsrr cannot publish ports in ingress mode: the routing mesh needs a virtual IP (use vip, or mode=host)")
	}
	if err := api.NormalizePorts(e.Ports); err != nil {
		return badRequest("%s", err)
	}
	return nil
}

// resolveNetworks checks a service spec against the state inside the
// write: it replaces network names by IDs (refusing unknown ones and the
// ingress network), refuses ports another service or Shoal itself uses, and creates
// the ingress network when the spec is the first to publish a port. selfID
// is the service being updated, "" for a new one.
func resolveNetworks(tx *store.Tx, spec *api.ServiceSpec, selfID string) error {
	ids := make([]string, 0, len(spec.Networks))
	for _, ref := range spec.Networks {
		n, err := findNetwork(tx, ref)
		if errors.Is(err, store.ErrNotFound) {
			return badRequest("network %q not found", ref)
		}
		if err != nil {
			return err
		}
		if n.Spec.Ingress {
			return badRequest("network %s is the ingress network: services join it by publishing ports", n.Spec.Name)
		}
		if !slices.Contains(ids, n.ID) {
			ids = append(ids, n.ID)
		}
	}
	if len(ids) == 0 {
		ids = nil
	}
	spec.Networks = ids
	if len(spec.Endpoint.Ports) == 0 {
		return nil
	}
	if err := checkOwnPorts(tx, spec.Endpoint.Ports); err != nil {
		return err
	}
	if err := checkPortsFree(tx, spec.Endpoint.Ports, selfID); err != nil {
		return err
	}
	if len(spec.Endpoint.IngressPorts()) == 0 {
		return nil
	}
	networks := tx.Networks()
	if allocator.NewIndex(networks, nil).IngressID() != "" {
		return nil
	}
	n, err := allocator.NewNetwork(api.NewID(), allocator.IngressSpec(), networks)
	if err != nil {
		return fmt.Errorf("create the ingress network: %w", networkError(err))
	}
	return tx.PutNetwork(n)
}
