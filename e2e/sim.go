package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// Sim is a shoal-sim process on a host: hollow workers joined to a cluster.
type Sim struct {
	Proc    *Proc
	Control string // unix socket of the control API
	ctl     *http.Client
}

// SimNode is one hollow node as the control API shows it.
type SimNode struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	State    string `json:"state"`
	Running  int    `json:"running_tasks"`
}

// SimStats is the simulator's footprint.
type SimStats struct {
	Nodes      map[string]int `json:"nodes"`
	Tasks      int            `json:"running_tasks"`
	RSSBytes   int64          `json:"rss_bytes"`
	HeapBytes  uint64         `json:"heap_inuse_bytes"`
	Goroutines int            `json:"goroutines"`
	RSSPerNode int64          `json:"rss_per_node_bytes"`
}

// StartSim runs shoal-sim (at nice 10) on h with nodes hollow workers joining the
// manager at managerIP with token; extra flags are passed on.
func (h *Host) StartSim(token, managerIP string, nodes int, extra ...string) *Sim {
	h.net.T().Helper()
	sock := filepath.Join(h.DataDir, "sim.sock")
	args := []string{"--join", managerIP + ":2377", "--token", token, "--advertise-addr", h.IP,
		"--nodes", strconv.Itoa(nodes), "--hostname-prefix", h.Name, "--control", sock}
	// Niced: on a real cluster workers have machines of their own; here the
	// simulated ones must not take the CPU the managers under test need.
	p := h.StartProgram("nice", append(append([]string{"-n", "10", simBin(h.net.T())}, args...), extra...)...)
	return &Sim{Proc: p, Control: sock, ctl: &http.Client{
		Timeout: cliTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}}
}

func (s *Sim) call(method, path string, q url.Values, out any) error {
	req, err := http.NewRequest(method, "http://sim"+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := s.ctl.Do(req)
	if err != nil {
		return fmt.Errorf("shoal-sim %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("shoal-sim %s %s: %s: %s", method, path, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("shoal-sim %s %s: %w: %q", method, path, err, b)
	}
	return nil
}

// Nodes lists the hollow nodes.
func (s *Sim) Nodes() ([]SimNode, error) {
	var out []SimNode
	return out, s.call(http.MethodGet, "/nodes", nil, &out)
}

// Stats reads the simulator's footprint.
func (s *Sim) Stats() (SimStats, error) {
	var out SimStats
	return out, s.call(http.MethodGet, "/stats", nil, &out)
}

// Do is kill, pause or resume of count random nodes in the right state.
func (s *Sim) Do(op string, count int) ([]SimNode, error) {
	var out []SimNode
	return out, s.call(http.MethodPost, "/"+op, url.Values{"count": {strconv.Itoa(count)}}, &out)
}

// DoNodes is kill, pause or resume of the named nodes (IDs or hostnames).
func (s *Sim) DoNodes(op string, refs ...string) ([]SimNode, error) {
	var out []SimNode
	return out, s.call(http.MethodPost, "/"+op, url.Values{"node": refs}, &out)
}

// APIClient talks to h's daemon over its unix socket, for callers that read
// more than the CLI should print (thousands of tasks).
func (h *Host) APIClient() *api.Client {
	h.net.T().Helper()
	c, err := api.NewClient("unix://"+h.Socket(), nil)
	if err != nil {
		h.net.T().Fatalf("%s: api client: %v", h.Name, err)
	}
	return c
}

// apiCtx is a context for one API call.
func apiCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cliTimeout)
}

// runningCount counts the tasks of service wanted and running, and those
// running on the given nodes.
func runningCount(tasks []*api.Task, on map[string]bool) (running, runningOn int) {
	for _, t := range tasks {
		if t.DesiredState == api.TaskRunning && t.Status.State == api.TaskRunning {
			running++
			if on[t.NodeID] {
				runningOn++
			}
		}
	}
	return running, runningOn
}

// waitRunning polls hosts until service has want tasks running, none of
// them on the nodes in avoid, reading every interval (a read of 10,000 tasks
// is not free) from the first host that answers; it returns how long that
// took from start.
func waitRunning(hosts []*Host, service string, want int, avoid map[string]bool, start time.Time, interval, timeout time.Duration) (time.Duration, error) {
	var clients []*api.Client
	for _, h := range hosts {
		c := h.APIClient()
		defer c.Close()
		clients = append(clients, c)
	}
	var last error
	for {
		var errs []error
		for i, c := range clients {
			ctx, cancel := apiCtx()
			tasks, err := c.Tasks(ctx, api.TaskFilter{Service: service})
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", hosts[i].Name, err))
				continue
			}
			running, bad := runningCount(tasks, avoid)
			if running-bad == want {
				return time.Since(start), nil
			}
			errs = []error{fmt.Errorf("service %s: %d tasks running (%d of them on lost nodes), want %d elsewhere", service, running, bad, want)}
			break
		}
		last = errors.Join(errs...)
		if time.Since(start) > timeout {
			return time.Since(start), last
		}
		time.Sleep(interval)
	}
}

// placement is "NODE=RUNNING ..." of service's running tasks, for messages.
func placement(h *Host, service string) string {
	c := h.APIClient()
	defer c.Close()
	ctx, cancel := apiCtx()
	defer cancel()
	tasks, err := c.Tasks(ctx, api.TaskFilter{Service: service})
	if err != nil {
		return err.Error()
	}
	count := map[string]int{}
	for _, t := range tasks {
		count[fmt.Sprintf("%s/%s/%s", t.NodeID, t.DesiredState, t.Status.State)]++
	}
	return fmt.Sprint(count)
}
