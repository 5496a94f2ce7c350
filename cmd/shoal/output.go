package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

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
		fmt.Fprintf(w, "Cluster initialized: node %s is now a manager.\n\n", info.NodeID)
	default:
		fmt.Fprintf(w, "Node %s joined cluster %s as a %s.\n\n", info.NodeID, info.ClusterID, info.Role)
	}
	if !info.Resumed {
		if info.WorkerToken != "" {
			_ = writeJoinCommand(w, api.RoleWorker, info.WorkerToken, info.APIAddr)
		}
		if info.ManagerToken != "" {
			_ = writeJoinCommand(w, api.RoleManager, info.ManagerToken, info.APIAddr)
		}
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
