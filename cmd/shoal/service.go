package main

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager"
)

// convergePoll is how often shoal service create --detach=false reads the service.
const convergePoll = 250 * time.Millisecond

func (a *app) serviceCmd() *cobra.Command {
	return groupCmd("service", "Manage the cluster's services",
		a.serviceCreateCmd(), a.serviceLsCmd(), a.servicePsCmd(), a.serviceInspectCmd(),
		a.serviceScaleCmd(), a.serviceRmCmd(), a.serviceLogsCmd(), a.serviceUpdateCmd(), a.serviceRollbackCmd())
}

// createFlags are the flags of shoal service create, as given. Numbers,
// sizes and durations stay strings so that a bad one is reported with the
// flag's name.
type createFlags struct {
	name, mode, replicas     string
	env, constraints, labels []string

	reserveCPU, reserveMemory, limitCPU, limitMemory string

	restartCondition, restartDelay, restartMaxAttempts, restartWindow string
	stopGracePeriod, workdir, user                                    string

	detach  bool
	timeout string

	endpoint endpointFlags

	update, rollback rolloutFlags
	health           healthFlags
	files            fileFlags
	sched            schedFlags
	container        containerFlags
}

func (f *createFlags) register(fs *pflag.FlagSet, detach bool) {
	fs.StringVar(&f.name, "name", "", "service name (required)")
	fs.StringVar(&f.mode, "mode", string(api.ModeReplicated), "replicated, global (one task per node), replicated-job or global-job (tasks run to completion)")
	fs.StringVar(&f.replicas, "replicas", "", "number of tasks of a replicated service (default 1)")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable, KEY=VALUE (repeatable)")
	fs.StringArrayVarP(&f.labels, "label", "l", nil,
		"set a service label, KEY=VALUE (repeatable); prometheus.port=PORT and prometheus.path=PATH make Prometheus scrape its tasks")
	fs.StringVar(&f.reserveCPU, "reserve-cpu", "", "CPUs reserved for each task, like 0.5")
	fs.StringVar(&f.reserveMemory, "reserve-memory", "", "memory reserved for each task, like 64MiB")
	fs.StringVar(&f.limitCPU, "limit-cpu", "", "CPUs each task may use at most, like 1")
	fs.StringVar(&f.limitMemory, "limit-memory", "", "memory each task may use at most, like 128MiB")
	fs.StringArrayVar(&f.constraints, "constraint", nil, "placement constraint, like node.labels.zone==a (repeatable)")
	fs.StringVar(&f.restartCondition, "restart-condition", "", "restart tasks on any exit, on-failure or none (default any)")
	fs.StringVar(&f.restartDelay, "restart-delay", "", "wait between restarts, like 10s (default 5s; longer after repeated quick exits)")
	fs.StringVar(&f.restartMaxAttempts, "restart-max-attempts", "", "give up after this many restarts (default no limit)")
	fs.StringVar(&f.restartWindow, "restart-window", "", "count only restarts within this window against --restart-max-attempts, like 2m (default all)")
	fs.StringVar(&f.stopGracePeriod, "stop-grace-period", "", "time a task gets to stop before it is killed, like 10s")
	fs.StringVar(&f.workdir, "workdir", "", "working directory inside the container")
	fs.StringVarP(&f.user, "user", "u", "", "user to run as, USER[:GROUP] or UID[:GID]")
	fs.BoolVarP(&f.detach, "detach", "d", detach,
		"exit once the service is created instead of waiting for its tasks to run (off by default on a terminal)")
	fs.StringVar(&f.timeout, "timeout", "2m", "with --detach=false, give up waiting after this long")
	f.endpoint.register(fs)
	f.update.register(fs, "update", "updated")
	f.rollback.register(fs, "rollback", "rolled back")
	f.health.register(fs)
	f.files.registerCreate(fs)
	f.sched.register(fs, false)
	f.container.register(fs)
}

