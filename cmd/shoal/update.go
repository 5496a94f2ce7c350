package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

// rolloutFlags are the --update-* or --rollback-* flags, as given.
type rolloutFlags struct {
	prefix                                     string
	parallelism, delay, order, action, monitor string
	maxFailureRatio                            string
	set                                        func(name string) bool
}

func (f *rolloutFlags) register(fs *pflag.FlagSet, prefix, what string) {
	f.prefix = prefix
	f.set = func(name string) bool { return fs.Changed(prefix + "-" + name) }
	fs.StringVar(&f.parallelism, prefix+"-parallelism", "", "tasks "+what+" at once, 0 for all (default 1)")
	fs.StringVar(&f.delay, prefix+"-delay", "", "wait after a task is "+what+" before the next, like 10s (default 0s)")
	fs.StringVar(&f.order, prefix+"-order", "", "stop-first (the old task stops, then the new one starts) or start-first (default stop-first)")
	actions := "pause, continue or rollback"
	if prefix == "rollback" {
		actions = "pause or continue"
	}
	fs.StringVar(&f.action, prefix+"-failure-action", "", "when tasks fail: "+actions+" (default pause)")
	fs.StringVar(&f.monitor, prefix+"-monitor", "", "how long after each task failures still count, like 5s (default 5s)")
	fs.StringVar(&f.maxFailureRatio, prefix+"-max-failure-ratio", "", "fraction of tasks that may fail, 0 to 1 (default 0)")
}

// apply changes the config the flags set, starting from cur (nil: Swarm's
// defaults), and returns it; nil when no flag is set and cur is nil.
func (f *rolloutFlags) apply(cur *api.UpdateConfig) (*api.UpdateConfig, error) {
	names := []string{"parallelism", "delay", "order", "failure-action", "monitor", "max-failure-ratio"}
	if !slices.ContainsFunc(names, f.set) {
		return cur, nil
	}
	c := api.DefaultUpdateConfig()
	if cur != nil {
		c = *cur
	}
	flag := func(name string) string { return "--" + f.prefix + "-" + name }
	var err error
	if f.set("parallelism") {
		if c.Parallelism, err = strconv.ParseUint(f.parallelism, 10, 64); err != nil {
			return nil, fmt.Errorf("%s %q: want a number of tasks, 0 for all", flag("parallelism"), f.parallelism)
		}
	}
	if f.set("delay") {
		if c.Delay, err = parseDuration(flag("delay"), f.delay); err != nil {
			return nil, err
		}
	}
	if f.set("monitor") {
		if c.Monitor, err = parseDuration(flag("monitor"), f.monitor); err != nil {
			return nil, err
		}
	}
	if f.set("order") {
		switch o := api.UpdateOrder(f.order); o {
		case api.OrderStopFirst, api.OrderStartFirst:
			c.Order = o
		default:
			return nil, fmt.Errorf("%s %q: want stop-first or start-first", flag("order"), f.order)
		}
	}
	if f.set("failure-action") {
		switch a := api.FailureAction(f.action); {
		case a == api.ActionPause || a == api.ActionContinue || (a == api.ActionRollback && f.prefix == "update"):
			c.FailureAction = a
		case f.prefix == "rollback":
			return nil, fmt.Errorf("%s %q: want pause or continue", flag("failure-action"), f.action)
		default:
			return nil, fmt.Errorf("%s %q: want pause, continue or rollback", flag("failure-action"), f.action)
		}
	}
	if f.set("max-failure-ratio") {
		r, err := strconv.ParseFloat(f.maxFailureRatio, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("%s %q: want a fraction from 0 to 1", flag("max-failure-ratio"), f.maxFailureRatio)
		}
		c.MaxFailureRatio = r
	}
	return &c, nil
}

// updateFlags are the flags of shoal service update, as given.
type updateFlags struct {
	set func(name string) bool

	image, replicas, command, args                   string
	envAdd, envRm, labelAdd, labelRm                 []string
	constraintAdd, constraintRm                      []string
	networkAdd, networkRm, publishAdd, publishRm     []string
	reserveCPU, reserveMemory, limitCPU, limitMemory string
	restartCondition, restartDelay, restartMax       string
	restartWindow                                    string
	stopGracePeriod                                  string
	force, detach                                    bool
	timeout                                          string

	update, rollback rolloutFlags
	health           healthFlags
	files            fileFlags
	sched            schedFlags
	container        updateContainerFlags
}

