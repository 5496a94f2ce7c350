package api

// HeaderIndex carries a cluster-state index: in a manager's answer, the index
// of the state it saw or wrote; in a request, the highest index the client
// has seen, which the manager must have applied before it answers a read.
const HeaderIndex = "X-Shoal-Index"

// ReadIndex is the leader's answer to GET /v1/raft/read-index: a follower
// that has applied Index has seen every write acknowledged before the call.
type ReadIndex struct {
	Index uint64 `json:"index"`
	// Message explains a refusal (not the leader).
	Message string `json:"message,omitempty"`
}