// spec checks the flags and builds the service spec; args are the image and
// the command.
func (f *createFlags) spec(args []string) (api.ServiceSpec, error) {
	var spec api.ServiceSpec
	if f.name == "" {
		return spec, errors.New("--name is required")
	}
	spec.Name = f.name
	switch m := api.ServiceMode(f.mode); m {
	case api.ModeReplicated, api.ModeReplicatedJob:
		spec.Mode = m
		spec.Replicas = 1
		if f.replicas != "" {
			n, err := strconv.ParseUint(f.replicas, 10, 64)
			if err != nil {
				return spec, fmt.Errorf("--replicas %q: want a number of tasks", f.replicas)
			}
			spec.Replicas = n
		}
	case api.ModeGlobal, api.ModeGlobalJob:
		spec.Mode = m
		if f.replicas != "" {
			return spec, errors.New("--replicas: a global service runs one task per node and takes no replica count")
		}
	default:
		return spec, fmt.Errorf("--mode %q: want replicated, global, replicated-job or global-job", f.mode)
	}

	for _, kv := range f.labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t") {
			return spec, fmt.Errorf("--label %q: want KEY=VALUE, the key without spaces", kv)
		}
		if k == manager.LabelPrometheusPort {
			if p, err := strconv.ParseUint(v, 10, 16); err != nil || p == 0 {
				return spec, fmt.Errorf("--label %q: want a port number from 1 to 65535", kv)
			}
		}
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[k] = v
	}

	t := &spec.Task
	t.Image = args[0]
	if strings.TrimSpace(t.Image) == "" {
		return spec, errors.New("image: want a name, got an empty string")
	}
	if len(args) > 1 {
		t.Command = args[1:]
	}
	for _, kv := range f.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || strings.TrimSpace(k) == "" {
			return spec, fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		t.Env = append(t.Env, kv)
	}
	t.User, t.Workdir = f.user, f.workdir

	res := &t.Resources
	for _, c := range []struct {
		flag, val string
		dst       *int64
		parse     func(string) (int64, error)
	}{
		{"--reserve-cpu", f.reserveCPU, &res.Reservations.NanoCPUs, parseCPUs},
		{"--limit-cpu", f.limitCPU, &res.Limits.NanoCPUs, parseCPUs},
		{"--reserve-memory", f.reserveMemory, &res.Reservations.MemoryBytes, parseBytes},
		{"--limit-memory", f.limitMemory, &res.Limits.MemoryBytes, parseBytes},
	} {
		if c.val == "" {
			continue
		}
		v, err := c.parse(c.val)
		if err != nil {
			return spec, fmt.Errorf("%s %q: %w", c.flag, c.val, err)
		}
		*c.dst = v
	}
	if r, l := res.Reservations.NanoCPUs, res.Limits.NanoCPUs; l != 0 && r > l {
		return spec, fmt.Errorf("--reserve-cpu %s is more than --limit-cpu %s", f.reserveCPU, f.limitCPU)
	}
	if r, l := res.Reservations.MemoryBytes, res.Limits.MemoryBytes; l != 0 && r > l {
		return spec, fmt.Errorf("--reserve-memory %s is more than --limit-memory %s", f.reserveMemory, f.limitMemory)
	}

	for _, c := range f.constraints {
		if !strings.Contains(c, "==") && !strings.Contains(c, "!=") {
			return spec, fmt.Errorf("--constraint %q: want KEY==VALUE or KEY!=VALUE, like node.role==manager", c)
		}
		t.Placement.Constraints = append(t.Placement.Constraints, c)
	}

	switch rc := api.RestartCondition(f.restartCondition); rc {
	case "", api.RestartAny, api.RestartOnFailure, api.RestartNone:
		t.Restart.Condition = rc
	default:
		return spec, fmt.Errorf("--restart-condition %q: want any, on-failure or none", f.restartCondition)
	}
	var err error
	if f.restartDelay != "" {
		d, err := parseDuration("--restart-delay", f.restartDelay)
		if err != nil {
			return spec, err
		}
		t.Restart.Delay = &d
	}
	if f.restartWindow != "" {
		if t.Restart.Window, err = parseDuration("--restart-window", f.restartWindow); err != nil {
			return spec, err
		}
	}
	if f.restartMaxAttempts != "" {
		if t.Restart.MaxAttempts, err = strconv.ParseUint(f.restartMaxAttempts, 10, 64); err != nil {
			return spec, fmt.Errorf("--restart-max-attempts %q: want a number of restarts", f.restartMaxAttempts)
		}
	}
	if t.StopGracePeriod, err = parseDuration("--stop-grace-period", f.stopGracePeriod); err != nil {
		return spec, err
	}
	if t.Healthcheck, err = f.health.apply(nil); err != nil {
		return spec, err
	}
	if err := f.container.apply(t); err != nil {
		return spec, err
	}
	if err := f.files.applyCreate(t); err != nil {
		return spec, err
	}
	if err := f.endpoint.apply(&spec); err != nil {
		return spec, err
	}
	if err := f.sched.apply(&spec); err != nil {
		return spec, err
	}
	if spec.Update, err = f.update.apply(nil); err != nil {
		return spec, err
	}
	if spec.Rollback, err = f.rollback.apply(nil); err != nil {
		return spec, err
	}
	return spec, nil
}

// parseDuration reads a flag's non-negative duration; empty is 0.
func parseDuration(flag, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q: want a duration like 10s or 1m30s", flag, s)
	}
	return d, nil
}

