package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/admission"
	"github.com/shoal-dev/shoal/manager/dispatcher"
	mraft "github.com/shoal-dev/shoal/manager/raft"
	"github.com/shoal-dev/shoal/node"
)

const defaultAPIPort = 2377

// daemonFlags are the flags of shoal init, join and agent.
type daemonFlags struct {
	advertiseAddr     string
	listenAddr        string
	apiPort           int
	raftPort          int
	gossipPort        int
	metricsAddr       string
	containerdAddress string
	insecureRegistry  []string
	hostname          string
	logLevel          string
	joinBurst         int
	maxStarts         int
	maxPulls          int
	joinRate          float64
	raftHeartbeat     time.Duration
	raftElection      time.Duration
	token             string
	tokenFile         string
	// init only: the cluster's failure detection settings.
	heartbeatPeriod time.Duration
	nodeDownGrace   time.Duration
	autolock        bool
}

// register adds the flags every daemon verb shares.
func (f *daemonFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listenAddr, "listen-addr", "", "IP to listen on for the API, raft and gossip (default all)")
	fs.IntVar(&f.apiPort, "api-port", defaultAPIPort, "API and cluster management port (mutual TLS)")
	fs.IntVar(&f.raftPort, "raft-port", 2378, "raft port (managers)")
	fs.IntVar(&f.gossipPort, "gossip-port", 7946, "gossip port (tcp and udp)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "IP:PORT of the plain-HTTP /metrics listener (default off)")
	fs.StringVar(&f.containerdAddress, "containerd-address", "", "containerd socket (default /run/containerd/containerd.sock, or the one the data directory was started with)")
	fs.StringSliceVar(&f.insecureRegistry, "insecure-registry", nil, "registry HOST:PORT to pull from over plain HTTP (repeatable)")
	fs.StringVar(&f.hostname, "hostname", "", "node hostname (default the machine's)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&f.maxStarts, "max-concurrent-starts", agent.DefaultMaxConcurrentStarts, "task containers this node creates and starts at once")
	fs.IntVar(&f.maxPulls, "max-concurrent-pulls", agent.DefaultMaxConcurrentPulls, "images this node pulls at once")
	fs.IntVar(&f.joinBurst, "join-burst", admission.DefaultJoinBurst, "joins a manager takes at once from one address or with one token")
	fs.Float64Var(&f.joinRate, "join-rate", admission.DefaultJoinRate, "joins per second a manager takes from one address or with one token after the burst (0: no limit)")
	fs.DurationVar(&f.raftHeartbeat, "raft-heartbeat-timeout", mraft.DefaultHeartbeatTimeout,
		"managers: how long a follower waits for the leader before it starts an election (the leader steps down after half of it without a quorum)")
	fs.DurationVar(&f.raftElection, "raft-election-timeout", mraft.DefaultElectionTimeout,
		"managers: how long a candidate waits for votes; at least --raft-heartbeat-timeout")
}

func (a *app) initCmd() *cobra.Command {
	var f daemonFlags
	cmd := &cobra.Command{
		Use:   "init --advertise-addr IP [flags]",
		Short: "Create a cluster with this node as its first manager, and run the node",
		Long: "init creates a cluster whose first manager is this node, prints the commands that\n" +
			"join other nodes to it, and serves in the foreground until SIGINT or SIGTERM.\n" +
			"If the data directory already holds a node, init resumes it.",
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.daemon(cmd, node.ModeInit, &f, "")
		},
	}
	cmd.Flags().StringVar(&f.advertiseAddr, "advertise-addr", "", "IP other nodes reach this node on (required)")
	cmd.Flags().DurationVar(&f.heartbeatPeriod, "dispatcher-heartbeat-period", dispatcher.DefaultPeriod,
		"how often nodes beat; 3 missed beats make a node unknown, 2 with gossip reporting it dead make it down")
	cmd.Flags().DurationVar(&f.nodeDownGrace, "node-down-grace", dispatcher.DefaultGrace,
		"how long a node that stopped beating but that gossip still reaches keeps its tasks before it is down")
	cmd.Flags().BoolVar(&f.autolock, "autolock", false,
		"wrap each manager's raft key with an unlock key: a restarted manager serves nothing until shoal unlock (get the key with shoal unlock-key)")
	f.register(cmd.Flags())
	return cmd
}

