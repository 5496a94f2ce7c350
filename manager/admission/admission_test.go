package admission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestLimiter(t *testing.T) {
	type step struct {
		at     time.Duration // since t0
		keys   []string
		ok     bool
		wait   time.Duration
		repeat int
	}
	tests := []struct {
		name  string
		burst int
		rate  float64
		steps []step
	}{
		{"burst then rate", 3, 1, []step{
			{at: 0, keys: []string{"a"}, ok: true, repeat: 3},
			{at: 0, keys: []string{"a"}, ok: false, wait: time.Second},
			{at: 500 * time.Millisecond, keys: []string{"a"}, ok: false, wait: 500 * time.Millisecond},
			{at: time.Second, keys: []string{"a"}, ok: true},
			{at: time.Second, keys: []string{"b"}, ok: true},
		}},
		{"all keys or none", 1, 1, []step{
			{at: 0, keys: []string{"src1", "tok"}, ok: true},
			{at: 0, keys: []string{"src2", "tok"}, ok: false, wait: time.Second},
			// src2 was not charged for the refused call.
			{at: 0, keys: []string{"src2", "tok2"}, ok: true},
		}},
		{"refills no further than the burst", 2, 1, []step{
			{at: time.Hour, keys: []string{"a"}, ok: true, repeat: 2},
			{at: time.Hour, keys: []string{"a"}, ok: false, wait: time.Second},
		}},
		{"rate 0 disables", 1, 0, []step{
			{at: 0, keys: []string{"a"}, ok: true, repeat: 100},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(tt.burst, tt.rate)
			for i, s := range tt.steps {
				for range max(1, s.repeat) {
					wait, ok := l.Allow(t0.Add(s.at), s.keys...)
					if ok != s.ok || wait != s.wait {
						t.Fatalf("step %d: got (%v, %v), want (%v, %v)", i, wait, ok, s.wait, s.ok)
					}
				}
			}
		})
	}
}

func TestLimiterBounded(t *testing.T) {
	l := NewLimiter(1, 1)
	for i := range maxBuckets {
		if _, ok := l.Allow(t0, string(rune(i))+"k"); !ok {
			t.Fatalf("key %d refused", i)
		}
	}
	if _, ok := l.Allow(t0, "one more"); ok {
		t.Fatalf("a new key past %d busy buckets was allowed", maxBuckets)
	}
	// Once the others have refilled they are forgotten and new keys pass.
	if _, ok := l.Allow(t0.Add(time.Second), "one more"); !ok {
		t.Fatalf("a new key was refused after the others refilled")
	}
	if len(l.buckets) > maxBuckets {
		t.Fatalf("got %d buckets, want at most %d", len(l.buckets), maxBuckets)
	}
}

func newTestAdmission(t *testing.T) (*Admission, *store.Store, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := store.New(clk, log)
	if err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.PutCluster(&api.Cluster{ID: "c1"}) }); err != nil {
		t.Fatalf("put cluster: %v", err)
	}
	return New(Config{Store: st, Clock: clk, Logger: log, JoinBurst: DefaultJoinBurst, JoinRate: DefaultJoinRate}), st, clk
}

func TestAddNodeUniqueNames(t *testing.T) {
	a, st, _ := newTestAdmission(t)
	ctx := context.Background()
	add := func(id, host string) error {
		return a.AddNode(ctx, &api.Node{ID: id, Description: api.NodeDescription{Hostname: host}, Status: api.NodeStatus{State: api.NodeStateUnknown}})
	}
	if err := add("n1", "h1"); err != nil {
		t.Fatalf("first h1: %v", err)
	}
	// Many at once: exactly one more name wins.
	errs := make(chan error, 20)
	for i := range 20 {
		go func() { errs <- add(string(rune('a'+i)), "h2") }()
	}
	won := 0
	for range 20 {
		if err := <-errs; err == nil {
			won++
		} else if !errors.Is(err, ErrNameTaken) {
			t.Fatalf("got %v, want ErrNameTaken", err)
		}
	}
	if won != 1 {
		t.Fatalf("got %d nodes named h2, want 1", won)
	}
	if err := add("n2", "h1"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("second h1 while n1 is unknown: got %v, want ErrNameTaken", err)
	}
	if err := st.Update(ctx, func(tx *store.Tx) error {
		n := tx.Node("n1")
		n.Status.State = api.NodeStateDown
		return tx.PutNode(n)
	}); err != nil {
		t.Fatal(err)
	}
	if err := add("n2", "h1"); err != nil {
		t.Fatalf("h1 again once n1 is down: %v", err)
	}
}

func TestReap(t *testing.T) {
	a, st, clk := newTestAdmission(t)
	ctx := context.Background()
	notAfter := t0.Add(24 * time.Hour)
	put := func(n *api.Node) {
		t.Helper()
		n.Certs = []api.IssuedCert{{Serial: n.ID + "-serial", Role: api.RoleWorker, NotAfter: notAfter}}
		if err := st.Update(ctx, func(tx *store.Tx) error { return tx.PutNode(n) }); err != nil {
			t.Fatal(err)
		}
	}
	put(&api.Node{ID: "phantom", Status: api.NodeStatus{State: api.NodeStateDown}})
	put(&api.Node{ID: "beat", FirstHeartbeatAt: t0, Status: api.NodeStatus{State: api.NodeStateDown}})
	put(&api.Node{ID: "ready", Status: api.NodeStatus{State: api.NodeStateReady}})
	clk.Advance(DefaultReapAfter - time.Second)
	put(&api.Node{ID: "young", Status: api.NodeStatus{State: api.NodeStateUnknown}})
	if err := a.Reap(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if got := nodeIDs(st); len(got) != 4 {
		t.Fatalf("reaped too early: nodes %v", got)
	}
	clk.Advance(time.Second)
	if err := a.Reap(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	want := []string{"beat", "ready", "young"}
	if got := nodeIDs(st); !slices.Equal(got, want) {
		t.Fatalf("got nodes %v, want %v", got, want)
	}
	if !a.IsRevoked("phantom-serial") {
		t.Errorf("reaped node's certificate not revoked")
	}
	// Expired revocations are forgotten.
	if err := a.Reap(ctx, notAfter); err != nil {
		t.Fatal(err)
	}
	if a.IsRevoked("phantom-serial") {
		t.Errorf("expired certificate still on the deny list")
	}
}

func TestGuardTLS(t *testing.T) {
	a, st, _ := newTestAdmission(t)
	cert := &x509.Certificate{SerialNumber: big.NewInt(0xabc)}
	cfg := a.GuardTLS(&tls.Config{})
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	if err := cfg.VerifyConnection(cs); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if err := st.Update(context.Background(), func(tx *store.Tx) error {
		c := tx.Cluster()
		Revoke(c, &api.Node{ID: "n1", Certs: []api.IssuedCert{{Serial: "abc", Role: api.RoleManager, NotAfter: t0.Add(time.Hour)}}}, api.RoleManager)
		return tx.PutCluster(c)
	}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.VerifyConnection(cs); err == nil {
		t.Fatalf("revoked certificate accepted")
	}
}

func nodeIDs(st *store.Store) []string {
	var ids []string
	st.View(func(tx store.ReadTx) {
		for _, n := range tx.Nodes() {
			ids = append(ids, n.ID)
		}
	})
	return ids
}
