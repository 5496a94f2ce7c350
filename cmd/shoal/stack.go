package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/stack"
)

// stackRmWait bounds how long stack rm waits for the stack's tasks to
// release its networks.
const stackRmWait = 60 * time.Second

func (a *app) stackCmd() *cobra.Command {
	return groupCmd("stack", "Deploy and manage applications from compose files",
		a.stackDeployCmd(), a.stackLsCmd(), a.stackServicesCmd(), a.stackPsCmd(), a.stackRmCmd(), a.stackConfigCmd())
}

// quietCompose keeps compose-go's own logrus warnings (the obsolete version
// attribute: Swarm stack files carry one) off the terminal.
func quietCompose() { logrus.SetLevel(logrus.ErrorLevel) }

func (a *app) loadStack(cmd *cobra.Command, files []string, ns string) (*stack.Loaded, *stack.Stack, error) {
	quietCompose()
	var env []string
	if a.environ != nil {
		env = a.environ()
	}
	l, err := stack.Load(cmd.Context(), stack.Options{Files: files, Env: env, Namespace: ns})
	if err != nil {
		return nil, nil, err
	}
	st, err := stack.Convert(l.Project, ns)
	if err != nil {
		return nil, nil, err
	}
	if err := stack.ReadData(st); err != nil {
		return nil, nil, err
	}
	return l, st, nil
}

type deployFlags struct {
	files   []string
	prune   bool
	detach  bool
	resolve string
	timeout string
}

func (a *app) stackDeployCmd() *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:     "deploy -c FILE [-c FILE...] [--prune] [--detach] [--timeout 5m] STACK",
		Aliases: []string{"up"},
		Short:   "Deploy or update a stack from compose files, and wait until it converges",
		Long: "deploy creates the stack's networks and services (named STACK_NAME, labelled\n" +
			"com.docker.stack.namespace=STACK), updates the services whose spec changed (a rolling\n" +
			"update), leaves the others alone and, with --prune, removes the stack's services no\n" +
			"longer in the files. Nothing is written when a file is invalid. It then waits until\n" +
			"every service runs its replicas (healthy) and finished its update, and fails naming\n" +
			"the services that failed or did not converge within --timeout; --detach returns at once.",
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(f.files) == 0 {
				return errors.New("deploy needs a compose file: -c FILE")
			}
			if f.resolve != "never" {
				return fmt.Errorf("--resolve-image %q: Shoal does not pin images to digests; nodes pull the tag when a task starts (use never)", f.resolve)
			}
			timeout, err := parseDuration("--timeout", f.timeout)
			if err != nil {
				return err
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout %q: want a duration above 0", f.timeout)
			}
			ns := args[0]
			l, st, err := a.loadStack(cmd, f.files, ns)
			if err != nil {
				return err
			}
			if len(l.Ignored) > 0 {
				fmt.Fprintf(a.stderr, "Ignoring unsupported options: %s\n\n", strings.Join(l.Ignored, ", "))
			}
			budget := clientTimeout
			if !f.detach {
				budget += timeout
			}
			return a.withClientTimeout(cmd, budget, func(ctx context.Context, c *api.Client) error {
				return a.deployStack(ctx, c, st, f, timeout)
			})
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVarP(&f.files, "compose-file", "c", nil, "compose file (repeatable: later files override earlier ones)")
	fs.BoolVar(&f.prune, "prune", false, "remove the stack's services that are no longer in the files")
	fs.BoolVarP(&f.detach, "detach", "d", false, "return once the changes are accepted instead of waiting for the stack to converge")
	fs.StringVar(&f.resolve, "resolve-image", "never", "never: Shoal does not pin images to digests")
	fs.StringVar(&f.timeout, "timeout", "5m", "give up waiting for the stack to converge after this long")
	return cmd
}

// deployTarget is a service deploy waits for.
type deployTarget struct {
	id, name string
	updated  bool
	// before are the task IDs the service had before the deploy: their
	// failures are not this deploy's.
	before map[string]bool
}

