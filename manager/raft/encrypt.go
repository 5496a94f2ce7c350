package raft

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	hraft "github.com/hashicorp/raft"
)

// Encryption at rest: with Config.DEK set, every log entry's data and every
// snapshot are sealed with AES-256-GCM under this manager's data-encryption
// key before they reach the disk, so the raft files hold no secret, CA key
// or join token in the clear. Raft's messages between managers are not
// touched (mutual TLS protects them) and each manager has a DEK of its own.
// The DEK lives outside the raft directory (node's key file), optionally
// wrapped by the cluster's unlock key (autolock).

// DEKSize is the size of a data-encryption key (AES-256).
const DEKSize = 32

var (
	// entryMagic starts a sealed entry: a NUL, which no change set (JSON)
	// or raft configuration (msgpack map) starts with, so entries written
	// before encryption was on still read.
	entryMagic = []byte("\x00shl1")
	// snapMagic starts a sealed snapshot.
	snapMagic = []byte("\x00shs1")
)

// ErrDecrypt: sealed raft data that this DEK does not open.
var ErrDecrypt = errors.New("raft: cannot decrypt: wrong data-encryption key or damaged data")

func newAEAD(dek []byte) (cipher.AEAD, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("raft: data-encryption key is %d bytes, want %d", len(dek), DEKSize)
	}
	block, err := aes.NewCipher(dek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealedLogs seals entry data on the way to the log store and opens it on
// the way back. The entry's index is authenticated with it, so entries
// cannot be swapped.
type sealedLogs struct {
	hraft.LogStore
	aead cipher.AEAD
}

func indexAAD(index uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], index)
	return b[:]
}

func (s *sealedLogs) seal(l *hraft.Log) *hraft.Log {
	if len(l.Data) == 0 {
		return l
	}
	c := *l
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("raft: read random nonce: %v", err)) // crypto/rand does not fail
	}
	out := append(append([]byte(nil), entryMagic...), nonce...)
	c.Data = s.aead.Seal(out, nonce, l.Data, indexAAD(l.Index))
	return &c
}

func (s *sealedLogs) open(l *hraft.Log) error {
	if !bytes.HasPrefix(l.Data, entryMagic) {
		return nil // written before encryption was on
	}
	rest := l.Data[len(entryMagic):]
	ns := s.aead.NonceSize()
	if len(rest) < ns+s.aead.Overhead() {
		return fmt.Errorf("entry %d: %w", l.Index, ErrDecrypt)
	}
	plain, err := s.aead.Open(nil, rest[:ns], rest[ns:], indexAAD(l.Index))
	if err != nil {
		return fmt.Errorf("entry %d: %w", l.Index, ErrDecrypt)
	}
	l.Data = plain
	return nil
}

func (s *sealedLogs) GetLog(index uint64, l *hraft.Log) error {
	if err := s.LogStore.GetLog(index, l); err != nil {
		return err
	}
	return s.open(l)
}

func (s *sealedLogs) StoreLog(l *hraft.Log) error { return s.LogStore.StoreLog(s.seal(l)) }

func (s *sealedLogs) StoreLogs(logs []*hraft.Log) error {
	sealed := make([]*hraft.Log, len(logs))
	for i, l := range logs {
		sealed[i] = s.seal(l)
	}
	return s.LogStore.StoreLogs(sealed)
}

// Snapshots are sealed in chunks of snapChunk bytes, each with its own
// nonce and its number (and whether it is the last) authenticated, so
// chunks cannot be dropped, reordered or cut off. The last chunk holds
// fewer than snapChunk bytes (possibly none), so a reader tells it by its
// size, and the plain size follows from the sealed size alone.
const snapChunk = 64 << 10

func chunkAAD(n uint64, last bool) []byte {
	b := make([]byte, 9)
	binary.BigEndian.PutUint64(b, n)
	if last {
		b[8] = 1
	}
	return b
}

