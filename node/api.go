package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/httpserve"
	"github.com/shoal-dev/shoal/manager/ca"
)

// serveAPI serves the node's mutual-TLS port: the manager API while this
// node is a manager, and on every node the calls managers make to it.
func (n *Node) serveAPI() (func(), error) {
	st := n.state()
	ln, err := net.Listen("tcp", n.listenAddr(st.APIPort))
	if err != nil {
		return nil, fmt.Errorf("API listener: %w", err)
	}
	n.mu.Lock()
	pool := n.pool
	n.mu.Unlock()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/node/tasks/{id}/logs", n.taskLogs)
	mux.HandleFunc("GET /v1/node/volumes", n.listVolumes)
	mux.HandleFunc("DELETE /v1/node/volumes/{name}", n.removeVolume)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if rm := n.runningManager(); rm != nil {
			rm.m.API().Handler().ServeHTTP(w, r)
			return
		}
		localError(w, http.StatusServiceUnavailable, "this node is a worker, not a manager")
	})
	srv := httpserve.New(mux)
	srv.TLSConfig = n.withCurrentCert(ca.ServerTLS(pool, *n.currentCert()))
	// Only joining nodes and CA fetches come without a certificate.
	httpserve.NewAnonymous(httpserve.DefaultMaxAnonymous, n.reg).Install(srv)
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("API server", "err", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}

// taskLogs streams a task's log file to a manager; with follow it keeps
// sending what is appended until the caller goes away.
func (n *Node) taskLogs(w http.ResponseWriter, r *http.Request) {
	if id, ok := ca.PeerIdentity(r.TLS); !ok || id.Role != string(api.RoleManager) {
		localError(w, http.StatusForbidden, "task logs are for managers")
		return
	}
	e := n.agent.Executor()
	if e == nil {
		localError(w, http.StatusServiceUnavailable, "this node's container engine is not connected")
		return
	}
	f, err := os.Open(e.Logs(r.PathValue("id")))
	if err != nil {
		localError(w, http.StatusNotFound, fmt.Sprintf("no logs for task %s here", r.PathValue("id")))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	flusher, _ := w.(http.Flusher)
	follow := r.URL.Query().Get("follow") != ""
	beforeWrite := httpserve.Stream(w)
	for {
		beforeWrite()
		if _, err := io.Copy(w, f); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if !follow {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}