func (a *app) deployStack(ctx context.Context, c *api.Client, st *stack.Stack, f deployFlags, timeout time.Duration) error {
	cl, err := readCluster(ctx, c, st.Namespace)
	if err != nil {
		return err
	}
	plan, err := stack.MakePlan(st, cl)
	if err != nil {
		return err
	}
	for _, spec := range plan.CreateNetworks {
		fmt.Fprintf(a.stdout, "Creating network %s\n", spec.Name)
		if _, err := c.CreateNetwork(ctx, spec); err != nil {
			return fmt.Errorf("create network %s: %w", spec.Name, err)
		}
	}
	for _, o := range plan.CreateSecrets {
		fmt.Fprintf(a.stdout, "Creating secret %s\n", o.Name)
		if _, err := c.CreateSecret(ctx, api.SecretSpec{Name: o.Name, Labels: o.Labels, Data: o.Data}); err != nil {
			return fmt.Errorf("create secret %s: %w", o.Name, err)
		}
	}
	for _, o := range plan.CreateConfigs {
		fmt.Fprintf(a.stdout, "Creating config %s\n", o.Name)
		if _, err := c.CreateConfig(ctx, api.ConfigSpec{Name: o.Name, Labels: o.Labels, Data: o.Data}); err != nil {
			return fmt.Errorf("create config %s: %w", o.Name, err)
		}
	}
	var targets []deployTarget
	for _, spec := range plan.Create {
		fmt.Fprintf(a.stdout, "Creating service %s\n", spec.Name)
		svc, err := c.CreateService(ctx, spec)
		if err != nil {
			return fmt.Errorf("create service %s: %w", spec.Name, err)
		}
		targets = append(targets, deployTarget{id: svc.ID, name: spec.Name, before: map[string]bool{}})
	}
	for _, ch := range plan.Update {
		before, err := taskIDs(ctx, c, ch.Current.ID)
		if err != nil {
			return err
		}
		spec := ch.Spec.Clone()
		spec.Task.ForceUpdate = ch.Current.Spec.Task.ForceUpdate
		fmt.Fprintf(a.stdout, "Updating service %s\n", spec.Name)
		if _, err := c.UpdateService(ctx, ch.Current.ID, api.ServiceUpdate{Version: ch.Current.Meta.Version, Spec: &spec}); err != nil {
			return fmt.Errorf("update service %s: %w", spec.Name, err)
		}
		targets = append(targets, deployTarget{id: ch.Current.ID, name: spec.Name, updated: true, before: before})
	}
	for _, s := range plan.Unchanged {
		fmt.Fprintf(a.stdout, "Service %s unchanged\n", s.Spec.Name)
		before, err := taskIDs(ctx, c, s.ID)
		if err != nil {
			return err
		}
		targets = append(targets, deployTarget{id: s.ID, name: s.Spec.Name, before: before})
	}
	for _, s := range plan.Stale {
		if !f.prune {
			fmt.Fprintf(a.stdout, "Service %s is no longer in the files (--prune removes it)\n", s.Spec.Name)
			continue
		}
		fmt.Fprintf(a.stdout, "Removing service %s\n", s.Spec.Name)
		if err := c.RemoveService(ctx, s.ID); err != nil && !api.IsStatus(err, 404) {
			return fmt.Errorf("remove service %s: %w", s.Spec.Name, err)
		}
	}
	if f.detach {
		return nil
	}
	slices.SortFunc(targets, func(x, y deployTarget) int { return strings.Compare(x.name, y.name) })
	return a.waitStack(ctx, c, targets, timeout, f.timeout)
}

// readCluster lists what a deploy compares the stack with; the stack's
// configs are read with their data.
func readCluster(ctx context.Context, c *api.Client, ns string) (stack.Cluster, error) {
	var cl stack.Cluster
	var err error
	if cl.Networks, err = c.Networks(ctx); err != nil {
		return cl, fmt.Errorf("list networks: %w", err)
	}
	if cl.Services, err = c.Services(ctx); err != nil {
		return cl, fmt.Errorf("list services: %w", err)
	}
	if cl.Secrets, err = c.Secrets(ctx); err != nil {
		return cl, fmt.Errorf("list secrets: %w", err)
	}
	if cl.Configs, err = c.Configs(ctx); err != nil {
		return cl, fmt.Errorf("list configs: %w", err)
	}
	for i, cfg := range cl.Configs {
		if stack.Namespace(cfg.Spec.Labels) == ns {
			full, err := c.Config(ctx, cfg.ID)
			if err != nil {
				return cl, fmt.Errorf("inspect config %s: %w", cfg.Spec.Name, err)
			}
			cl.Configs[i] = full
		}
	}
	return cl, nil
}

