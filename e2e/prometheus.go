package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// PrometheusPort is the port a test Prometheus listens on.
const PrometheusPort = 9090

// requirePrometheus stops the test unless the prometheus binary is installed
// (apt-get install -y --no-install-recommends prometheus).
func requirePrometheus(t testing.TB) {
	t.Helper()
	testenv.Command(t, "prometheus")
}

// Prometheus is a real Prometheus server running in a host's namespace.
type Prometheus struct {
	Host *Host
	// Addr is IP:PORT of its web listener, on the host's address.
	Addr   string
	Proc   *Proc
	client *http.Client
}

// StartPrometheus runs prometheus on h with config (prometheus.yml text),
// its config and storage in a temp dir, and waits until it is ready. A
// cleanup kills it before the temp dir is removed, even after a failure.
func StartPrometheus(h *Host, config string) *Prometheus {
	t := h.net.T()
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Prometheus{
		Host:   h,
		Addr:   net.JoinHostPort(h.IP, strconv.Itoa(PrometheusPort)),
		client: h.HTTPClient(10 * time.Second),
	}
	p.Proc = h.StartProgram(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.Addr,
		"--log.level=warn",
	)
	// Registered after t.TempDir, so it runs before the dir is removed.
	t.Cleanup(p.Proc.Kill)
	eventually(t, engineStartTimeout, func() error {
		if p.Proc.Exited() {
			t.Fatalf("%s: prometheus exited (%s):\n%s", h.Name, p.Proc.state(), tail(p.Proc.Log(), 30))
		}
		_, err := p.get("/-/ready")
		return err
	})
	return p
}

// get fetches path from the server and returns the body of a 200 answer.
func (p *Prometheus) get(path string) ([]byte, error) {
	resp, err := p.client.Get("http://" + p.Addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("prometheus %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant PromQL query through the HTTP API and returns its
// vector.
func (p *Prometheus) Query(q string) ([]Sample, error) {
	body, err := p.get("/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	var ans struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("query %s: %w: %q", q, err, body)
	}
	if ans.Status != "success" {
		return nil, fmt.Errorf("query %s: %s: %s", q, ans.Status, ans.Error)
	}
	if ans.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", q, ans.Data.ResultType)
	}
	out := make([]Sample, 0, len(ans.Data.Result))
	for _, r := range ans.Data.Result {
		s, ok := r.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("query %s: value %v: want a string", q, r.Value)
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q: %w", q, s, err)
		}
		out = append(out, Sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// Targets returns the scrape targets' health and last error, by instance,
// for error messages.
func (p *Prometheus) Targets() (map[string]string, error) {
	body, err := p.get("/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	var ans struct {
		Data struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("targets: %w: %q", err, body)
	}
	out := map[string]string{}
	for _, tg := range ans.Data.ActiveTargets {
		s := tg.Health
		if tg.LastError != "" {
			s += " (" + tg.LastError + ")"
		}
		out[tg.Labels["instance"]] = s
	}
	return out, nil
}

// Eventually polls query q until check accepts its samples, and returns how
// long it took. After timeout it fails the test with the last error and the
// health of every scrape target.
func (p *Prometheus) Eventually(t testing.TB, timeout time.Duration, q string, check func([]Sample) error) time.Duration {
	t.Helper()
	d, err := poll(timeout, func() error {
		samples, err := p.Query(q)
		if err != nil {
			return err
		}
		if err := check(samples); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		return nil
	})
	if err != nil {
		targets, terr := p.Targets()
		if terr != nil {
			t.Fatalf("still failing after %s: %v (targets: %v)", timeout, err, terr)
		}
		t.Fatalf("still failing after %s: %v (targets: %v)", timeout, err, targets)
	}
	return d
}
