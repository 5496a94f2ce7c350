package controlapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/manager/admission"
	"github.com/shoal-dev/shoal/manager/ca"
	"github.com/shoal-dev/shoal/store"
)

// Raft is what the API needs of the consensus layer.
type Raft interface {
	IsLeader() bool
	Leader() (id, addr string)
	// LeaderWatch returns the leader known now and a channel closed when it changes.
	LeaderWatch() Leadership
	// SinceContact is how long ago this follower last heard from the leader.
	SinceContact() time.Duration
	// Barrier waits until this leader has applied every entry committed before it.
	Barrier(ctx context.Context) error
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	// Voters lists the IDs of the raft voters.
	Voters() ([]string, error)
}

// Leadership is the leader a manager knows of at one moment.
type Leadership struct {
	ID string // "" while no leader is known
	// Gen grows with every change of leader this manager sees.
	Gen uint64
	// Changed is closed at the next change of leader.
	Changed <-chan struct{}
}

// Gossip tells whether a member is alive as seen by this node.
type Gossip interface {
	Alive(id string) bool
}

// Dispatcher answers node heartbeats on the leader.
type Dispatcher interface {
	// Heartbeat takes the node's ID from its certificate and its address
	// from the connection (peerAddr), never from the heartbeat itself; nil
	// hb is an empty beat (nothing changed).
	Heartbeat(ctx context.Context, nodeID, peerAddr string, hb *api.Heartbeat) (api.HeartbeatResponse, error)
	Assignments(ctx context.Context, nodeID string, since uint64, networkSum string) (api.Assignments, error)
	ReportStatus(ctx context.Context, nodeID string, updates []api.TaskStatusUpdate) error
}

// Config wires a Server.
type Config struct {
	NodeID     string
	Store      *store.Store
	Raft       Raft
	Gossip     Gossip
	Dispatcher Dispatcher
	// Admission limits joins, keeps node names unique and knows revoked certificates.
	Admission *admission.Admission
	// CheckConstraint validates a placement constraint.
	CheckConstraint ConstraintChecker
	// ForwardTLS is the client TLS config used to forward calls to the leader.
	ForwardTLS *tls.Config
	// ReadWait bounds how long a read waits for this manager to catch up
	// with an index; zero is DefaultReadWait.
	ReadWait time.Duration
	// LeaderWait bounds how long a call waits for an election to end; zero
	// is DefaultLeaderWait.
	LeaderWait time.Duration
	Clock      clock.Clock
	Logger     *slog.Logger
}

// Server is the manager's API.
type Server struct {
	cfg        Config
	log        *slog.Logger
	mux        *http.ServeMux
	readWait   time.Duration
	leaderWait time.Duration
	barrier    readBarrier
	fwdMu      sync.Mutex
	fwd        *forwarder
}

// roleAdmin is the caller on the local unix socket.
const roleAdmin = "admin"

const (
	headerForwarded = "X-Shoal-Forwarded"
	headerCaller    = "X-Shoal-Caller"
)

type access int

const (
	anyone   access = iota // TLS without a client certificate is enough
	nodes                  // any node certificate of this cluster
	managers               // manager certificates and the local admin
)

type callerKey struct{}

// peerManagerKey marks a call whose TLS peer is a manager the store knows.
type peerManagerKey struct{}

