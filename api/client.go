package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// StatusError is a non-2xx answer from the API.
type StatusError struct {
	Code    int
	Message string
	// RetryAfter is the server's Retry-After, for 429 and 503 answers.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string { return e.Message }

// Client talks to one daemon: over its unix socket, or over mutual TLS.
// Over TLS every call shares one HTTP/2 connection, kept open between
// calls until Close: a node makes a handful of calls a second to the same
// manager, and a TLS handshake per call (and connections left open) cost
// the leader more than the calls themselves.
type Client struct {
	base string
	http *http.Client
	// index is the highest X-Shoal-Index answered so far; sent with every
	// call so that a manager answers only once it has applied it.
	index atomic.Uint64
}

// NewClient returns a client for host, which is unix:///path/to/sock,
// tcp://HOST:PORT or HOST:PORT. TCP needs tlsConfig.
func NewClient(host string, tlsConfig *tls.Config) (*Client, error) {
	tr := &http.Transport{
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	base := "https://"
	switch {
	case strings.HasPrefix(host, "unix://"):
		path := strings.TrimPrefix(host, "unix://")
		if path == "" {
			return nil, fmt.Errorf("host %q: empty socket path", host)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		base = "http://shoal"
	default:
		addr := strings.TrimPrefix(host, "tcp://")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("host %q: want unix:///path or HOST:PORT: %w", host, err)
		}
		if tlsConfig == nil {
			return nil, fmt.Errorf("host %q: tcp needs a client certificate", host)
		}
		tr.TLSClientConfig = tlsConfig
		tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext
		// A custom dialer and TLS config turn HTTP/2 off unless forced.
		tr.ForceAttemptHTTP2 = true
		// The connection is long-lived and idle between beats: a ping after
		// 5 s without a frame finds a dead peer (a crashed or cut-off
		// manager) so the next call dials afresh instead of waiting on it.
		tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 5 * time.Second, PingTimeout: 5 * time.Second}
		// Beats keep it busy; one left idle this long (a client dropped while
		// a long poll ran on it) goes.
		tr.IdleConnTimeout = 90 * time.Second
		base += addr
	}
	return &Client{base: base, http: &http.Client{Transport: tr}}, nil
}

// Close closes the client's connections once their calls end.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
			if e.Message == "" {
				e.Message = resp.Status
			}
		}
		se := &StatusError{Code: resp.StatusCode, Message: e.Message}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			se.RetryAfter = time.Duration(secs) * time.Second
		}
		return se
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send does req with the highest index seen so far and records the answer's.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if i := c.index.Load(); i > 0 {
		req.Header.Set(HeaderIndex, strconv.FormatUint(i, 10))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if i, err := strconv.ParseUint(resp.Header.Get(HeaderIndex), 10, 64); err == nil {
		for {
			old := c.index.Load()
			if i <= old || c.index.CompareAndSwap(old, i) {
				break
			}
		}
	}
	return resp, nil
}

// IsStatus reports whether err is an API answer with the given code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

func (c *Client) Info(ctx context.Context) (Info, error) {
	var out Info
	return out, c.do(ctx, http.MethodGet, "/v1/info", nil, &out)
}

func (c *Client) Nodes(ctx context.Context) ([]NodeView, error) {
	var out []NodeView
	return out, c.do(ctx, http.MethodGet, "/v1/nodes", nil, &out)
}

// Node finds a node by ID, unique ID prefix or hostname.
func (c *Client) Node(ctx context.Context, ref string) (NodeView, error) {
	var out NodeView
	return out, c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(ref), nil, &out)
}

func (c *Client) UpdateNode(ctx context.Context, ref string, u NodeUpdate) (NodeView, error) {
	var out NodeView
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/update", u, &out)
}

func (c *Client) PromoteNode(ctx context.Context, ref string) (NodeView, error) {
	var out NodeView
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/promote", nil, &out)
}

func (c *Client) DemoteNode(ctx context.Context, ref string) (NodeView, error) {
	var out NodeView
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/demote", nil, &out)
}

func (c *Client) RemoveNode(ctx context.Context, ref string, force bool) error {
	q := ""
	if force {
		q = "?force=1"
	}
	return c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(ref)+q, nil, nil)
}

func (c *Client) JoinTokens(ctx context.Context) (JoinTokens, error) {
	var out JoinTokens
	return out, c.do(ctx, http.MethodGet, "/v1/join-tokens", nil, &out)
}

// RotateJoinToken replaces the token of role; the old one stops working.
func (c *Client) RotateJoinToken(ctx context.Context, role NodeRole) (JoinTokens, error) {
	var out JoinTokens
	return out, c.do(ctx, http.MethodPost, "/v1/join-tokens/rotate?role="+url.QueryEscape(string(role)), nil, &out)
}