func taskIDs(ctx context.Context, c *api.Client, serviceID string) (map[string]bool, error) {
	tasks, err := c.Tasks(ctx, api.TaskFilter{Service: serviceID})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		out[t.ID] = true
	}
	return out, nil
}

// serviceProgress is where one service of a deploy is.
type serviceProgress struct {
	line   string // what to print when it changes
	done   bool
	failed string // why it failed, "" if it did not
}

// deployFailures: a rejected task (it could not start: an image that does
// not exist, a bad spec) fails a service at once; tasks that exit count
// against it from the third on, as a restart loop.
const deployFailedExits = 3

// progressOf judges one service from its view and tasks.
func progressOf(t deployTarget, v api.ServiceView, tasks []*api.Task) serviceProgress {
	want, _ := json.Marshal(v.Spec.Task)
	// onSpec: a running task of the service's current spec, on its networks
	// (a change of networks alone replaces tasks too).
	onSpec := func(tk *api.Task) bool {
		if tk.DesiredState != api.TaskRunning || tk.Status.State != api.TaskRunning {
			return false
		}
		if got, _ := json.Marshal(tk.Spec); string(got) != string(want) {
			return false
		}
		for _, id := range v.Spec.Networks {
			if !slices.ContainsFunc(tk.Networks, func(a api.NetworkAttachment) bool { return a.NetworkID == id }) {
				return false
			}
		}
		return true
	}
	var errs []string
	rejected, failed, current := 0, 0, 0
	for _, tk := range tasks {
		if t.before[tk.ID] {
			if onSpec(tk) {
				current++
			}
			continue
		}
		switch tk.Status.State {
		case api.TaskRejected:
			rejected++
		case api.TaskFailed:
			failed++
		}
		if tk.Status.State == api.TaskRejected || tk.Status.State == api.TaskFailed {
			if e := tk.Status.Err; e != "" && !slices.Contains(errs, taskName(tk)+": "+e) {
				errs = append(errs, taskName(tk)+": "+e)
			}
		}
		if onSpec(tk) {
			current++
		}
	}
	p := serviceProgress{line: fmt.Sprintf("%d/%d running", v.Running, v.Desired)}
	if t.updated {
		p.line = fmt.Sprintf("%d/%d running the new spec", current, v.Desired)
		if st := v.UpdateStatus; st != nil {
			p.line += " (" + string(st.State) + ")"
			switch st.State {
			case api.UpdatePaused, api.UpdateRollbackPaused, api.UpdateRollbackStarted, api.UpdateRollbackCompleted:
				p.failed = "update " + string(st.State)
				if st.Message != "" {
					p.failed += ": " + st.Message
				}
				return p
			}
		}
	}
	if rejected > 0 || failed >= deployFailedExits {
		p.failed = strings.Join(errs, "; ")
		if p.failed == "" {
			p.failed = fmt.Sprintf("%d tasks rejected, %d failed", rejected, failed)
		}
		return p
	}
	if v.Spec.Mode.IsJob() {
		// A job converges when its run completed.
		p.line = fmt.Sprintf("%d/%d completed", v.Completed, v.Desired)
		if v.Desired > 0 && v.Completed >= v.Desired {
			p.done = true
			p.line = "completed (" + p.line + ")"
		}
		return p
	}
	converged := v.Running == v.Desired && (v.Spec.Mode != api.ModeGlobal || v.Desired > 0) && uint64(current) == v.Desired
	if t.updated && v.UpdateStatus != nil && v.UpdateStatus.State != api.UpdateCompleted {
		converged = false
	}
	if converged {
		p.done = true
		p.line = fmt.Sprintf("converged (%d/%d running)", v.Running, v.Desired)
	}
	return p
}