func (f *updateFlags) register(fs *pflag.FlagSet, detach bool) {
	f.set = fs.Changed
	fs.StringVar(&f.image, "image", "", "new image")
	fs.StringVar(&f.replicas, "replicas", "", "number of tasks (replicated services)")
	fs.StringVar(&f.command, "command", "", `new command, replacing the image's cmd (after its entrypoint, if any), like "sh -c 'echo hi'"; "" for the image's`)
	fs.StringVar(&f.args, "args", "", "new arguments, docker's meaning: they replace the image's cmd (or follow --entrypoint); the same as --command")
	fs.StringArrayVar(&f.envAdd, "env-add", nil, "add or change an environment variable, KEY=VALUE (repeatable)")
	fs.StringArrayVar(&f.envRm, "env-rm", nil, "remove an environment variable, KEY (repeatable)")
	fs.StringArrayVar(&f.labelAdd, "label-add", nil, "add or change a service label, KEY=VALUE (repeatable)")
	fs.StringArrayVar(&f.labelRm, "label-rm", nil, "remove a service label, KEY (repeatable)")
	fs.StringArrayVar(&f.constraintAdd, "constraint-add", nil, "add a placement constraint (repeatable)")
	fs.StringArrayVar(&f.constraintRm, "constraint-rm", nil, "remove a placement constraint (repeatable)")
	fs.StringArrayVar(&f.networkAdd, "network-add", nil, "attach the tasks to a network, by name or ID (repeatable)")
	fs.StringArrayVar(&f.networkRm, "network-rm", nil, "detach the tasks from a network, by name or ID (repeatable)")
	fs.StringArrayVar(&f.publishAdd, "publish-add", nil, "publish a port, as --publish takes it (repeatable)")
	fs.StringArrayVar(&f.publishRm, "publish-rm", nil, "unpublish a port, [IP:]PUBLISHED[/tcp|udp] or [IP:]PUBLISHED:TARGET[/PROTO] (repeatable)")
	fs.StringVar(&f.reserveCPU, "reserve-cpu", "", "CPUs reserved for each task, like 0.5 (0: none)")
	fs.StringVar(&f.reserveMemory, "reserve-memory", "", "memory reserved for each task, like 64MiB (0: none)")
	fs.StringVar(&f.limitCPU, "limit-cpu", "", "CPUs each task may use at most (0: no limit)")
	fs.StringVar(&f.limitMemory, "limit-memory", "", "memory each task may use at most (0: no limit)")
	fs.StringVar(&f.restartCondition, "restart-condition", "", "restart tasks on any exit, on-failure or none")
	fs.StringVar(&f.restartDelay, "restart-delay", "", "wait between restarts, like 5s")
	fs.StringVar(&f.restartMax, "restart-max-attempts", "", "give up after this many restarts (0: no limit)")
	fs.StringVar(&f.restartWindow, "restart-window", "", "count only restarts within this window against --restart-max-attempts (0: all)")
	fs.StringVar(&f.stopGracePeriod, "stop-grace-period", "", "time a task gets to stop before it is killed")
	fs.BoolVar(&f.force, "force", false, "replace every task, rolling, even if nothing changed")
	fs.BoolVarP(&f.detach, "detach", "d", detach,
		"exit once the update is accepted instead of following it (off by default on a terminal)")
	fs.StringVar(&f.timeout, "timeout", "10m", "with --detach=false, give up following after this long")
	f.update.register(fs, "update", "updated")
	f.rollback.register(fs, "rollback", "rolled back")
	f.health.register(fs)
	f.files.registerUpdate(fs)
	f.sched.register(fs, true)
	f.container.register(fs)
}

