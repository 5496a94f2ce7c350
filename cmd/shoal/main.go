// Command shoal is the one binary of a Shoal cluster: it runs the node daemon
// (shoal init, shoal join, shoal agent) and is the CLI that talks to it over
// its unix socket or, with -H tcp://IP:PORT, over mutual TLS.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	containerdexec "github.com/shoal-dev/shoal/agent/exec/containerd"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	mraft "github.com/shoal-dev/shoal/manager/raft"
	"github.com/shoal-dev/shoal/node"
)

const (
	defaultDataDir = "/var/lib/shoal"
	// clientTimeout bounds every client verb.
	clientTimeout = 30 * time.Second
)

// errReported means the failures were already printed; exit 1 quietly.
var errReported = errors.New("shoal: errors reported")

// app holds what the commands share: streams, environment and the global flags.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// environ is the whole environment, for ${VAR} in compose files.
	environ func() []string
	// runNode starts the daemon; node.Run in the binary.
	runNode func(context.Context, node.Config) error
	// reexec, if set, restarts the process without the join token in its
	// command line and environment; it returns only on failure.
	reexec func(token string) error
	// clock tells the time in task states and paces shoal service create's
	// wait for convergence.
	clock clock.Clock

	host    string
	dataDir string
}

func main() {
	// containerd's shim runs this binary as the log writer of a task with
	// a terminal (agent/exec/containerd.RunLogWriter).
	if len(os.Args) == 3 && os.Args[1] == containerdexec.LogWriterArg {
		if err := containerdexec.RunLogWriter(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, environ: os.Environ, runNode: node.Run,
		reexec: reexecWithoutToken, clock: clock.Real{}}
	os.Exit(a.execute(context.Background(), os.Args[1:]))
}

// execute runs the command line args and returns the process exit code.
func (a *app) execute(ctx context.Context, args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if errors.Is(err, errReported) {
		return 1
	}
	// Damaged raft storage is told apart from errors a restart may cure.
	if se := (*mraft.StorageError)(nil); errors.As(err, &se) {
		fmt.Fprintf(a.stderr, "Error: %s\n", err)
		return se.ExitCode()
	}
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command ") && !strings.Contains(msg, "--help") {
		// From cobra's check of the root's arguments.
		//lint:ignore ST1005 docker's usage hint, a sentence on its own line
		err = fmt.Errorf("%w\nRun 'shoal --help' for usage.", err)
	}
	fmt.Fprintf(a.stderr, "Error: %s\n", errMessage(err))
	return 1
}

// usageErr adds a pointer to the command's help to a flag or argument error.
func usageErr(c *cobra.Command, err error) error {
	//lint:ignore ST1005 docker's usage hint, a sentence on its own line
	return fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())
}

// checkArgs wraps an argument validator so that its errors point at --help.
func checkArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if err := v(c, args); err != nil {
			return usageErr(c, err)
		}
		return nil
	}
}

// groupCmd is a command that only holds subcommands: alone it prints its
// help, with an unknown subcommand it fails.
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  checkArgs(cobra.NoArgs),
		RunE:  func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	cmd.AddCommand(subs...)
	return cmd
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "shoal",
		Short: "Run and manage a Shoal container cluster",
		Long: "shoal runs a cluster node (shoal init, shoal join, shoal agent) and manages the\n" +
			"cluster through a node's API (shoal service, shoal node, shoal network, shoal join-token,\n" +
			"shoal info, shoal leave).",
		// Errors are printed once, by execute; flag and argument errors
		// point at --help instead of dumping the usage.
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageErr(c, err) })

	dataDir := a.getenv("SHOAL_DATA_DIR")
	if dataDir == "" {
		dataDir = defaultDataDir
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&a.host, "host", "H", a.getenv("SHOAL_HOST"),
		"daemon to talk to: unix:///path, tcp://IP:PORT or IP:PORT (env SHOAL_HOST; default unix://DATA_DIR/shoal.sock)")
	pf.StringVar(&a.dataDir, "data-dir", dataDir, "node state directory (env SHOAL_DATA_DIR)")

	root.AddCommand(
		a.initCmd(), a.joinCmd(), a.agentCmd(),
		a.infoCmd(), a.serviceCmd(), a.nodeCmd(), a.networkCmd(), a.secretCmd(), a.configCmd(), a.unlockCmd(), a.unlockKeyCmd(), a.stackCmd(), a.joinTokenCmd(), a.leaveCmd(),
		a.volumeCmd(),
	)
	return root
}

