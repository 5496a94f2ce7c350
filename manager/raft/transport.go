package raft

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

const (
	// transportTimeout is the I/O deadline of one raft RPC (scaled up for snapshots).
	transportTimeout = 10 * time.Second
	// transportMaxPool is how many idle connections are kept per peer.
	transportMaxPool = 3
	// handshakeTimeout bounds the TLS handshake of an accepted connection, so a peer that
	// connects and stays silent does not hold a goroutine forever.
	handshakeTimeout = 10 * time.Second
)

// streamLayer is a hraft.StreamLayer over TCP, wrapped in TLS when a config is given.
// The same *tls.Config serves both the listener and the dialer (mutual TLS).
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	tls       *tls.Config
	logger    *slog.Logger
}

var _ hraft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer listens on bind and advertises advertise (or the listener's own address
// when empty). The advertised address must be a concrete TCP address peers can dial.
func newStreamLayer(bind, advertise string, tlsConf *tls.Config, logger *slog.Logger) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft: listen %s: %w", bind, err)
	}
	var adv net.Addr = ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft: advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	tcp, ok := adv.(*net.TCPAddr)
	if !ok || tcp.IP == nil || tcp.IP.IsUnspecified() || tcp.Port == 0 {
		ln.Close()
		return nil, fmt.Errorf("raft: advertise address %s is not dialable; set AdvertiseAddr", adv)
	}
	return &streamLayer{ln: ln, advertise: adv, tls: tlsConf, logger: logger}, nil
}

// Accept waits for the next connection. With TLS the handshake is done lazily, on the
// first read or write, by the transport's per-connection goroutine.
func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if s.tls == nil {
		return c, nil
	}
	return &serverConn{Conn: tls.Server(c, s.tls), logger: s.logger}, nil
}

// Close stops the listener.
func (s *streamLayer) Close() error { return s.ln.Close() }

// Addr is the advertised address; hashicorp/raft uses it as this node's address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer and, with TLS, completes the handshake before returning.
func (s *streamLayer) Dial(addr hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = transportTimeout
	}
	if s.tls == nil {
		c, err := net.DialTimeout("tcp", string(addr), timeout)
		if err != nil {
			return nil, fmt.Errorf("raft: dial %s: %w", addr, err)
		}
		return c, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.tls}
	c, err := d.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, fmt.Errorf("raft: tls dial %s: %w", addr, err)
	}
	return c, nil
}

// serverConn is an accepted TLS connection whose handshake runs once, with a deadline,
// before the first read or write.
type serverConn struct {
	*tls.Conn
	logger *slog.Logger
	once   sync.Once
	err    error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		if err := c.Conn.HandshakeContext(ctx); err != nil {
			c.err = fmt.Errorf("raft: tls handshake from %s: %w", c.RemoteAddr(), err)
			c.logger.Warn("rejected raft connection", "remote", c.RemoteAddr().String(), "err", err)
		}
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
