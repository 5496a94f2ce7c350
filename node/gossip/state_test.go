package gossip

import (
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/hashicorp/memberlist"
)

// newOffline returns a Gossip without memberlist, to drive its delegates by hand.
func newOffline(id string) *Gossip {
	g := &Gossip{
		id:      id,
		session: "self",
		log:     slog.New(slog.DiscardHandler),
		members: map[string]*member{},
		subs:    map[*subscriber]struct{}{},
	}
	g.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 3 }, RetransmitMult: 4}
	return g
}

func mlNode(t *testing.T, id, session string, port uint16) *memberlist.Node {
	t.Helper()
	meta, err := encodeMeta(Meta{Role: "worker"}, session)
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: id, Addr: net.IPv4(127, 0, 0, 1), Port: port, Meta: meta}
}

func TestStateTransitions(t *testing.T) {
	intent := func(id, session string) []byte { return encodeLeaveIntent(leaveIntent{ID: id, Session: session}) }
	type step struct {
		name string
		do   func(t *testing.T, g *Gossip)
		want MemberState
	}
	join := step{"join", func(t *testing.T, g *Gossip) { events{g}.NotifyJoin(mlNode(t, "b", "s1", 7946)) }, StateAlive}
	leave := step{"memberlist leave", func(t *testing.T, g *Gossip) { events{g}.NotifyLeave(mlNode(t, "b", "s1", 7946)) }, ""}
	suspect := step{"probe log", func(t *testing.T, g *Gossip) {
		g.onLogLine("Suspect b has failed, no acks received")
	}, StateSuspect}
	ack := step{"ack", func(t *testing.T, g *Gossip) {
		pings{g}.NotifyPingComplete(&memberlist.Node{Name: "b"}, 0, nil)
	}, StateAlive}
	msg := func(name string, b []byte, want MemberState) step {
		return step{name, func(t *testing.T, g *Gossip) { delegate{g}.NotifyMsg(b) }, want}
	}
	with := func(s step, want MemberState) step { s.want = want; return s }

	tests := []struct {
		name  string
		steps []step
	}{
		{"failure", []step{join, with(leave, StateDead)}},
		{"leave intent first", []step{join, msg("intent", intent("b", "s1"), StateAlive), with(leave, StateLeft)}},
		{"leave intent after the death", []step{join, with(leave, StateDead), msg("intent", intent("b", "s1"), StateLeft)}},
		{"intent of an older run ignored", []step{join, msg("intent", intent("b", "s0"), StateAlive), with(leave, StateDead)}},
		{"garbage message ignored", []step{join, msg("garbage", []byte{9, 9}, StateAlive), with(leave, StateDead)}},
		{"suspect then ack", []step{join, suspect, ack}},
		{"suspect then dead", []step{join, suspect, with(leave, StateDead)}},
		{"ack does not revive the dead", []step{join, with(leave, StateDead), with(ack, StateDead)}},
		{"late suspicion does not revive the dead", []step{join, with(leave, StateDead), with(suspect, StateDead)}},
		{"rejoin after death", []step{join, with(leave, StateDead), join}},
		{"new run clears the leave intent", []step{
			join, msg("intent", intent("b", "s1"), StateAlive),
			step{"rejoin as s2", func(t *testing.T, g *Gossip) { events{g}.NotifyJoin(mlNode(t, "b", "s2", 7947)) }, StateAlive},
			step{"crash", func(t *testing.T, g *Gossip) { events{g}.NotifyLeave(mlNode(t, "b", "s2", 7947)) }, StateDead},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newOffline("a")
			for _, s := range tt.steps {
				s.do(t, g)
				if got, _ := g.State("b"); got != s.want {
					t.Fatalf("after %s: got %q, want %q", s.name, got, s.want)
				}
			}
		})
	}
}

func TestSubscriberGetsEveryEventInOrder(t *testing.T) {
	g := newOffline("a")
	ch, cancel := g.Subscribe()
	defer cancel()
	// Far more changes than the channel buffers, with nobody reading:
	// memberlist's callbacks must not block and nothing may be lost.
	const n = 200
	for i := range n {
		port := uint16(7000 + i)
		events{g}.NotifyJoin(mlNode(t, "b", "s1", port))
	}
	for i := range n {
		ev := <-ch
		if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(7000+i)); ev.Member.Addr != want {
			t.Fatalf("event %d: got addr %s, want %s", i, ev.Member.Addr, want)
		}
	}
	cancel()
	cancel() // idempotent
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
}