// hostURL is the daemon address the client uses, in the form shown to users.
func (a *app) hostURL() string {
	switch {
	case a.host == "":
		return "unix://" + filepath.Join(a.dataDir, "shoal.sock")
	case strings.HasPrefix(a.host, "unix://"), strings.HasPrefix(a.host, "tcp://"):
		return a.host
	default:
		return "tcp://" + a.host
	}
}

// client returns an API client for the chosen host; tcp hosts use the
// node certificate in DATA_DIR/certs.
func (a *app) client() (*api.Client, error) {
	host := a.hostURL()
	var tlsConfig *tls.Config
	if strings.HasPrefix(host, "tcp://") {
		var err error
		if tlsConfig, err = clientTLS(filepath.Join(a.dataDir, "certs")); err != nil {
			return nil, fmt.Errorf("tls for %s: %w", host, err)
		}
	}
	return api.NewClient(host, tlsConfig)
}

// clientTLS loads ca.crt, node.crt and node.key from dir. The server's chain
// is verified against the cluster CA; its host name is not, since nodes are
// named by ID in their certificates, not by address.
func clientTLS(dir string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("read cluster ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("read cluster ca: no certificate in %s", filepath.Join(dir, "ca.crt"))
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"))
	if err != nil {
		return nil, fmt.Errorf("load node certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{cert},
		RootCAs:            pool,
		InsecureSkipVerify: true, // the chain is checked in VerifyConnection, the name is not
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			opts := x509.VerifyOptions{
				Roots:         pool,
				Intermediates: x509.NewCertPool(),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
			}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			return nil
		},
	}, nil
}

// withClient runs fn with a client and a context bounded by clientTimeout,
// turning connection failures into a message that says what to do.
func (a *app) withClient(cmd *cobra.Command, fn func(context.Context, *api.Client) error) error {
	return a.withClientTimeout(cmd, clientTimeout, fn)
}

// withClientTimeout is withClient with a bound of d; 0 means none, for
// verbs that stream until the user stops them.
func (a *app) withClientTimeout(cmd *cobra.Command, d time.Duration, fn func(context.Context, *api.Client) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cmd.Context()
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return a.reachErr(fn(ctx, c))
}

// reachErr rewrites a failure to connect to the daemon; other errors pass through.
func (a *app) reachErr(err error) error {
	var opErr *net.OpError
	if err == nil || !errors.As(err, &opErr) || opErr.Op != "dial" {
		return err
	}
	host := a.hostURL()
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot reach the shoal daemon at %s: permission denied (the socket is for root only)", host)
	case strings.HasPrefix(host, "unix://"):
		return fmt.Errorf("cannot reach the shoal daemon at %s: is it running? (start it with shoal init, shoal join or shoal agent)", host)
	default:
		return fmt.Errorf("cannot reach the shoal daemon at %s: %w", host, opErr.Err)
	}
}

// errMessage is what follows "Error: ": API answers show the server's message only.
func errMessage(err error) string {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Message
	}
	return err.Error()
}

// eachArg runs fn for every arg, prints each failure and reports whether any failed.
func (a *app) eachArg(args []string, fn func(arg string) error) error {
	failed := false
	for _, arg := range args {
		if err := a.reachErr(fn(arg)); err != nil {
			failed = true
			msg := errMessage(err)
			if len(args) > 1 && !strings.Contains(msg, arg) {
				msg = arg + ": " + msg
			}
			fmt.Fprintf(a.stderr, "Error: %s\n", msg)
		}
	}
	if failed {
		return errReported
	}
	return nil
}
