package gossip

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node tells the others about itself through gossip.
type Meta struct {
	Role string // "manager" or "worker"
	API  string // host:port of the node's API, if it serves one
}

// wireMeta is Meta as carried in memberlist's node metadata. Session is a
// random value fixed for the life of one Gossip, so a leave intent sent by
// one run of a node is never applied to a later run with the same ID.
type wireMeta struct {
	Role    string `json:"r,omitempty"`
	API     string `json:"a,omitempty"`
	Session string `json:"s,omitempty"`
}

func encodeMeta(m Meta, session string) ([]byte, error) {
	b, err := json.Marshal(wireMeta{Role: m.Role, API: m.API, Session: session})
	if err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta reads metadata received from the network. Anything it cannot
// read yields an empty Meta and session, never a panic.
func decodeMeta(b []byte) (Meta, string, error) {
	if len(b) == 0 {
		return Meta{}, "", nil
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{}, "", fmt.Errorf("decode meta: %w", err)
	}
	return Meta{Role: w.Role, API: w.API}, w.Session, nil
}

// User messages carried by memberlist for this package start with a type byte.
const msgLeaveIntent byte = 1

// leaveIntent is sent by a node about to leave, so that the others can tell a
// graceful leave from a failure when memberlist reports the node gone.
type leaveIntent struct {
	ID      string `json:"id"`
	Session string `json:"s"`
}

func encodeLeaveIntent(li leaveIntent) []byte {
	b, _ := json.Marshal(li) // two strings: cannot fail
	return append([]byte{msgLeaveIntent}, b...)
}

func decodeLeaveIntent(b []byte) (leaveIntent, error) {
	var li leaveIntent
	if len(b) == 0 || b[0] != msgLeaveIntent {
		return li, fmt.Errorf("%w: not a leave intent", ErrBadMessage)
	}
	if err := json.Unmarshal(b[1:], &li); err != nil {
		return li, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if li.ID == "" || li.Session == "" {
		return li, fmt.Errorf("%w: leave intent without id or session", ErrBadMessage)
	}
	return li, nil
}
