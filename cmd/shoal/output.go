package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/node"
)

const formatJSON = "json"

// checkFormat accepts the values of --format: empty for the human format, or json.
func checkFormat(f string) error {
	if f == "" || f == formatJSON {
		return nil
	}
	return fmt.Errorf("--format %q: want json", f)
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// sortNodes orders nodes by hostname, then ID, as node ls shows them.
func sortNodes(nodes []api.NodeView) {
	slices.SortFunc(nodes, func(x, y api.NodeView) int {
		return cmp.Or(
			cmp.Compare(x.Description.Hostname, y.Description.Hostname),
			cmp.Compare(x.ID, y.ID),
		)
	})
}

// writeNodeIDs writes one node ID a line, for node ls -q.
func writeNodeIDs(w io.Writer, nodes []api.NodeView) error {
	var b strings.Builder
	for _, n := range nodes {
		b.WriteString(n.ID)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeNodeTable writes nodes as node ls does, marking the node with ID self.
func writeNodeTable(w io.Writer, nodes []api.NodeView, self string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOSTNAME\tSTATUS\tAVAILABILITY\tMANAGER STATUS\tADDRESS\tENGINE")
	for _, n := range nodes {
		id := n.ID
		if self != "" && id == self {
			id += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			id,
			orDash(n.Description.Hostname),
			orDash(title(string(n.Status.State))),
			orDash(title(string(n.Spec.Availability))),
			n.ManagerStatus,
			orDash(n.Status.Addr),
			engineString(n.Description.Engine),
		)
	}
	return tw.Flush()
}

// engineString is the ENGINE column: name and version, flagged when unreachable.
func engineString(e api.Engine) string {
	s := strings.TrimSpace(e.Name + " " + e.Version)
	switch {
	case e.Available && s == "":
		return "-"
	case e.Available:
		return s
	case s == "":
		return "unavailable"
	default:
		return s + " (unavailable)"
	}
}

// writeInfo writes the human form of shoal info.
func writeInfo(w io.Writer, info api.Info) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	leader := info.LeaderID
	if info.IsLeader {
		leader = info.NodeID + " (this node)"
	}
	rows := [][2]string{
		{"Node ID", info.NodeID},
		{"Cluster ID", info.ClusterID},
		{"Role", string(info.Role)},
		{"Leader", leader},
		{"Address", info.Addr},
		{"API", info.Endpoints.API},
		{"Raft", info.Endpoints.Raft},
		{"Gossip", info.Endpoints.Gossip},
		{"Metrics", info.Endpoints.Metrics},
		{"Engine", engineString(info.Engine)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], orDash(r[1]))
	}
	if info.Engine.Error != "" {
		fmt.Fprintf(tw, "Engine error:\t%s\n", info.Engine.Error)
	}
	return tw.Flush()
}

// writeJoinCommand writes the command that joins a node with role to the
// cluster whose API is at addr.
func writeJoinCommand(w io.Writer, role api.NodeRole, token, addr string) error {
	_, err := fmt.Fprintf(w, "To add a %s to this cluster, run:\n\n    shoal join --token %s %s\n\n", role, token, addr)
	return err
}

// writeReady writes what a daemon verb prints once the node serves.
func writeReady(w io.Writer, mode node.Mode, dataDir string, info node.ReadyInfo) {
	switch {
	case info.Resumed || mode == node.ModeResume:
		fmt.Fprintf(w, "Resumed node %s (%s) from %s\n", info.NodeID, info.Role, dataDir)
	case mode == node.ModeInit:
		// The daemon's output ends up in logs: no token goes there.
		dd := ""
		if dataDir != defaultDataDir {
			dd = " --data-dir " + dataDir
		}
		fmt.Fprintf(w, "Cluster initialized: node %s is now a manager.\n\n", info.NodeID)
		fmt.Fprintf(w, "To add a worker or a manager, get its join command on this node (it holds a secret,\n"+
			"so it is not printed here):\n\n    shoal%s join-token worker\n    shoal%s join-token manager\n\n", dd, dd)
		if info.AutoLock {
			fmt.Fprintf(w, "Autolock is on: a restarted manager serves nothing until it is given the unlock key\n"+
				"with shoal unlock. Get the key now and keep it somewhere safe, away from this machine\n"+
				"(it is not printed here, since this output may go to logs):\n\n    shoal%s unlock-key\n\n", dd)
		}
	default:
		fmt.Fprintf(w, "Node %s joined cluster %s as a %s.\n\n", info.NodeID, info.ClusterID, info.Role)
	}
	fmt.Fprintf(w, "Serving on unix://%s\n", info.SocketPath)
}

// title capitalizes an ASCII word: "ready" becomes "Ready".
func title(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortIDLen is how much of an ID the tables show, as docker does.
const shortIDLen = 12

// maxErrLen is how much of a task error service ps shows without --no-trunc.
const maxErrLen = 30

func shortID(id string) string {
	if len(id) > shortIDLen {
		return id[:shortIDLen]
	}
	return id
}

// ellipsis cuts s to at most n runes, ending it with … when cut.
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// shortImage drops the digest of an image reference: nginx:1.27@sha256:... is nginx:1.27.
func shortImage(image string) string {
	name, _, _ := strings.Cut(image, "@")
	return name
}

// sortServices orders services by name, then ID, as service ls shows them.
func sortServices(services []api.ServiceView) {
	slices.SortFunc(services, func(x, y api.ServiceView) int {
		return cmp.Or(cmp.Compare(x.Spec.Name, y.Spec.Name), cmp.Compare(x.ID, y.ID))
	})
}

// writeServiceIDs writes one short service ID a line, for service ls -q.
func writeServiceIDs(w io.Writer, services []api.ServiceView) error {
	var b strings.Builder
	for _, s := range services {
		b.WriteString(shortID(s.ID))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeServiceTable writes services as service ls does.
func writeServiceTable(w io.Writer, services []api.ServiceView) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	// The UPDATE column only once some service has been updated.
	withUpdate := slices.ContainsFunc(services, func(s api.ServiceView) bool { return s.UpdateStatus != nil })
	head := "ID\tNAME\tMODE\tREPLICAS\tIMAGE"
	// The PORTS column only once some service publishes a port.
	withPorts := slices.ContainsFunc(services, func(s api.ServiceView) bool { return len(s.Spec.Endpoint.Ports) > 0 })
	if withPorts {
		head += "\tPORTS"
	}
	if withUpdate {
		head += "\tUPDATE"
	}
	fmt.Fprintln(tw, head)
	for _, s := range services {
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s",
			shortID(s.ID), s.Spec.Name, s.Spec.Mode, replicasText(s), shortImage(s.Spec.Task.Image))
		if withPorts {
			line += "\t" + portsColumn(s.Spec.Endpoint.Ports)
		}
		if withUpdate {
			update := "-"
			if st := s.UpdateStatus; st != nil {
				update = string(st.State)
			}
			line += "\t" + update
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// taskName is a task's name in service ps: SERVICE.SLOT, or SERVICE.NODEID
// for a task of a global service.
func taskName(t *api.Task) string {
	if t.Slot == 0 {
		return t.ServiceName + "." + t.NodeID
	}
	return fmt.Sprintf("%s.%d", t.ServiceName, t.Slot)
}

// sortTasks groups tasks by service and slot (or node, for global services)
// and keeps the order within a slot, which the API gives newest first.
func sortTasks(tasks []*api.Task) {
	slices.SortStableFunc(tasks, func(x, y *api.Task) int {
		c := cmp.Or(
			cmp.Compare(x.ServiceName, y.ServiceName),
			cmp.Compare(x.ServiceID, y.ServiceID),
			cmp.Compare(x.Slot, y.Slot),
		)
		if c == 0 && x.Slot == 0 {
			c = cmp.Compare(x.NodeID, y.NodeID)
		}
		return c
	})
}

// writeTaskIDs writes one task ID a line, shortened if trunc, for ps -q.
func writeTaskIDs(w io.Writer, tasks []*api.Task, trunc bool) error {
	var b strings.Builder
	for _, t := range tasks {
		id := t.ID
		if trunc {
			id = shortID(id)
		}
		b.WriteString(id)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTaskTable writes tasks, sorted by sortTasks, as service ps and node
// ps do: a slot's older tasks follow its newest, their names marked " \_ ".
// hosts maps node IDs to hostnames; now dates the current states.
func writeTaskTable(w io.Writer, tasks []*api.Task, hosts map[string]string, now time.Time, trunc bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tIMAGE\tNODE\tDESIRED STATE\tCURRENT STATE\tERROR")
	prevKey := ""
	for _, t := range tasks {
		id, name, image, errText := t.ID, taskName(t), t.Spec.Image, t.Status.Err
		key := t.ServiceID + "/" + name
		if key == prevKey {
			name = ` \_ ` + name
		}
		prevKey = key
		if trunc {
			id, image, errText = shortID(id), shortImage(image), ellipsis(errText, maxErrLen)
		}
		if errText != "" {
			errText = `"` + errText + `"`
		}
		node := t.NodeID
		if h := hosts[t.NodeID]; h != "" {
			node = h
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			id, name, image, node, title(string(t.DesiredState)), currentState(t.Status, now), errText)
	}
	return tw.Flush()
}

// currentState is the CURRENT STATE column: "Running 5 seconds ago",
// with the health of a task that has a check, as docker ps shows it:
// "Running 5 seconds ago (healthy)", "Starting 1 second ago (health: starting)".
func currentState(s api.TaskStatus, now time.Time) string {
	state := title(string(s.State))
	if !s.Timestamp.IsZero() {
		state += " " + strings.ToLower(humanDuration(now.Sub(s.Timestamp))) + " ago"
	}
	switch s.Health {
	case "":
	case api.HealthStarting:
		state += " (health: starting)"
	default:
		state += " (" + string(s.Health) + ")"
	}
	return state
}

// humanDuration says how long d is as docker does: "5 seconds", "About a minute".
func humanDuration(d time.Duration) string {
	if seconds := int(d.Seconds()); seconds < 1 {
		return "Less than a second"
	} else if seconds == 1 {
		return "1 second"
	} else if seconds < 60 {
		return fmt.Sprintf("%d seconds", seconds)
	} else if minutes := int(d.Minutes()); minutes == 1 {
		return "About a minute"
	} else if minutes < 60 {
		return fmt.Sprintf("%d minutes", minutes)
	} else if hours := int(math.Round(d.Hours())); hours == 1 {
		return "About an hour"
	} else if hours < 48 {
		return fmt.Sprintf("%d hours", hours)
	} else if hours < 24*7*2 {
		return fmt.Sprintf("%d days", hours/24)
	} else if hours < 24*30*2 {
		return fmt.Sprintf("%d weeks", hours/24/7)
	} else if hours < 24*365*2 {
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// isTerminal reports whether w is a terminal, as docker decides whether to
// wait for a service by default.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// inspectCmd prints the objects the arguments name as one JSON array; the
// ones found are printed even when others are not.
func inspectCmd[T any](a *app, arg, plural, long string, get func(*api.Client, context.Context, string) (T, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect " + arg + "...",
		Short: "Show " + plural + " in detail, as JSON",
		Long:  long,
		Args:  checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				found := []T{}
				err := a.eachArg(args, func(ref string) error {
					o, err := get(c, ctx, ref)
					if err == nil {
						found = append(found, o)
					}
					return err
				})
				if len(found) > 0 || err == nil {
					if werr := writeJSON(a.stdout, found); werr != nil {
						return werr
					}
				}
				return err
			})
		},
	}
}
