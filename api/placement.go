package api

import (
	"fmt"
	"strings"
)

// PlacementPreference spreads a service's tasks evenly over the values of a
// node attribute, as Swarm's: Spread names it, "node.labels.NAME" (the
// only kind Swarm supports, engine labels aside). Nodes without the label
// form one more group of their own.
type PlacementPreference struct {
	Spread string `json:"spread"`
}

// spreadPrefix starts every spread descriptor (case-insensitive, as Swarm).
const spreadPrefix = "node.labels."

// SpreadLabel returns the node label the preference spreads over, or an
// error naming what is wrong with the descriptor.
func (p PlacementPreference) SpreadLabel() (string, error) {
	d := p.Spread
	if len(d) <= len(spreadPrefix) || !strings.EqualFold(d[:len(spreadPrefix)], spreadPrefix) {
		return "", fmt.Errorf("spread descriptor %q: want node.labels.NAME, like node.labels.zone", d)
	}
	label := d[len(spreadPrefix):]
	if strings.TrimSpace(label) == "" || strings.ContainsAny(label, " \t=") {
		return "", fmt.Errorf("spread descriptor %q: the label name must not be empty or contain spaces or '='", d)
	}
	return label, nil
}

// ParsePlacementPreference reads the CLI form "spread=node.labels.zone".
func ParsePlacementPreference(s string) (PlacementPreference, error) {
	kind, desc, ok := strings.Cut(s, "=")
	if !ok || kind != "spread" {
		return PlacementPreference{}, fmt.Errorf("placement preference %q: want spread=node.labels.NAME (spread is the only strategy)", s)
	}
	p := PlacementPreference{Spread: desc}
	if _, err := p.SpreadLabel(); err != nil {
		return PlacementPreference{}, fmt.Errorf("placement preference %q: %w", s, err)
	}
	return p, nil
}

// String is the CLI form, spread=DESCRIPTOR.
func (p PlacementPreference) String() string { return "spread=" + p.Spread }