var decimal = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// parseCPUs turns a decimal number of CPUs, like 0.5, into billionths of a CPU.
func parseCPUs(s string) (int64, error) {
	if !decimal.MatchString(s) {
		return 0, errors.New("want a number of CPUs like 0.5 or 2")
	}
	r, _ := new(big.Rat).SetString(s)
	r.Mul(r, big.NewRat(1e9, 1))
	if !r.IsInt() {
		return 0, errors.New("too precise: at most 9 decimal places")
	}
	if !r.Num().IsInt64() {
		return 0, errors.New("too large")
	}
	return r.Num().Int64(), nil
}

var (
	sizePattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) ?([a-zA-Z]*)$`)
	// sizeUnits are binary, as docker reads them: 1k, 1KB and 1KiB are all 1024 bytes.
	sizeUnits = map[string]int64{
		"": 1, "b": 1,
		"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
		"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
	}
)

// parseBytes turns a size like 64MiB, 64m or 1.5G into bytes; the units
// are binary and any fraction of a byte is dropped.
func parseBytes(s string) (int64, error) {
	m := sizePattern.FindStringSubmatch(s)
	if m == nil {
		return 0, errors.New("want a size like 64MiB, 512M or 1GiB")
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q: want B, KiB, MiB, GiB or TiB (k, m, g: binary)", m[2])
	}
	r, _ := new(big.Rat).SetString(m[1])
	r.Mul(r, new(big.Rat).SetInt64(unit))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, errors.New("too large")
	}
	return n.Int64(), nil
}

func (a *app) serviceCreateCmd() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create --name NAME [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Create a service",
		Long: "create starts a service: --replicas copies of IMAGE (replicated mode, the default)\n" +
			"or one on every node (--mode global). Flags after IMAGE belong to the command.\n" +
			"It prints the service's ID. With --detach=false, the default on a terminal, it\n" +
			"then waits until all tasks run and shows their progress.",
		Args: checkArgs(func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%q needs an image", c.CommandPath())
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.spec(args)
			if err != nil {
				return err
			}
			timeout, err := parseDuration("--timeout", f.timeout)
			if err != nil {
				return err
			}
			if timeout == 0 {
				return fmt.Errorf("--timeout %q: want a duration above 0", f.timeout)
			}
			budget := clientTimeout
			if !f.detach {
				budget += timeout
			}
			return a.withClientTimeout(cmd, budget, func(ctx context.Context, c *api.Client) error {
				svc, err := c.CreateService(ctx, spec)
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, svc.ID)
				if f.detach {
					return nil
				}
				return a.converge(ctx, c, svc, timeout, f.timeout)
			})
		},
	}
	cmd.Flags().SetInterspersed(false)
	f.register(cmd.Flags(), !isTerminal(a.stdout))
	return cmd
}

// converge polls svc until all its tasks run, printing the progress when it
// changes and each distinct task error once. It gives up after timeout
// (shown as timeoutText).
func (a *app) converge(ctx context.Context, c *api.Client, svc api.ServiceView, timeout time.Duration, timeoutText string) error {
	deadline := a.clock.Now().Add(timeout)
	tick, stop := a.clock.NewTicker(convergePoll)
	defer stop()
	var lastProgress, lastErr string
	seen := make(map[string]bool)
	for {
		v, err := c.Service(ctx, svc.ID)
		if err != nil {
			return fmt.Errorf("verify service %s: %w", svc.Spec.Name, err)
		}
		tasks, err := c.Tasks(ctx, api.TaskFilter{Service: svc.ID})
		if err != nil {
			return fmt.Errorf("verify service %s: %w", svc.Spec.Name, err)
		}
		progress := fmt.Sprintf("%d/%d tasks running", v.Running, v.Desired)
		done := v.Running == v.Desired && (v.Spec.Mode != api.ModeGlobal || v.Desired > 0)
		if v.Spec.Mode.IsJob() {
			progress, done = jobProgress(v)
		}
		if progress != lastProgress {
			fmt.Fprintln(a.stdout, progress)
			lastProgress = progress
		}
		for _, t := range tasks {
			if e := t.Status.Err; e != "" && !seen[e] {
				seen[e] = true
				lastErr = e
				fmt.Fprintf(a.stdout, "%s: %s\n", taskName(t), e)
			}
		}
		if done {
			fmt.Fprintln(a.stdout, "verify: Service converged")
			return nil
		}
		if !a.clock.Now().Before(deadline) {
			reason := progress
			if lastErr != "" {
				reason += ": " + lastErr
			}
			return fmt.Errorf("service %s did not converge within %s (%s)", svc.Spec.Name, timeoutText, reason)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("verify service %s: %w", svc.Spec.Name, ctx.Err())
		case <-tick:
		}
	}
}

func (a *app) serviceLsCmd() *cobra.Command {
	var (
		format string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [--format json] [-q]",
		Aliases: []string{"list"},
		Short:   "List the cluster's services",
		Args:    checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				services, err := c.Services(ctx)
				if err != nil {
					return err
				}
				sortServices(services)
				return a.writeServices(services, format, quiet)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print service IDs only")
	return cmd
}

// taskListFlags are the flags of service ps and node ps.
type taskListFlags struct {
	format  string
	quiet   bool
	noTrunc bool
}

func (f *taskListFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.format, "format", "", "output format: json")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "print task IDs only")
	fs.BoolVar(&f.noTrunc, "no-trunc", false, "do not shorten IDs, images and errors")
}

// listTasks prints the tasks that match filter as service ps and node ps do.
func (a *app) listTasks(ctx context.Context, c *api.Client, filter api.TaskFilter, f taskListFlags) error {
	tasks, err := c.Tasks(ctx, filter)
	if err != nil {
		return err
	}
	return a.writeTasks(ctx, c, tasks, f)
}

// writeTasks prints tasks as f asks: IDs, JSON or a table with node names.
func (a *app) writeTasks(ctx context.Context, c *api.Client, tasks []*api.Task, f taskListFlags) error {
	sortTasks(tasks)
	switch {
	case f.quiet:
		return writeTaskIDs(a.stdout, tasks, !f.noTrunc)
	case f.format == formatJSON:
		if tasks == nil {
			tasks = []*api.Task{}
		}
		return writeJSON(a.stdout, tasks)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	hosts := make(map[string]string, len(nodes))
	for _, n := range nodes {
		hosts[n.ID] = n.Description.Hostname
	}
	return writeTaskTable(a.stdout, tasks, hosts, a.clock.Now(), !f.noTrunc)
}

func (a *app) servicePsCmd() *cobra.Command {
	var f taskListFlags
	cmd := &cobra.Command{
		Use:   "ps [--format json] [-q] [--no-trunc] SERVICE",
		Short: "List a service's tasks",
		Long: "ps lists the tasks of a service (ID, unique ID prefix or name), each slot's\n" +
			"newest task first and its older ones under it, marked \\_.",
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(f.format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.listTasks(ctx, c, api.TaskFilter{Service: args[0]}, f)
			})
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func (a *app) serviceInspectCmd() *cobra.Command {
	return inspectCmd(a, "SERVICE", "services", "inspect prints the named services (ID, unique ID prefix or name) as a JSON array.", (*api.Client).Service)
}

// scaleArg is one SERVICE=REPLICAS argument of shoal service scale.
type scaleArg struct {
	service  string
	replicas uint64
}

// parseScale reads a SERVICE=REPLICAS argument.
func parseScale(arg string) (scaleArg, error) {
	name, n, ok := strings.Cut(arg, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return scaleArg{}, fmt.Errorf("%q: want SERVICE=REPLICAS", arg)
	}
	replicas, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return scaleArg{}, fmt.Errorf("%q: want SERVICE=REPLICAS with a number of replicas, got %q", arg, n)
	}
	return scaleArg{service: name, replicas: replicas}, nil
}

func (a *app) serviceScaleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scale SERVICE=REPLICAS...",
		Short: "Change the number of tasks of replicated services",
		Args: checkArgs(func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("want at least one SERVICE=REPLICAS")
			}
			var errs []error
			for _, arg := range args {
				if _, err := parseScale(arg); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(arg string) error {
					s, err := parseScale(arg)
					if err != nil {
						return err
					}
					if _, err := c.UpdateService(ctx, s.service, api.ServiceUpdate{Replicas: &s.replicas}); err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "%s scaled to %d\n", s.service, s.replicas)
					return nil
				})
			})
		},
	}
}

func (a *app) serviceRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm SERVICE...",
		Aliases: []string{"remove"},
		Short:   "Remove services and their tasks",
		Args:    checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(ref string) error {
					if err := c.RemoveService(ctx, ref); err != nil {
						return err
					}
					fmt.Fprintln(a.stdout, ref)
					return nil
				})
			})
		},
	}
}

func (a *app) serviceLogsCmd() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [-f] SERVICE",
		Short: "Show the logs of a service's tasks",
		Long: "logs prints the output of every task of a service, each line prefixed with the\n" +
			"task. With -f it keeps printing new lines until interrupted.",
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cmd.SetContext(ctx)
			// No time bound: the stream lasts as long as the user wants it.
			return a.withClientTimeout(cmd, 0, func(ctx context.Context, c *api.Client) error {
				return c.ServiceLogs(ctx, args[0], follow, a.stdout)
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	return cmd
}

// writeServices prints services as asked: IDs, JSON or a table.
func (a *app) writeServices(services []api.ServiceView, format string, quiet bool) error {
	switch {
	case quiet:
		return writeServiceIDs(a.stdout, services)
	case format == formatJSON:
		if services == nil {
			services = []api.ServiceView{}
		}
		return writeJSON(a.stdout, services)
	}
	return writeServiceTable(a.stdout, services)
}
