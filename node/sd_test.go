package node

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServeSDOnWorker(t *testing.T) {
	n := &Node{}
	rec := httptest.NewRecorder()
	n.serveSD(rec, httptest.NewRequest(http.MethodGet, "/sd/prometheus", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status: got %d, want %d", rec.Code, http.StatusServiceUnavailable)
	}
	if body := rec.Body.String(); !strings.Contains(body, "not a manager") {
		t.Errorf("body: got %q, want it to say the node is not a manager", body)
	}
}
