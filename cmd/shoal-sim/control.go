package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// stats is the process's footprint with its nodes.
type stats struct {
	Nodes      map[string]int `json:"nodes"`
	Tasks      int            `json:"running_tasks"`
	RSSBytes   int64          `json:"rss_bytes"`
	HeapBytes  uint64         `json:"heap_inuse_bytes"`
	Goroutines int            `json:"goroutines"`
	// RSSPerNode is RSS over the nodes that joined, the figure the
	// simulator is sized by.
	RSSPerNode int64 `json:"rss_per_node_bytes"`
}

func (s *sim) stats() stats {
	st := stats{Nodes: map[string]int{}, RSSBytes: rss(), Goroutines: runtime.NumGoroutine()}
	joined := 0
	for _, v := range s.views() {
		st.Nodes[v.State]++
		st.Tasks += v.Running
		if v.ID != "" {
			joined++
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapBytes = ms.HeapInuse
	if joined > 0 {
		st.RSSPerNode = st.RSSBytes / int64(joined)
	}
	return st
}

// rss reads VmRSS of this process; 0 if unknown.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// serveControl serves the control API on a unix socket:
//
//	GET  /nodes                      every node: id, hostname, state, running tasks
//	GET  /stats                      node counts by state, tasks, RSS, RSS per node
//	POST /kill?count=N | ?node=REF   stop N random running nodes (or the named ones) for good
//	POST /pause?...   POST /resume?...  stop beating for a while, and start again
//	GET  /debug/pprof/...            Go's profiles
func (s *sim) serveControl(path string) (func(), error) {
	_ = os.Remove(path) // a socket left by an earlier run
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.views()) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.stats()) })
	for _, op := range []string{"kill", "pause", "resume"} {
		mux.HandleFunc("POST /"+op, func(w http.ResponseWriter, r *http.Request) {
			sel, err := parseSelection(r)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			out, err := s.apply(sel, op)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, out)
		})
	}
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close(); _ = os.Remove(path) }, nil
}

// parseSelection reads ?count=N or one or more ?node=REF.
func parseSelection(r *http.Request) (selection, error) {
	q := r.URL.Query()
	sel := selection{refs: q["node"]}
	c := q.Get("count")
	switch {
	case c != "" && len(sel.refs) > 0:
		return sel, errors.New("give count or node, not both")
	case c == "" && len(sel.refs) == 0:
		return sel, errors.New("give count=N or node=ID|HOSTNAME")
	case c != "":
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return sel, fmt.Errorf("count %q: want a positive number", c)
		}
		sel.count = n
	}
	return sel, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