// waitStack polls the targets until each converged or failed, printing
// each service's progress when it changes.
func (a *app) waitStack(ctx context.Context, c *api.Client, targets []deployTarget, timeout time.Duration, timeoutText string) error {
	deadline := a.clock.Now().Add(timeout)
	tick, stop := a.clock.NewTicker(convergePoll)
	defer stop()
	last := make(map[string]serviceProgress, len(targets))
	for {
		pending := 0
		for _, t := range targets {
			if p := last[t.name]; p.done || p.failed != "" {
				continue
			}
			v, err := c.Service(ctx, t.id)
			if err != nil {
				return fmt.Errorf("verify service %s: %w", t.name, err)
			}
			tasks, err := c.Tasks(ctx, api.TaskFilter{Service: t.id})
			if err != nil {
				return fmt.Errorf("verify service %s: %w", t.name, err)
			}
			p := progressOf(t, v, tasks)
			if p.line != last[t.name].line || p.failed != "" {
				line := p.line
				if p.failed != "" {
					line = "failed: " + p.failed
				}
				fmt.Fprintf(a.stdout, "%s: %s\n", t.name, line)
			}
			last[t.name] = p
			if !p.done && p.failed == "" {
				pending++
			}
		}
		timedOut := !a.clock.Now().Before(deadline)
		if pending == 0 || timedOut {
			var failed, late []string
			for _, t := range targets {
				p := last[t.name]
				switch {
				case p.failed != "":
					failed = append(failed, fmt.Sprintf("%s (%s)", t.name, p.failed))
				case !p.done:
					late = append(late, fmt.Sprintf("%s (%s)", t.name, p.line))
				}
			}
			var msgs []string
			if len(failed) > 0 {
				msgs = append(msgs, "failed: "+strings.Join(failed, ", "))
			}
			if len(late) > 0 {
				msgs = append(msgs, fmt.Sprintf("did not converge within %s: %s", timeoutText, strings.Join(late, ", ")))
			}
			if len(msgs) > 0 {
				return fmt.Errorf("stack deploy: %s", strings.Join(msgs, "; "))
			}
			fmt.Fprintf(a.stdout, "Stack converged: %d services\n", len(targets))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("verify stack: %w", ctx.Err())
		case <-tick:
		}
	}
}

// stackServices lists the services of stack ns, sorted by name.
func stackServices(ctx context.Context, c *api.Client, ns string) ([]api.ServiceView, error) {
	all, err := c.Services(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.ServiceView
	for _, s := range all {
		if stack.Namespace(s.Spec.Labels) == ns {
			out = append(out, s)
		}
	}
	sortServices(out)
	return out, nil
}

func (a *app) stackLsCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls [--format json]",
		Aliases: []string{"list"},
		Short:   "List the stacks",
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
				count := map[string]int{}
				for _, s := range services {
					if ns := stack.Namespace(s.Spec.Labels); ns != "" {
						count[ns]++
					}
				}
				return writeStacks(a.stdout, count, format)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	return cmd
}

// stackSummary is one line of stack ls.
type stackSummary struct {
	Name     string `json:"name"`
	Services int    `json:"services"`
}

func writeStacks(w io.Writer, count map[string]int, format string) error {
	out := []stackSummary{}
	for ns, n := range count {
		out = append(out, stackSummary{Name: ns, Services: n})
	}
	slices.SortFunc(out, func(x, y stackSummary) int { return strings.Compare(x.Name, y.Name) })
	if format == formatJSON {
		return writeJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSERVICES")
	for _, s := range out {
		fmt.Fprintf(tw, "%s\t%d\n", s.Name, s.Services)
	}
	return tw.Flush()
}

func (a *app) stackServicesCmd() *cobra.Command {
	var (
		format string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:   "services [--format json] [-q] STACK",
		Short: "List a stack's services",
		Args:  checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				services, err := stackServices(ctx, c, args[0])
				if err != nil {
					return err
				}
				if len(services) == 0 && format == "" && !quiet {
					return fmt.Errorf("nothing found in stack: %s", args[0])
				}
				return a.writeServices(services, format, quiet)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print service IDs only")
	return cmd
}

func (a *app) stackPsCmd() *cobra.Command {
	var f taskListFlags
	cmd := &cobra.Command{
		Use:   "ps [--format json] [-q] [--no-trunc] STACK",
		Short: "List a stack's tasks",
		Args:  checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(f.format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				services, err := stackServices(ctx, c, args[0])
				if err != nil {
					return err
				}
				if len(services) == 0 {
					return fmt.Errorf("nothing found in stack: %s", args[0])
				}
				var tasks []*api.Task
				for _, s := range services {
					ts, err := c.Tasks(ctx, api.TaskFilter{Service: s.ID})
					if err != nil {
						return err
					}
					tasks = append(tasks, ts...)
				}
				return a.writeTasks(ctx, c, tasks, f)
			})
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func (a *app) stackRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm STACK...",
		Aliases: []string{"remove", "down"},
		Short:   "Remove stacks: their services, then their networks",
		Args:    checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClientTimeout(cmd, clientTimeout+stackRmWait, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(ns string) error { return a.removeStack(ctx, c, ns) })
			})
		},
	}
}

