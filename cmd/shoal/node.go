package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/api"
)

func (a *app) infoCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [--format json]",
		Short: "Show the local node and its cluster",
		Args:  checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				info, err := c.Info(ctx)
				if err != nil {
					return err
				}
				if format == formatJSON {
					return writeJSON(a.stdout, info)
				}
				return writeInfo(a.stdout, info)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	return cmd
}

func (a *app) nodeCmd() *cobra.Command {
	return groupCmd("node", "Manage the cluster's nodes",
		a.nodeLsCmd(), a.nodeInspectCmd(), a.nodePromoteCmd(), a.nodeDemoteCmd(),
		a.nodeRmCmd(), a.nodeUpdateCmd(), a.nodePsCmd())
}

func (a *app) nodeLsCmd() *cobra.Command {
	var (
		format string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [--format json] [-q]",
		Aliases: []string{"list"},
		Short:   "List the cluster's nodes",
		Args:    checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				nodes, err := c.Nodes(ctx)
				if err != nil {
					return err
				}
				sortNodes(nodes)
				switch {
				case quiet:
					return writeNodeIDs(a.stdout, nodes)
				case format == formatJSON:
					if nodes == nil {
						nodes = []api.NodeView{}
					}
					return writeJSON(a.stdout, nodes)
				}
				self := ""
				if info, err := c.Info(ctx); err == nil {
					self = info.NodeID
				}
				return writeNodeTable(a.stdout, nodes, self)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print node IDs only")
	return cmd
}

func (a *app) nodePsCmd() *cobra.Command {
	var f taskListFlags
	cmd := &cobra.Command{
		Use:   "ps [--format json] [-q] [--no-trunc] [NODE]",
		Short: "List the tasks on a node (default: the node answering)",
		Args:  checkArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(f.format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				ref := ""
				if len(args) == 1 {
					ref = args[0]
				} else {
					info, err := c.Info(ctx)
					if err != nil {
						return fmt.Errorf("find the local node: %w", err)
					}
					ref = info.NodeID
				}
				return a.listTasks(ctx, c, api.TaskFilter{Node: ref}, f)
			})
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func (a *app) nodeInspectCmd() *cobra.Command {
	return inspectCmd(a, "NODE", "nodes", "inspect prints the named nodes (ID, unique ID prefix or hostname) as a JSON array.", (*api.Client).Node)
}

func (a *app) nodePromoteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "promote NODE...",
		Short: "Make nodes managers",
		Args:  checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(ref string) error {
					if _, err := c.PromoteNode(ctx, ref); err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "Node %s promoted to a manager in the cluster.\n", ref)
					return nil
				})
			})
		},
	}
}

func (a *app) nodeDemoteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demote NODE...",
		Short: "Make managers workers",
		Args:  checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(ref string) error {
					if _, err := c.DemoteNode(ctx, ref); err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "Manager %s demoted in the cluster.\n", ref)
					return nil
				})
			})
		},
	}
}

func (a *app) nodeRmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [--force] NODE...",
		Aliases: []string{"remove"},
		Short:   "Remove nodes from the cluster",
		Long: "rm removes nodes that are down or have left. --force also removes a node that is\n" +
			"still up; it is cut off from the cluster.",
		Args: checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(ref string) error {
					if err := c.RemoveNode(ctx, ref, force); err != nil {
						return err
					}
					fmt.Fprintln(a.stdout, ref)
					return nil
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove the node even if it is up")
	return cmd
}

func (a *app) nodeUpdateCmd() *cobra.Command {
	var (
		availability string
		labelAdd     []string
		labelRm      []string
	)
	cmd := &cobra.Command{
		Use:   "update [--availability active|pause|drain] [--label-add KEY=VALUE]... [--label-rm KEY]... NODE",
		Short: "Change a node's availability or labels",
		Args:  checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := nodeUpdate(availability, labelAdd, labelRm)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				if _, err := c.UpdateNode(ctx, args[0], u); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, args[0])
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&availability, "availability", "", "active, pause (no new tasks) or drain (move tasks away)")
	cmd.Flags().StringArrayVar(&labelAdd, "label-add", nil, "add or replace a label, KEY=VALUE (repeatable)")
	cmd.Flags().StringArrayVar(&labelRm, "label-rm", nil, "remove a label by KEY (repeatable)")
	return cmd
}

// nodeUpdate checks the flags of shoal node update and builds the request.
func nodeUpdate(availability string, labelAdd, labelRm []string) (api.NodeUpdate, error) {
	var u api.NodeUpdate
	switch av := api.Availability(availability); av {
	case "":
	case api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
		u.Availability = av
	default:
		return api.NodeUpdate{}, fmt.Errorf("--availability %q: want active, pause or drain", availability)
	}
	for _, kv := range labelAdd {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return api.NodeUpdate{}, fmt.Errorf("--label-add %q: want KEY=VALUE", kv)
		}
		if u.LabelAdd == nil {
			u.LabelAdd = make(map[string]string)
		}
		u.LabelAdd[k] = v
	}
	for _, k := range labelRm {
		if strings.TrimSpace(k) == "" || strings.Contains(k, "=") {
			return api.NodeUpdate{}, fmt.Errorf("--label-rm %q: want a label KEY", k)
		}
		if _, ok := u.LabelAdd[k]; ok {
			return api.NodeUpdate{}, fmt.Errorf("label %q is both added and removed", k)
		}
		u.LabelRm = append(u.LabelRm, k)
	}
	if u.Availability == "" && len(u.LabelAdd) == 0 && len(u.LabelRm) == 0 {
		return api.NodeUpdate{}, errors.New("nothing to update: give --availability, --label-add or --label-rm")
	}
	return u, nil
}

func (a *app) leaveCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "leave [--force]",
		Short: "Make the local node leave the cluster",
		Long: "leave makes the local node leave its cluster. --force leaves even where the\n" +
			"cluster would refuse, for example a manager whose leaving would cost quorum.",
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				if err := c.Leave(ctx, force); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, "Node left the cluster.")
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "leave even if the cluster would refuse")
	return cmd
}