// apply changes spec as the flags say. resolve turns a network name or ID
// into its ID (spec.Networks holds IDs). Nothing is sent until every flag
// checked out.
func (f *updateFlags) apply(spec *api.ServiceSpec, resolve func(string) (string, error)) error {
	t := &spec.Task
	if f.set("image") {
		if strings.TrimSpace(f.image) == "" {
			return errors.New("--image: want a name, got an empty string")
		}
		t.Image = f.image
	}
	if f.set("replicas") {
		if !spec.Mode.IsReplicated() {
			return errors.New("--replicas: a global service runs one task per node and takes no replica count")
		}
		n, err := strconv.ParseUint(f.replicas, 10, 64)
		if err != nil {
			return fmt.Errorf("--replicas %q: want a number of tasks", f.replicas)
		}
		spec.Replicas = n
	}
	if f.set("command") {
		words, err := splitWords(f.command)
		if err != nil {
			return fmt.Errorf("--command %q: %w", f.command, err)
		}
		t.Command = words
	}
	if f.set("args") {
		words, err := splitWords(f.args)
		if err != nil {
			return fmt.Errorf("--args %q: %w", f.args, err)
		}
		t.Command = words
	}

	for _, k := range f.envRm {
		if k == "" || strings.Contains(k, "=") {
			return fmt.Errorf("--env-rm %q: want a variable name", k)
		}
		t.Env = slices.DeleteFunc(t.Env, func(e string) bool { return strings.SplitN(e, "=", 2)[0] == k })
	}
	for _, kv := range f.envAdd {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("--env-add %q: want KEY=VALUE", kv)
		}
		t.Env = slices.DeleteFunc(t.Env, func(e string) bool { return strings.SplitN(e, "=", 2)[0] == k })
		t.Env = append(t.Env, kv)
	}
	for _, k := range f.labelRm {
		delete(spec.Labels, k)
	}
	for _, kv := range f.labelAdd {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t") {
			return fmt.Errorf("--label-add %q: want KEY=VALUE, the key without spaces", kv)
		}
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[k] = v
	}
	for _, c := range f.constraintRm {
		if !slices.Contains(t.Placement.Constraints, c) {
			return fmt.Errorf("--constraint-rm %q: the service has no such constraint (it has %q)", c, t.Placement.Constraints)
		}
		t.Placement.Constraints = slices.DeleteFunc(t.Placement.Constraints, func(x string) bool { return x == c })
	}
	for _, c := range f.constraintAdd {
		if !strings.Contains(c, "==") && !strings.Contains(c, "!=") {
			return fmt.Errorf("--constraint-add %q: want KEY==VALUE or KEY!=VALUE, like node.role==manager", c)
		}
		if !slices.Contains(t.Placement.Constraints, c) {
			t.Placement.Constraints = append(t.Placement.Constraints, c)
		}
	}

	res := &t.Resources
	for _, c := range []struct {
		flag, val string
		dst       *int64
		parse     func(string) (int64, error)
	}{
		{"reserve-cpu", f.reserveCPU, &res.Reservations.NanoCPUs, parseCPUs},
		{"limit-cpu", f.limitCPU, &res.Limits.NanoCPUs, parseCPUs},
		{"reserve-memory", f.reserveMemory, &res.Reservations.MemoryBytes, parseBytes},
		{"limit-memory", f.limitMemory, &res.Limits.MemoryBytes, parseBytes},
	} {
		if !f.set(c.flag) {
			continue
		}
		v, err := c.parse(c.val)
		if err != nil {
			return fmt.Errorf("--%s %q: %w", c.flag, c.val, err)
		}
		*c.dst = v
	}
	if r, l := res.Reservations.NanoCPUs, res.Limits.NanoCPUs; l != 0 && r > l {
		return fmt.Errorf("the CPU reservation (%d nano CPUs) would be more than the limit (%d)", r, l)
	}
	if r, l := res.Reservations.MemoryBytes, res.Limits.MemoryBytes; l != 0 && r > l {
		return fmt.Errorf("the memory reservation (%d bytes) would be more than the limit (%d)", r, l)
	}

	if f.set("restart-condition") {
		switch rc := api.RestartCondition(f.restartCondition); rc {
		case api.RestartAny, api.RestartOnFailure, api.RestartNone:
			t.Restart.Condition = rc
		default:
			return fmt.Errorf("--restart-condition %q: want any, on-failure or none", f.restartCondition)
		}
	}
	if f.set("restart-delay") {
		d, err := parseDuration("--restart-delay", f.restartDelay)
		if err != nil {
			return err
		}
		if err := setRestartDelay(&t.Restart, d); err != nil {
			return err
		}
	}
	if f.set("restart-window") {
		d, err := parseDuration("--restart-window", f.restartWindow)
		if err != nil {
			return err
		}
		t.Restart.Window = d
	}
	if f.set("restart-max-attempts") {
		n, err := strconv.ParseUint(f.restartMax, 10, 64)
		if err != nil {
			return fmt.Errorf("--restart-max-attempts %q: want a number of restarts", f.restartMax)
		}
		t.Restart.MaxAttempts = n
	}
	if f.set("stop-grace-period") {
		d, err := parseDuration("--stop-grace-period", f.stopGracePeriod)
		if err != nil {
			return err
		}
		t.StopGracePeriod = d
	}
	if h, err := f.health.apply(t.Healthcheck); err != nil {
		return err
	} else {
		t.Healthcheck = h
	}
	if err := f.files.applyUpdate(t); err != nil {
		return err
	}

	if err := f.container.apply(t); err != nil {
		return err
	}

	for _, ref := range f.networkRm {
		id, err := resolve(ref)
		if err != nil {
			return fmt.Errorf("--network-rm %q: %w", ref, err)
		}
		if !slices.Contains(spec.Networks, id) {
			return fmt.Errorf("--network-rm %q: the service is not on that network", ref)
		}
		spec.Networks = slices.DeleteFunc(spec.Networks, func(n string) bool { return n == id })
	}
	for _, ref := range f.networkAdd {
		id, err := resolve(ref)
		if err != nil {
			return fmt.Errorf("--network-add %q: %w", ref, err)
		}
		if !slices.Contains(spec.Networks, id) {
			spec.Networks = append(spec.Networks, id)
		}
	}
	for _, s := range f.publishRm {
		n := len(spec.Endpoint.Ports)
		spec.Endpoint.Ports = slices.DeleteFunc(spec.Endpoint.Ports, publishMatcher(s))
		if len(spec.Endpoint.Ports) == n {
			return fmt.Errorf("--publish-rm %q: the service does not publish that port", s)
		}
	}
	for _, s := range f.publishAdd {
		p, err := parsePublish(s)
		if err != nil {
			return fmt.Errorf("--publish-add: %w", err)
		}
		for _, o := range spec.Endpoint.Ports {
			if o.Clashes(p) {
				return fmt.Errorf("--publish-add %q: port %s is published already; remove it with --publish-rm", s, publishKey(o))
			}
		}
		spec.Endpoint.Ports = append(spec.Endpoint.Ports, p)
	}
	if err := checkPorts(spec.Endpoint.Ports); err != nil {
		return fmt.Errorf("--publish-add: %w", err)
	}
	if spec.Endpoint.Mode == api.EndpointDNSRR && len(spec.Endpoint.IngressPorts()) > 0 {
		return errors.New("--publish-add needs endpoint mode vip: the routing mesh balances over a virtual IP (or publish with mode=host)")
	}

	if err := f.sched.apply(spec); err != nil {
		return err
	}
	var err error
	if spec.Update, err = f.update.apply(spec.Update); err != nil {
		return err
	}
	if spec.Rollback, err = f.rollback.apply(spec.Rollback); err != nil {
		return err
	}
	if f.force {
		t.ForceUpdate++
	}
	return nil
}