// Leave makes the local node leave the cluster; it is served on the unix socket only.
func (c *Client) Leave(ctx context.Context, force bool) error {
	q := ""
	if force {
		q = "?force=1"
	}
	return c.do(ctx, http.MethodPost, "/v1/leave"+q, nil, nil)
}

func (c *Client) Join(ctx context.Context, req JoinRequest) (JoinResponse, error) {
	var out JoinResponse
	return out, c.do(ctx, http.MethodPost, "/v1/join", req, &out)
}

func (c *Client) RaftJoin(ctx context.Context, req RaftJoinRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/raft/join", req, nil)
}

// Heartbeat sends hb, or an empty beat when hb is nil: nothing changed
// since the last beat a manager took.
func (c *Client) Heartbeat(ctx context.Context, hb *Heartbeat) (HeartbeatResponse, error) {
	var out HeartbeatResponse
	if hb == nil { // nothing changed: an empty beat
		return out, c.do(ctx, http.MethodPost, "/v1/session/heartbeat", nil, &out)
	}
	return out, c.do(ctx, http.MethodPost, "/v1/session/heartbeat", hb, &out)
}

func (c *Client) RenewCert(ctx context.Context, req CertRequest) (CertResponse, error) {
	var out CertResponse
	return out, c.do(ctx, http.MethodPost, "/v1/certs/renew", req, &out)
}

// LeaveCluster removes the calling node from the cluster; the leader
// answers it for the node named in the caller's certificate.
func (c *Client) LeaveCluster(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/session/leave", nil, nil)
}

func (c *Client) CreateService(ctx context.Context, spec ServiceSpec) (ServiceView, error) {
	var out ServiceView
	return out, c.do(ctx, http.MethodPost, "/v1/services", spec, &out)
}

func (c *Client) Services(ctx context.Context) ([]ServiceView, error) {
	var out []ServiceView
	return out, c.do(ctx, http.MethodGet, "/v1/services", nil, &out)
}

// Service finds a service by ID, unique ID prefix or name.
func (c *Client) Service(ctx context.Context, ref string) (ServiceView, error) {
	var out ServiceView
	return out, c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(ref), nil, &out)
}

func (c *Client) UpdateService(ctx context.Context, ref string, u ServiceUpdate) (ServiceView, error) {
	var out ServiceView
	return out, c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(ref)+"/update", u, &out)
}

func (c *Client) RemoveService(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(ref), nil, nil)
}

// Tasks lists tasks, newest state first within a slot.
func (c *Client) Tasks(ctx context.Context, f TaskFilter) ([]*Task, error) {
	q := url.Values{}
	if f.Service != "" {
		q.Set("service", f.Service)
	}
	if f.Node != "" {
		q.Set("node", f.Node)
	}
	var out []*Task
	return out, c.do(ctx, http.MethodGet, "/v1/tasks?"+q.Encode(), nil, &out)
}

// WaitAssignments returns the calling node's tasks and network state once a
// task of the node is newer than since or the network state no longer has
// networkSum, or after the server's wait limit.
func (c *Client) WaitAssignments(ctx context.Context, since uint64, networkSum string) (Assignments, error) {
	var out Assignments
	q := "?since=" + strconv.FormatUint(since, 10) + "&netsum=" + url.QueryEscape(networkSum)
	return out, c.do(ctx, http.MethodGet, "/v1/session/assignments"+q, nil, &out)
}

func (c *Client) ReportTaskStatus(ctx context.Context, updates []TaskStatusUpdate) error {
	return c.do(ctx, http.MethodPost, "/v1/session/status", updates, nil)
}

// ServiceLogs streams a service's task logs into w until ctx ends, or until
// the logs so far are written when follow is false.
func (c *Client) ServiceLogs(ctx context.Context, ref string, follow bool, w io.Writer) error {
	q := ""
	if follow {
		q = "?follow=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/services/"+url.PathEscape(ref)+"/logs"+q, nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return fmt.Errorf("logs %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return &StatusError{Code: resp.StatusCode, Message: e.Message}
	}
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *Client) CreateNetwork(ctx context.Context, spec NetworkSpec) (Network, error) {
	var out Network
	return out, c.do(ctx, http.MethodPost, "/v1/networks", spec, &out)
}

func (c *Client) Networks(ctx context.Context) ([]Network, error) {
	var out []Network
	return out, c.do(ctx, http.MethodGet, "/v1/networks", nil, &out)
}

// Network finds a network by ID, unique ID prefix or name.
func (c *Client) Network(ctx context.Context, ref string) (Network, error) {
	var out Network
	return out, c.do(ctx, http.MethodGet, "/v1/networks/"+url.PathEscape(ref), nil, &out)
}

func (c *Client) RemoveNetwork(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/networks/"+url.PathEscape(ref), nil, nil)
}
