// Command shoal-sim runs many hollow workers in one process, for measuring
// the control plane at scale: each joins with the worker token, gets its own
// node identity and certificate, and runs the real agent session over a
// simulated executor. A unix control socket kills, pauses and resumes
// nodes, reports the process's footprint and serves pprof.
//
//	shoal-sim --join 10.0.0.1:2377 --token-file tok --advertise-addr 10.0.0.9 --nodes 1000 --control /run/sim.sock
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/agent/exec/simexec"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s\n", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	join, token, tokenFile, addr, prefix, control, logLevel string
	nodes, joinParallel                                     int
	sim                                                     simexec.Config
}

func parse(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("shoal-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.join, "join", "", "a manager's API address, HOST[:PORT] (required)")
	fs.StringVar(&o.token, "token", "", "worker join token (or --token-file, or env SHOAL_TOKEN)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the worker join token")
	fs.StringVar(&o.addr, "advertise-addr", "", "IP every hollow node advertises (required)")
	fs.IntVar(&o.nodes, "nodes", 10, "hollow nodes to run")
	fs.IntVar(&o.joinParallel, "join-parallel", 8, "joins in flight at once")
	fs.StringVar(&o.prefix, "hostname-prefix", "sim", "hostnames are PREFIX-0001, PREFIX-0002, ...")
	fs.StringVar(&o.control, "control", "", "unix socket of the control API (none if empty)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	fs.DurationVar(&o.sim.PrepareLatency, "prepare-latency", 50*time.Millisecond, "simulated time to prepare a task")
	fs.DurationVar(&o.sim.StartLatency, "start-latency", 50*time.Millisecond, "simulated time to start a task")
	fs.Float64Var(&o.sim.FailureRate, "failure-rate", 0, "share of task starts that fail, 0 to 1")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case o.join == "":
		return o, errors.New("--join: a manager's address is required")
	case net.ParseIP(o.addr) == nil:
		return o, fmt.Errorf("--advertise-addr %q: want an IP address", o.addr)
	case o.nodes < 1:
		return o, fmt.Errorf("--nodes %d: want at least 1", o.nodes)
	case o.joinParallel < 1:
		return o, fmt.Errorf("--join-parallel %d: want at least 1", o.joinParallel)
	}
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return o, fmt.Errorf("--token-file: %w", err)
		}
		o.token = string(b)
	}
	if o.token == "" {
		o.token = getenv("SHOAL_TOKEN")
	}
	o.token = strings.TrimSpace(o.token)
	if o.token == "" {
		return o, errors.New("a worker join token is required: --token, --token-file or SHOAL_TOKEN")
	}
	return o, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o, err := parse(args, stderr, getenv)
	if err != nil {
		return err
	}
	level, err := parseLevel(o.logLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	s := newSim(o, log)
	if o.control != "" {
		stopControl, err := s.serveControl(o.control)
		if err != nil {
			return err
		}
		defer stopControl()
	}
	start := time.Now()
	if err := s.joinAll(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "shoal-sim: %d hollow nodes joined in %s\n", o.nodes, time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	s.stopAll()
	return nil
}