// plainSize is the size of a sealed snapshot's contents.
func plainSize(sealed int64, overhead int) int64 {
	body := sealed - int64(len(snapMagic))
	full := int64(snapChunk + overhead)
	chunks := body/full + 1
	return body - chunks*int64(overhead)
}

type sealedSnapshots struct {
	hraft.SnapshotStore
	aead cipher.AEAD
}

func (s *sealedSnapshots) overhead() int { return s.aead.NonceSize() + s.aead.Overhead() }

func (s *sealedSnapshots) Create(version hraft.SnapshotVersion, index, term uint64, configuration hraft.Configuration,
	configurationIndex uint64, trans hraft.Transport) (hraft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	if _, err := sink.Write(snapMagic); err != nil {
		_ = sink.Cancel()
		return nil, err
	}
	return &sealedSink{SnapshotSink: sink, aead: s.aead, buf: make([]byte, 0, snapChunk)}, nil
}

func (s *sealedSnapshots) Open(id string) (*hraft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(rc, snapChunk+s.overhead())
	head, err := br.Peek(len(snapMagic))
	if err != nil || !bytes.Equal(head, snapMagic) {
		// Written before encryption was on (or empty): read as it is.
		return meta, struct {
			io.Reader
			io.Closer
		}{br, rc}, nil
	}
	_, _ = br.Discard(len(snapMagic))
	m := *meta
	m.Size = plainSize(meta.Size, s.overhead())
	return &m, &sealedReader{r: br, c: rc, aead: s.aead}, nil
}

type sealedSink struct {
	hraft.SnapshotSink
	aead cipher.AEAD
	buf  []byte
	n    uint64
	err  error
}

func (w *sealedSink) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	written := len(p)
	for len(p) > 0 {
		// A full chunk goes out only when more follows, so the last
		// chunk is always short.
		if len(w.buf) == snapChunk {
			if err := w.flush(false); err != nil {
				return 0, err
			}
		}
		take := min(snapChunk-len(w.buf), len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
	}
	return written, nil
}

func (w *sealedSink) flush(last bool) error {
	nonce := make([]byte, w.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		w.err = err
		return err
	}
	out := w.aead.Seal(nonce, nonce, w.buf, chunkAAD(w.n, last))
	w.n++
	w.buf = w.buf[:0]
	if _, err := w.SnapshotSink.Write(out); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *sealedSink) Close() error {
	if w.err == nil && len(w.buf) == snapChunk {
		_ = w.flush(false)
	}
	if w.err == nil {
		_ = w.flush(true)
	}
	if w.err != nil {
		_ = w.SnapshotSink.Cancel()
		return w.err
	}
	return w.SnapshotSink.Close()
}

type sealedReader struct {
	r    *bufio.Reader
	c    io.Closer
	aead cipher.AEAD
	n    uint64
	buf  []byte // opened, not yet read
	done bool
	err  error
}

func (r *sealedReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.next()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *sealedReader) next() {
	ns := r.aead.NonceSize()
	full := snapChunk + ns + r.aead.Overhead()
	chunk := make([]byte, full)
	got, err := io.ReadFull(r.r, chunk)
	last := false
	switch {
	case err == nil:
	case errors.Is(err, io.ErrUnexpectedEOF):
		last = true
	default:
		r.err = fmt.Errorf("snapshot: cut off after chunk %d: %w", r.n, ErrDecrypt)
		return
	}
	chunk = chunk[:got]
	if got < ns+r.aead.Overhead() {
		r.err = fmt.Errorf("snapshot: chunk %d is %d bytes: %w", r.n, got, ErrDecrypt)
		return
	}
	plain, oerr := r.aead.Open(nil, chunk[:ns], chunk[ns:], chunkAAD(r.n, last))
	if oerr != nil {
		r.err = fmt.Errorf("snapshot: chunk %d: %w", r.n, ErrDecrypt)
		return
	}
	r.n++
	r.buf, r.done = plain, last
}

func (r *sealedReader) Close() error { return r.c.Close() }
