package controlapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/httpserve"
	"github.com/shoal-dev/shoal/store"
)

// serviceLogs merges the log streams of a service's tasks, fetched from the
// nodes that run them, one prefixed line at a time.
func (s *Server) serviceLogs(w http.ResponseWriter, r *http.Request) {
	follow := r.URL.Query().Get("follow") != ""
	type source struct {
		prefix, url string
	}
	var sources []source
	var err error
	s.cfg.Store.View(func(tx store.ReadTx) {
		var svc *api.Service
		if svc, err = findService(tx, r.PathValue("ref")); err != nil {
			return
		}
		for _, t := range tx.TasksOfService(svc.ID) {
			n := tx.Node(t.NodeID)
			if n == nil || n.Endpoints.API == "" || t.Status.State.Before(api.TaskStarting) {
				continue
			}
			name := fmt.Sprintf("%s.%d", svc.Spec.Name, t.Slot)
			if t.Slot == 0 {
				name = svc.Spec.Name + "." + n.ID
			}
			q := ""
			if follow && !t.Status.State.Terminal() {
				q = "?follow=1"
			}
			sources = append(sources, source{
				prefix: fmt.Sprintf("%s.%s@%s    | ", name, t.ID[:12], n.Description.Hostname),
				url:    "https://" + n.Endpoints.API + "/v1/node/tasks/" + url.PathEscape(t.ID) + "/logs" + q,
			})
		}
	})
	if err != nil {
		writeStoreError(w, "service logs", err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	beforeWrite := httpserve.Stream(w)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	writeLine := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		beforeWrite()
		_, _ = io.WriteString(w, line)
		if flusher != nil {
			flusher.Flush()
		}
	}
	client := &http.Client{Transport: s.fwd.tr}
	var wg sync.WaitGroup
	for _, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := streamLines(r.Context(), client, src.url, func(line string) { writeLine(src.prefix + line) }); err != nil && r.Context().Err() == nil {
				writeLine(fmt.Sprintf("%serror: %v\n", src.prefix, err))
			}
		}()
	}
	wg.Wait()
}

func streamLines(ctx context.Context, c *http.Client, u string, emit func(string)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node answered %s", resp.Status)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if line[len(line)-1] != '\n' {
				line += "\n"
			}
			emit(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
