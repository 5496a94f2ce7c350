package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/api"
)

func (a *app) volumeCmd() *cobra.Command {
	return groupCmd("volume", "Manage the nodes' local volumes", a.volumeLsCmd(), a.volumeRmCmd())
}

func (a *app) volumeLsCmd() *cobra.Command {
	var (
		format string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [NODE]",
		Aliases: []string{"list"},
		Short:   "List the local volumes of every ready node, or of one",
		Long: "ls asks the nodes for their named local volumes (made by tasks that mount\n" +
			"type=volume) and prints each with the node that holds it and the tasks there\n" +
			"that use it. Nodes that do not answer are named on stderr.",
		Args: checkArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "" && format != formatJSON {
				return fmt.Errorf("--format %q: want json", format)
			}
			node := ""
			if len(args) == 1 {
				node = args[0]
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				list, err := c.Volumes(ctx, node)
				if err != nil {
					return err
				}
				hosts := make([]string, 0, len(list.Unreachable))
				for h := range list.Unreachable {
					hosts = append(hosts, h)
				}
				slices.Sort(hosts)
				for _, h := range hosts {
					fmt.Fprintf(a.stderr, "node %s did not answer: %s\n", h, list.Unreachable[h])
				}
				switch {
				case quiet:
					var b strings.Builder
					for _, v := range list.Volumes {
						b.WriteString(v.Name + "\n")
					}
					_, err := io.WriteString(a.stdout, b.String())
					return err
				case format == formatJSON:
					return writeJSON(a.stdout, list.Volumes)
				}
				return writeVolumeTable(a.stdout, list.Volumes)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print volume names only")
	return cmd
}

func writeVolumeTable(w io.Writer, vols []api.Volume) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "DRIVER\tVOLUME NAME\tNODE\tUSED BY")
	for _, v := range vols {
		used := make([]string, len(v.UsedBy))
		for i, id := range v.UsedBy {
			used[i] = shortID(id)
		}
		fmt.Fprintf(tw, "local\t%s\t%s\t%s\n", v.Name, v.Hostname, orDash(strings.Join(used, ",")))
	}
	return tw.Flush()
}

func (a *app) volumeRmCmd() *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:     "rm [--node NODE] VOLUME...",
		Aliases: []string{"remove"},
		Short:   "Remove local volumes no task uses",
		Long: "rm removes each named volume from the node given with --node, or from every\n" +
			"node that holds it. A volume a task on any of those nodes uses (its container\n" +
			"exists and has not exited) is not removed anywhere.",
		Args: checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				if err := api.ValidVolumeName(name); err != nil {
					return err
				}
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(name string) error {
					res, err := c.RemoveVolume(ctx, name, node)
					if err != nil {
						return err
					}
					for _, v := range res.Removed {
						fmt.Fprintf(a.stdout, "%s (%s)\n", name, v.Hostname)
					}
					return nil
				})
			})
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "remove it from this node only (ID or hostname)")
	return cmd
}