// removeStack removes the stack's services, then its networks once their
// tasks have let go of them (a network in use cannot be removed).
func (a *app) removeStack(ctx context.Context, c *api.Client, ns string) error {
	services, err := stackServices(ctx, c, ns)
	if err != nil {
		return err
	}
	networks, err := c.Networks(ctx)
	if err != nil {
		return err
	}
	// What goes once the services are gone: each refused while a task
	// still uses it.
	type leftover struct {
		kind, id, name string
		remove         func(context.Context, string) error
	}
	var rest []leftover
	secrets, err := c.Secrets(ctx)
	if err != nil {
		return err
	}
	for _, s := range secrets {
		if stack.Namespace(s.Spec.Labels) == ns {
			rest = append(rest, leftover{"secret", s.ID, s.Spec.Name, c.RemoveSecret})
		}
	}
	configs, err := c.Configs(ctx)
	if err != nil {
		return err
	}
	for _, cfg := range configs {
		if stack.Namespace(cfg.Spec.Labels) == ns {
			rest = append(rest, leftover{"config", cfg.ID, cfg.Spec.Name, c.RemoveConfig})
		}
	}
	for _, n := range networks {
		if stack.Namespace(n.Spec.Labels) == ns {
			rest = append(rest, leftover{"network", n.ID, n.Spec.Name, c.RemoveNetwork})
		}
	}
	if len(services) == 0 && len(rest) == 0 {
		return fmt.Errorf("nothing found in stack: %s", ns)
	}
	for _, s := range services {
		fmt.Fprintf(a.stdout, "Removing service %s\n", s.Spec.Name)
		if err := c.RemoveService(ctx, s.ID); err != nil && !api.IsStatus(err, 404) {
			return fmt.Errorf("remove service %s: %w", s.Spec.Name, err)
		}
	}
	deadline := a.clock.Now().Add(stackRmWait)
	tick, stop := a.clock.NewTicker(convergePoll)
	defer stop()
	for _, o := range rest {
		fmt.Fprintf(a.stdout, "Removing %s %s\n", o.kind, o.name)
		for {
			err := o.remove(ctx, o.id)
			if err == nil || api.IsStatus(err, 404) {
				break
			}
			if !api.IsStatus(err, 400) && !api.IsStatus(err, 409) || !a.clock.Now().Before(deadline) {
				return fmt.Errorf("remove %s %s: %w", o.kind, o.name, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("remove %s %s: %w", o.kind, o.name, ctx.Err())
			case <-tick:
			}
		}
	}
	return nil
}

func (a *app) stackConfigCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "config -c FILE [-c FILE...]",
		Short: "Print the merged, interpolated compose file",
		Long: "config prints the files merged, interpolated and checked as deploy reads them\n" +
			"(nothing is sent to the cluster).",
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("config needs a compose file: -c FILE")
			}
			// A name is needed to load; the output does not show it.
			const ns = "config"
			l, _, err := a.loadStack(cmd, files, ns)
			if err != nil {
				return err
			}
			p := l.Project
			p.Name = ""
			for key, n := range p.Networks {
				if !n.External && n.Name == ns+"_"+key {
					n.Name = ""
					p.Networks[key] = n
				}
			}
			b, err := p.MarshalYAML()
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(b)
			return err
		},
	}
	cmd.Flags().StringArrayVarP(&files, "compose-file", "c", nil, "compose file (repeatable: later files override earlier ones)")
	return cmd
}