// New builds the API server.
func New(cfg Config) *Server {
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "controlapi"),
		mux:        http.NewServeMux(),
		readWait:   cfg.ReadWait,
		leaderWait: cfg.LeaderWait,
		fwd:        newForwarder(cfg.ForwardTLS),
		barrier:    newReadBarrier(),
	}
	if s.readWait <= 0 {
		s.readWait = DefaultReadWait
	}
	if s.leaderWait <= 0 {
		s.leaderWait = DefaultLeaderWait
	}
	s.route("GET /v1/ca", anyone, false, s.getCA)
	s.route("POST /v1/join", anyone, true, s.join)
	s.route("POST /v1/raft/join", managers, true, s.raftJoin)
	s.route(readIndexRoute, managers, false, s.readIndex)
	s.route("POST /v1/session/heartbeat", nodes, true, s.heartbeat)
	s.route("POST /v1/session/leave", nodes, true, s.sessionLeave)
	s.route("POST /v1/certs/renew", nodes, true, s.renewCert)
	s.route("GET /v1/nodes", managers, false, s.listNodes)
	s.route("GET /v1/nodes/{ref}", managers, false, s.getNode)
	s.route("POST /v1/nodes/{ref}/update", managers, true, s.updateNode)
	s.route("POST /v1/nodes/{ref}/promote", managers, true, s.promoteNode)
	s.route("POST /v1/nodes/{ref}/demote", managers, true, s.demoteNode)
	s.route("DELETE /v1/nodes/{ref}", managers, true, s.removeNode)
	s.route("GET /v1/join-tokens", managers, false, s.joinTokens)
	s.route("GET /v1/session/assignments", nodes, true, s.assignments)
	s.route("POST /v1/session/status", nodes, true, s.reportStatus)
	s.route("POST /v1/services", managers, true, s.createService)
	s.route("GET /v1/services", managers, false, s.listServices)
	s.route("GET /v1/services/{ref}", managers, false, s.getService)
	s.route("POST /v1/services/{ref}/update", managers, true, s.updateService)
	s.route("DELETE /v1/services/{ref}", managers, true, s.removeService)
	s.route("GET /v1/tasks", managers, false, s.listTasks)
	s.route("GET /v1/services/{ref}/logs", managers, false, s.serviceLogs)
	s.route("POST /v1/join-tokens/rotate", managers, true, s.rotateJoinToken)
	s.route("POST /v1/networks", managers, true, s.createNetwork)
	s.route("GET /v1/networks", managers, false, s.listNetworks)
	s.route("GET /v1/networks/{ref}", managers, false, s.getNetwork)
	s.route("DELETE /v1/networks/{ref}", managers, true, s.removeNetwork)
	s.routeSecrets()
	s.route("GET /v1/volumes", managers, false, s.listVolumes)
	s.route("DELETE /v1/volumes/{name}", managers, false, s.removeVolume)
	s.routeUnlockKey()
	return s
}

// Handler serves callers over mutual TLS: the caller is named by its certificate.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, ok := ca.Identity{}, false
		if r.TLS != nil {
			caller, ok = ca.PeerIdentity(r.TLS)
		}
		// A certificate outlives a demotion or a removal: only a node the
		// store knows as a manager, with a certificate not on the deny
		// list, keeps manager rights; the others are still nodes (they
		// beat, learn they were removed, renew).
		if ok && caller.Role == string(api.RoleManager) &&
			(!s.isManager(caller.NodeID) || s.cfg.Admission.IsRevoked(admission.Serial(r.TLS.VerifiedChains[0][0]))) {
			caller.Role = string(api.RoleWorker)
		}
		peerManager := ok && caller.Role == string(api.RoleManager)
		// A manager that forwarded the call vouches for the original caller.
		if ok && caller.Role == string(api.RoleManager) && r.Header.Get(headerCaller) != "" {
			var fwd ca.Identity
			if err := json.Unmarshal([]byte(r.Header.Get(headerCaller)), &fwd); err != nil {
				writeError(w, http.StatusBadRequest, "bad forwarded caller: %v", err)
				return
			}
			caller = fwd
		}
		ctx := context.WithValue(r.Context(), callerKey{}, caller)
		ctx = context.WithValue(ctx, peerManagerKey{}, peerManager)
		s.mux.ServeHTTP(w, r.WithContext(ctx))
	})
}

// peerIsManager reports whether the call came over TLS from a manager's certificate.
func peerIsManager(r *http.Request) bool {
	ok, _ := r.Context().Value(peerManagerKey{}).(bool)
	return ok
}

func (s *Server) isManager(id string) bool {
	var n *api.Node
	s.cfg.Store.View(func(tx store.ReadTx) { n = tx.Node(id) })
	return n != nil && n.Spec.Role == api.RoleManager
}

// LocalHandler serves the root-only unix socket: the caller is the local administrator.
func (s *Server) LocalHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(headerForwarded)
		caller := ca.Identity{NodeID: s.cfg.NodeID, Role: roleAdmin}
		s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)))
	})
}

