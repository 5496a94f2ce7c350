package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/httpserve"
	"github.com/shoal-dev/shoal/manager/deks"
	"github.com/shoal-dev/shoal/store"
)

// A manager's raft data is sealed with its data-encryption key (DEK), kept
// in DATA/keys/raft-dek.json (root only), outside the raft directory. With
// autolock the file holds the DEK wrapped with the cluster's unlock key, and
// a restarted manager serves nothing but shoal unlock on its socket until it
// is given that key.

func (p paths) dekFile() deks.KeyFile {
	return deks.KeyFile{Path: filepath.Join(p.dir, "keys", "raft-dek.json")}
}

// lockedMessage answers every call to a locked manager.
const lockedMessage = "this manager is locked (autolock): it serves nothing until it is unlocked; run shoal unlock and give it the cluster's unlock key (shoal unlock-key on an unlocked manager prints it)"

// waitUnlock serves the socket with nothing but POST /v1/unlock while this
// manager's key file is wrapped, until a call gives the right key.
func (n *Node) waitUnlock(ctx context.Context) error {
	kf := n.paths.dekFile()
	locked, err := kf.Locked()
	if err != nil || !locked || n.dek != nil {
		return err
	}
	path := n.paths.socket()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("restrict %s to root: %w", path, err)
	}
	unlocked := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/unlock", func(w http.ResponseWriter, r *http.Request) {
		var req api.UnlockKey
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			localError(w, http.StatusBadRequest, "unlock: want {\"key\": \"SHLKEY-1-...\"}")
			return
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.dek != nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		dek, err := kf.Load(req.Key)
		if err != nil {
			n.log.Warn("unlock refused", "err", err)
			localError(w, http.StatusBadRequest, "unlock: "+err.Error())
			return
		}
		n.dek, n.wrappedWith = dek, req.Key
		n.log.Info("manager unlocked")
		close(unlocked)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		localError(w, http.StatusLocked, lockedMessage)
	})
	srv := httpserve.New(mux)
	go func() { _ = srv.Serve(ln) }()
	n.log.Warn("manager locked (autolock): waiting for shoal unlock")
	select {
	case <-ctx.Done():
		_ = srv.Close()
		return ctx.Err()
	case <-unlocked:
	}
	// Let the unlock answer go out before the socket closes.
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = os.Remove(path)
	return nil
}

// managerDEK returns the DEK for raft: the one unlocked, the key file's, or
// a new one saved now (wrapped at once when the new cluster has autolock).
func (n *Node) managerDEK(st state) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dek != nil {
		return n.dek, nil
	}
	kf := n.paths.dekFile()
	dek, err := kf.Load("")
	if err != nil {
		return nil, err
	}
	if dek == nil {
		dek = deks.NewDEK()
		wrap := ""
		if c := st.PendingCluster; c != nil && c.AutoLock {
			wrap = c.UnlockKey
		}
		if err := kf.Save(dek, wrap); err != nil {
			return nil, err
		}
		n.wrappedWith = wrap
	}
	n.dek = dek
	return dek, nil
}

// followUnlockKey keeps the key file wrapped with the cluster's current
// unlock key (plain when autolock is off), so a rotation or a manager that
// joins an autolocked cluster is covered within a second.
func (n *Node) followUnlockKey(ctx context.Context, st *store.Store) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var want string
		st.View(func(tx store.ReadTx) {
			if c := tx.Cluster(); c != nil && c.AutoLock {
				want = c.UnlockKey
			}
		})
		n.mu.Lock()
		dek, have := n.dek, n.wrappedWith
		n.mu.Unlock()
		if dek != nil && want != have && (want == "" || deks.ValidUnlockKey(want) == nil) {
			if err := n.paths.dekFile().Save(dek, want); err != nil {
				n.log.Error("rewrap the key file with the cluster's unlock key", "err", err)
			} else {
				n.mu.Lock()
				n.wrappedWith = want
				n.mu.Unlock()
				n.log.Info("key file wrapped with the cluster's unlock key", "autolock", want != "")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