// splitWords splits a command line into words as a POSIX shell would, with
// single and double quotes and backslashes, and nothing else.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, errors.New("unterminated quote or escape")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func (a *app) serviceUpdateCmd() *cobra.Command {
	var f updateFlags
	cmd := &cobra.Command{
		Use:   "update [flags] SERVICE",
		Short: "Change a service, replacing its tasks rolling",
		Long: "update changes a service's spec; tasks on the old spec are replaced as the\n" +
			"--update-* flags say (one at a time by default). An update paused by failures\n" +
			"resumes with the next update. With --detach=false, the default on a terminal, it\n" +
			"follows the update and exits non-zero if it paused or was rolled back.",
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			timeout, err := parseDuration("--timeout", f.timeout)
			if err != nil {
				return err
			}
			budget := clientTimeout
			if !f.detach {
				budget += timeout
			}
			return a.withClientTimeout(cmd, budget, func(ctx context.Context, c *api.Client) error {
				cur, err := c.Service(ctx, args[0])
				if err != nil {
					return err
				}
				spec := cur.Spec.Clone()
				resolve := func(ref string) (string, error) {
					n, err := c.Network(ctx, ref)
					if err != nil {
						return "", err
					}
					return n.ID, nil
				}
				if err := f.apply(&spec, resolve); err != nil {
					return err
				}
				v, err := c.UpdateService(ctx, cur.ID, api.ServiceUpdate{Version: cur.Meta.Version, Spec: &spec})
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, cur.Spec.Name)
				if f.detach {
					return nil
				}
				if v.Spec.Mode.IsJob() { // a new run, not a rolling update
					return a.converge(ctx, c, v, timeout, f.timeout)
				}
				return a.followUpdate(ctx, c, v, false, timeout, f.timeout)
			})
		},
	}
	f.register(cmd.Flags(), !isTerminal(a.stdout))
	return cmd
}