func callerOf(r *http.Request) ca.Identity {
	id, _ := r.Context().Value(callerKey{}).(ca.Identity)
	return id
}

func (s *Server) route(pattern string, need access, leaderOnly bool, h func(http.ResponseWriter, *http.Request)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w = &indexWriter{ResponseWriter: w, st: s.cfg.Store}
		caller := callerOf(r)
		switch need {
		case nodes:
			if caller.Role != string(api.RoleManager) && caller.Role != string(api.RoleWorker) {
				writeError(w, http.StatusUnauthorized, "this call needs a node certificate of this cluster")
				return
			}
		case managers:
			if caller.Role != string(api.RoleManager) && caller.Role != roleAdmin {
				writeError(w, http.StatusForbidden, "this call needs a manager: the caller is %s", describe(caller))
				return
			}
		}
		if leaderOnly && !s.cfg.Raft.IsLeader() {
			// A leader that does not answer a write in time is as good as
			// none; only the assignments long poll may wait longer.
			timeout := forwardTimeout
			if slowCalls[pattern] {
				timeout = 2 * forwardTimeout
			}
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			s.forwardToLeader(w, r.WithContext(ctx), caller, h)
			return
		}
		// A manager's reads see what the caller saw before, and never
		// a state older than the leader's when the call began.
		if need == managers && !leaderOnly && pattern != readIndexRoute {
			if err := s.catchUp(r.Context(), r); err != nil {
				var ae *apiError
				if errors.As(err, &ae) {
					ae.write(w)
				} else {
					writeError(w, http.StatusServiceUnavailable, "%v", err)
				}
				return
			}
		}
		h(w, r)
	})
}

func describe(id ca.Identity) string {
	if id.Role == "" {
		return "anonymous"
	}
	return fmt.Sprintf("%s %s", id.Role, id.NodeID)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, api.Error{Message: fmt.Sprintf(format, args...)})
}

// writeStoreError maps a failed read or write to an HTTP answer.
func writeStoreError(w http.ResponseWriter, what string, err error) {
	code := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
		code = http.StatusConflict
	case errors.Is(err, store.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	}
	var bad *requestError
	if errors.As(err, &bad) {
		code = http.StatusBadRequest
	}
	writeError(w, code, "%s: %v", what, err)
}

// requestError is a request the caller must change; it answers 400.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{msg: fmt.Sprintf(format, args...)}
}

// decode reads a JSON body strictly; an empty body is allowed when allowEmpty.
func decode(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) bool {
	present, ok := decodeOptional(w, r, v)
	if ok && !present && !allowEmpty {
		writeError(w, http.StatusBadRequest, "empty body: want JSON")
		return false
	}
	return ok
}

// decodeOptional decodes the JSON body into v, if there is one: present
// says whether there was. It answers the error itself when !ok.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) (present, ok bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "read body: %v", err)
		return false, false
	}
	if len(body) > 1<<20 {
		writeError(w, http.StatusRequestEntityTooLarge, "body larger than 1 MiB")
		return false, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return false, true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: %v", err)
		return true, false
	}
	return true, true
}

// forwardTimeout bounds a call forwarded to the leader: its raft write
// times out after 5 s.
const forwardTimeout = 8 * time.Second

// slowCalls may take longer than a write: a long poll and raft membership changes.
var slowCalls = map[string]bool{
	"GET /v1/session/assignments": true,
	"POST /v1/raft/join":          true,
	"POST /v1/session/leave":      true,
	"POST /v1/nodes/{ref}/demote": true,
}

// readIndexRoute answers the leader's read index to followers.
const readIndexRoute = "GET /v1/raft/read-index"

// raftChangeTimeout bounds a raft membership change done on behalf of a caller.
const raftChangeTimeout = 10 * time.Second

// one resolves a docker-like reference (ID, ID prefix or name) that found
// objects matched: none is not found, more than one is ambiguous.
func one[T any](what, ref string, found []*T, id func(*T) string) (*T, error) {
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s %q: %w", what, ref, store.ErrNotFound)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, o := range found {
		ids[i] = id(o)
	}
	sort.Strings(ids)
	return nil, badRequest("%s %q is ambiguous: it matches %s", what, ref, strings.Join(ids, ", "))
}
