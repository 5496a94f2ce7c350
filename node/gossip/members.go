package gossip

import (
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Lock order: memberlist calls the delegates below while holding its own
// node lock, and they take g.mu. So g.mu is never held while calling into
// memberlist, and nothing here blocks.

// events is memberlist's EventDelegate.
type events struct{ g *Gossip }

func (e events) NotifyJoin(n *memberlist.Node)   { e.g.observe(n) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.g.observe(n) }

// NotifyLeave is called for both failures and graceful leaves. memberlist's
// Node.State is not filled in (v0.5.4 keeps the state beside the Node), so a
// leave is told from a failure by the leave intent the node sent first.
func (e events) NotifyLeave(n *memberlist.Node) {
	g := e.g
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.members[n.Name]
	if m == nil {
		meta, session, _ := decodeMeta(n.Meta)
		m = &member{Member: Member{ID: n.Name, Addr: n.Address(), Meta: meta}, session: session}
		g.members[n.Name] = m
	}
	if m.leaving {
		g.setStateLocked(m, StateLeft)
	} else {
		g.setStateLocked(m, StateDead)
	}
}

// observe records a member memberlist reports alive, new or updated.
func (g *Gossip) observe(n *memberlist.Node) {
	meta, session, err := decodeMeta(n.Meta)
	if err != nil {
		g.log.Debug("member with unreadable meta", "member", n.Name, "err", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.members[n.Name]
	if m == nil {
		m = &member{Member: Member{ID: n.Name}}
		g.members[n.Name] = m
	}
	prev := m.Member
	if session != m.session {
		// A new run of the node: an old leave intent no longer applies.
		m.leaving = false
		m.session = session
	}
	m.Addr = n.Address()
	m.Meta = meta
	m.State = StateAlive
	if m.Member != prev {
		g.emitLocked(m.Member, prev.State)
	}
}

// setStateLocked moves m to state s and tells subscribers. g.mu is held.
func (g *Gossip) setStateLocked(m *member, s MemberState) {
	if m.State == s {
		return
	}
	prev := m.State
	m.State = s
	g.emitLocked(m.Member, prev)
}

// onLogLine sees every memberlist log line. memberlist has no API for the
// suspect state; its probe logs the one it starts suspecting, and a later
// direct ack (pings.NotifyPingComplete) clears it. Suspicions this node only
// hears about from others are not seen: those members stay alive until dead.
func (g *Gossip) onLogLine(msg string) {
	id, ok := suspectFromLog(msg)
	if !ok || id == g.id {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.members[id]; m != nil && m.State == StateAlive {
		g.setStateLocked(m, StateSuspect)
	}
}

// pings is memberlist's PingDelegate: a direct ack proves a suspect alive.
type pings struct{ g *Gossip }

func (pings) AckPayload() []byte { return nil }

func (p pings) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	g := p.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.members[other.Name]; m != nil && m.State == StateSuspect {
		g.setStateLocked(m, StateAlive)
	}
}

// delegate is memberlist's Delegate: local metadata and leave intents.
type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.meta) > limit {
		return nil // cannot happen: encodeMeta checks memberlist.MetaMaxSize
	}
	return append([]byte(nil), d.g.meta...)
}

// NotifyMsg receives leave intents. The first copy of an intent marks the
// member leaving (or turns an already reported death into a leave) and is
// passed on, so the news spreads even if the leaving node stops early.
func (d delegate) NotifyMsg(b []byte) {
	g := d.g
	li, err := decodeLeaveIntent(b)
	if err != nil {
		g.log.Debug("ignoring gossip message", "err", err)
		return
	}
	g.mu.Lock()
	m := g.members[li.ID]
	if m == nil || m.session != li.Session || m.leaving {
		g.mu.Unlock()
		return
	}
	m.leaving = true
	if m.State == StateDead {
		g.setStateLocked(m, StateLeft)
	}
	closed := g.closed
	g.mu.Unlock()
	if !closed {
		g.queue.QueueBroadcast(&intentBroadcast{intent: li})
	}
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

func (delegate) LocalState(bool) []byte            { return nil }
func (delegate) MergeRemoteState(_ []byte, _ bool) {}

// intentBroadcast is a leave intent in memberlist's broadcast queue.
type intentBroadcast struct {
	intent leaveIntent
	done   chan struct{} // closed when sent enough times or replaced; may be nil
	once   sync.Once
}

func (b *intentBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*intentBroadcast)
	return ok && o.intent.ID == b.intent.ID
}

func (b *intentBroadcast) Message() []byte { return encodeLeaveIntent(b.intent) }

func (b *intentBroadcast) Finished() {
	b.once.Do(func() {
		if b.done != nil {
			close(b.done)
		}
	})
}

// Subscribe returns a channel of member changes and a function that ends the
// subscription and closes the channel. Events are queued without bound per
// subscriber, so memberlist never waits on a slow reader and none is
// dropped. Shutdown closes every subscription's channel.
func (g *Gossip) Subscribe() (<-chan Event, func()) {
	s := &subscriber{
		wake: make(chan struct{}, 1),
		out:  make(chan Event, 16),
		done: make(chan struct{}),
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		close(s.out)
		return s.out, func() {}
	}
	g.subs[s] = struct{}{}
	g.mu.Unlock()
	go s.run()
	cancel := func() {
		g.mu.Lock()
		delete(g.subs, s)
		g.mu.Unlock()
		s.close()
	}
	return s.out, cancel
}

// emitLocked queues an event for every subscriber. g.mu is held.
func (g *Gossip) emitLocked(m Member, prev MemberState) {
	if g.closed {
		return
	}
	g.log.Debug("member changed", "member", m.ID, "state", m.State, "prev", prev, "addr", m.Addr)
	for s := range g.subs {
		s.push(Event{Member: m, Prev: prev})
	}
}

type subscriber struct {
	mu    sync.Mutex
	queue []Event
	wake  chan struct{}
	out   chan Event
	done  chan struct{}
	once  sync.Once
}

func (s *subscriber) push(e Event) {
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() { s.once.Do(func() { close(s.done) }) }

func (s *subscriber) run() {
	defer close(s.out)
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, e := range q {
			select {
			case s.out <- e:
			case <-s.done:
				return
			}
		}
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}