func (a *app) serviceRollbackCmd() *cobra.Command {
	var (
		detach  bool
		timeout string
	)
	cmd := &cobra.Command{
		Use:   "rollback [flags] SERVICE",
		Short: "Go back to a service's previous spec, rolling",
		Long: "rollback swaps a service's spec with its previous one and replaces the tasks\n" +
			"as its --rollback-* config says.",
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseDuration("--timeout", timeout)
			if err != nil {
				return err
			}
			budget := clientTimeout
			if !detach {
				budget += d
			}
			return a.withClientTimeout(cmd, budget, func(ctx context.Context, c *api.Client) error {
				v, err := c.UpdateService(ctx, args[0], api.ServiceUpdate{Rollback: true})
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, v.Spec.Name)
				if detach {
					return nil
				}
				return a.followUpdate(ctx, c, v, true, d, timeout)
			})
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", !isTerminal(a.stdout),
		"exit once the rollback is accepted instead of following it (off by default on a terminal)")
	cmd.Flags().StringVar(&timeout, "timeout", "10m", "with --detach=false, give up following after this long")
	return cmd
}

// followUpdate polls a service after an update or rollback was accepted,
// prints each slot's progress as it changes and the final state. It fails
// when the update paused, or rolled back when it was not asked to.
func (a *app) followUpdate(ctx context.Context, c *api.Client, svc api.ServiceView, rollback bool, timeout time.Duration, timeoutText string) error {
	deadline := a.clock.Now().Add(timeout)
	tick, stop := a.clock.NewTicker(convergePoll)
	defer stop()
	seen := make(map[string]string)
	lastProgress := ""
	for {
		v, err := c.Service(ctx, svc.ID)
		if err != nil {
			return fmt.Errorf("follow update of %s: %w", svc.Spec.Name, err)
		}
		tasks, err := c.Tasks(ctx, api.TaskFilter{Service: svc.ID})
		if err != nil {
			return fmt.Errorf("follow update of %s: %w", svc.Spec.Name, err)
		}
		want, _ := json.Marshal(v.Spec.Task)
		sortTasks(tasks)
		updated := 0
		for _, t := range tasks {
			if t.DesiredState != api.TaskRunning {
				continue
			}
			got, _ := json.Marshal(t.Spec)
			onSpec := string(got) == string(want)
			line := string(t.Status.State)
			if !onSpec {
				line += " (previous spec)"
			} else if t.Status.State == api.TaskRunning {
				updated++
			}
			if t.Status.Err != "" {
				line += ": " + t.Status.Err
			}
			key := taskName(t) + " " + t.ID
			if seen[key] != line {
				seen[key] = line
				fmt.Fprintf(a.stdout, "%s: %s\n", taskName(t), line)
			}
		}
		st := v.UpdateStatus
		progress := fmt.Sprintf("progress: %d/%d tasks running the current spec", updated, v.Desired)
		if st != nil {
			progress += " (" + string(st.State) + ")"
		}
		if progress != lastProgress {
			fmt.Fprintln(a.stdout, progress)
			lastProgress = progress
		}
		if st != nil {
			msg := string(st.State)
			if st.Message != "" {
				msg += ": " + st.Message
			}
			switch st.State {
			case api.UpdateCompleted:
				fmt.Fprintln(a.stdout, "verify: Service converged")
				return nil
			case api.UpdateRollbackCompleted:
				if rollback {
					fmt.Fprintln(a.stdout, "rollback: Service converged")
					return nil
				}
				return fmt.Errorf("update of %s rolled back: %s", svc.Spec.Name, st.Message)
			case api.UpdatePaused, api.UpdateRollbackPaused:
				return fmt.Errorf("update of %s paused: %s", svc.Spec.Name, msg)
			}
		} else if updated == int(v.Desired) && v.Running == v.Desired {
			// Nothing to replace (a scale, a label): no update starts.
			fmt.Fprintln(a.stdout, "verify: Service converged")
			return nil
		}
		if !a.clock.Now().Before(deadline) {
			state := "no update started"
			if st != nil {
				state = string(st.State)
			}
			return fmt.Errorf("update of %s did not finish within %s (%s, %s)", svc.Spec.Name, timeoutText, progress, state)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("follow update of %s: %w", svc.Spec.Name, ctx.Err())
		case <-tick:
		}
	}
}

// setRestartDelay sets a restart policy's delay (one place to change when
// the delay's type does).
func setRestartDelay(p *api.RestartPolicy, d time.Duration) error {
	p.Delay = &d
	return nil
}