func (a *app) joinCmd() *cobra.Command {
	var f daemonFlags
	cmd := &cobra.Command{
		Use:   "join --token-file PATH|- [--advertise-addr IP] [flags] MANAGER_ADDR",
		Short: "Join a cluster through one of its managers, and run the node",
		Long: "join asks the manager at MANAGER_ADDR (IP or IP:PORT, port 2377 by default) to admit\n" +
			"this node with a join token, then serves in the foreground until SIGINT or SIGTERM.\n" +
			"The token comes from --token-file (- reads stdin), $SHOAL_TOKEN or --token; the\n" +
			"last two are visible in /proc, so join re-executes itself without them at once.\n" +
			"The token's role (worker or manager) decides the node's role. Without\n" +
			"--advertise-addr, the local IP that routes to MANAGER_ADDR is advertised.\n" +
			"If the data directory already holds a node, join resumes it.",
		Args: checkArgs(func(_ *cobra.Command, args []string) error {
			switch len(args) {
			case 0:
				return errors.New(`"shoal join" needs the address of a manager: shoal join --token-file PATH MANAGER_ADDR`)
			case 1:
				return nil
			default:
				return fmt.Errorf(`"shoal join" takes one manager address, got %d arguments`, len(args))
			}
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.daemon(cmd, node.ModeJoin, &f, args[0])
		},
	}
	cmd.Flags().StringVar(&f.token, "token", "", "join token, from shoal join-token (prefer --token-file or $SHOAL_TOKEN)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the join token; - reads it from stdin")
	cmd.Flags().StringVar(&f.advertiseAddr, "advertise-addr", "", "IP other nodes reach this node on (default the local IP that routes to MANAGER_ADDR)")
	f.register(cmd.Flags())
	return cmd
}

func (a *app) agentCmd() *cobra.Command {
	var f daemonFlags
	cmd := &cobra.Command{
		Use:   "agent [flags]",
		Short: "Run the node of an existing data directory",
		Long: "agent resumes the node kept in the data directory (after init or join) and serves\n" +
			"in the foreground until SIGINT or SIGTERM.",
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.daemon(cmd, node.ModeResume, &f, "")
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// daemon validates the flags, builds the node config and runs the node until
// SIGINT or SIGTERM. A signal stops it gracefully; a second one kills it.
func (a *app) daemon(cmd *cobra.Command, mode node.Mode, f *daemonFlags, joinArg string) error {
	level, err := parseLogLevel(f.logLevel)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := a.daemonConfig(cmd.Flags(), mode, f, joinArg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// A signal leaves its own cause (which still matches context.Canceled
		// with errors.Is); stop, once Run has returned, cancels plainly.
		if cause := context.Cause(ctx); cause != context.Canceled { //nolint:errorlint // identity wanted
			logger.Info("stopping", "reason", cause)
		}
		stop() // restore default handling: a second signal kills the process
	}()
	err = a.runNode(ctx, cfg)
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return err
	}
	return nil
}

// daemonConfig checks the flags and turns them into a node.Config. Ports
// not given on the command line stay 0 so that the node keeps the ones it
// stored, or takes the defaults on a first start.
func (a *app) daemonConfig(fs *pflag.FlagSet, mode node.Mode, f *daemonFlags, joinArg string, logger *slog.Logger) (node.Config, error) {
	dataDir, err := filepath.Abs(a.dataDir)
	if err != nil {
		return node.Config{}, fmt.Errorf("--data-dir %q: %w", a.dataDir, err)
	}
	cfg := node.Config{
		Mode:               mode,
		DataDir:            dataDir,
		ListenIP:           f.listenAddr,
		MetricsAddr:        f.metricsAddr,
		ContainerdAddress:  f.containerdAddress,
		InsecureRegistries: f.insecureRegistry,
		Hostname:           f.hostname,
		JoinBurst:          f.joinBurst,
		JoinRate:           f.joinRate,
		RaftHeartbeat:      f.raftHeartbeat,
		RaftElection:       f.raftElection,
		Limits:             agent.Limits{Starts: f.maxStarts, Pulls: f.maxPulls},
		Logger:             logger,
	}
	if f.maxStarts < 1 || f.maxPulls < 1 {
		return node.Config{}, fmt.Errorf("--max-concurrent-starts %d, --max-concurrent-pulls %d: want at least 1 each", f.maxStarts, f.maxPulls)
	}
	if mode == node.ModeInit {
		if f.heartbeatPeriod < 100*time.Millisecond || f.heartbeatPeriod > time.Minute {
			return node.Config{}, fmt.Errorf("--dispatcher-heartbeat-period %s: want 100ms to 1m", f.heartbeatPeriod)
		}
		if f.nodeDownGrace <= 0 || f.nodeDownGrace > time.Hour {
			return node.Config{}, fmt.Errorf("--node-down-grace %s: want more than 0, up to 1h", f.nodeDownGrace)
		}
		cfg.Dispatcher = api.DispatcherConfig{HeartbeatPeriod: f.heartbeatPeriod, NodeDownGrace: f.nodeDownGrace}
		cfg.AutoLock = f.autolock
	}
	if f.joinBurst < 1 {
		return node.Config{}, fmt.Errorf("--join-burst %d: want at least 1", f.joinBurst)
	}
	if f.raftHeartbeat < 50*time.Millisecond || f.raftHeartbeat > time.Minute {
		return node.Config{}, fmt.Errorf("--raft-heartbeat-timeout %s: want 50ms to 1m", f.raftHeartbeat)
	}
	if f.raftElection < f.raftHeartbeat || f.raftElection > time.Minute {
		return node.Config{}, fmt.Errorf("--raft-election-timeout %s: want at least --raft-heartbeat-timeout (%s), up to 1m", f.raftElection, f.raftHeartbeat)
	}
	if f.joinRate < 0 {
		return node.Config{}, fmt.Errorf("--join-rate %g: want 0 (no limit) or more", f.joinRate)
	}
	cfg.Ready = func(info node.ReadyInfo) { writeReady(a.stdout, mode, dataDir, info) }

	if mode == node.ModeJoin {
		if cfg.JoinAddr, err = joinAddr(joinArg); err != nil {
			return node.Config{}, err
		}
		token, inArgv, err := a.joinToken(f)
		if err != nil {
			return node.Config{}, err
		}
		if inArgv && a.reexec != nil {
			if err := a.reexec(token); err != nil {
				return node.Config{}, err
			}
		}
		cfg.JoinToken = token
	}

	switch {
	case f.advertiseAddr != "":
		if net.ParseIP(f.advertiseAddr) == nil {
			return node.Config{}, fmt.Errorf("--advertise-addr %q: want an IP address", f.advertiseAddr)
		}
		cfg.AdvertiseAddr = f.advertiseAddr
	case mode == node.ModeInit:
		return node.Config{}, errors.New("--advertise-addr is required: the IP other nodes reach this node on")
	case mode == node.ModeJoin:
		ip, err := localIPFor(cfg.JoinAddr)
		if err != nil {
			return node.Config{}, fmt.Errorf("--advertise-addr not given and no local IP routes to %s: %w", cfg.JoinAddr, err)
		}
		logger.Info("advertising the local address that routes to the manager", "advertise_addr", ip, "manager", cfg.JoinAddr)
		cfg.AdvertiseAddr = ip
	}

	if f.listenAddr != "" && net.ParseIP(f.listenAddr) == nil {
		return node.Config{}, fmt.Errorf("--listen-addr %q: want an IP address", f.listenAddr)
	}
	if f.metricsAddr != "" {
		if _, _, err := splitHostPort(f.metricsAddr); err != nil {
			return node.Config{}, fmt.Errorf("--metrics-addr %q: want IP:PORT: %w", f.metricsAddr, err)
		}
	}
	for _, r := range f.insecureRegistry {
		if _, _, err := splitHostPort(r); err != nil {
			return node.Config{}, fmt.Errorf("--insecure-registry %q: want HOST:PORT: %w", r, err)
		}
	}
	ports := []struct {
		name string
		val  int
		dst  *int
	}{
		{"api-port", f.apiPort, &cfg.APIPort},
		{"raft-port", f.raftPort, &cfg.RaftPort},
		{"gossip-port", f.gossipPort, &cfg.GossipPort},
	}
	for _, p := range ports {
		if !fs.Changed(p.name) {
			continue
		}
		if p.val < 1 || p.val > 65535 {
			return node.Config{}, fmt.Errorf("--%s %d: want a port from 1 to 65535", p.name, p.val)
		}
		*p.dst = p.val
	}
	return cfg, nil
}

// joinAddr normalizes a manager address given as HOST or HOST:PORT to HOST:PORT.
func joinAddr(s string) (string, error) {
	if s == "" {
		return "", errors.New("manager address must not be empty")
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		// No port: the whole argument is the host, maybe a bracketed IPv6 literal.
		host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		if strings.ContainsAny(host, "[]/ ") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
			return "", fmt.Errorf("manager address %q: want IP or IP:PORT", s)
		}
		port = strconv.Itoa(defaultAPIPort)
	}
	return net.JoinHostPort(host, port), nil
}

// splitHostPort splits HOST:PORT and checks that both are present and the port is a number.
func splitHostPort(s string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		return "", "", err
	}
	if host == "" {
		return "", "", errors.New("missing host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("bad port %q", port)
	}
	return host, port, nil
}

// localIPFor returns the local IP the kernel would use to reach addr. A UDP
// "dial" only picks a route; it sends nothing.
func localIPFor(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	ua, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok || ua.IP.IsUnspecified() {
		return "", fmt.Errorf("no usable local address (%v)", c.LocalAddr())
	}
	return ua.IP.String(), nil
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}
