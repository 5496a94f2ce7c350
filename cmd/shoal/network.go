package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

func (a *app) networkCmd() *cobra.Command {
	return groupCmd("network", "Manage the cluster's overlay networks",
		a.networkCreateCmd(), a.networkLsCmd(), a.networkInspectCmd(), a.networkRmCmd())
}

func (a *app) networkCreateCmd() *cobra.Command {
	var (
		spec   api.NetworkSpec
		labels []string
	)
	cmd := &cobra.Command{
		Use:   "create [--subnet CIDR] [--attachable] NAME",
		Short: "Create an overlay network",
		Long: "create makes an overlay network that services join with --network. Without\n" +
			"--subnet it gets the next free /24 of 10.10.0.0/16. It prints the network's ID.",
		Args: checkArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			var err error
			if spec.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				n, err := c.CreateNetwork(ctx, spec)
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, n.ID)
				return nil
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&spec.Subnet, "subnet", "", "IPv4 subnet in CIDR form, like 10.0.1.0/24 (default: the next free /24 of 10.10.0.0/16)")
	fs.BoolVar(&spec.Attachable, "attachable", false, "let containers outside services attach")
	fs.BoolVar(&spec.Ingress, "ingress", false, "make this the routing-mesh network that carries published ports")
	fs.StringArrayVar(&labels, "label", nil, "set a network label, KEY=VALUE (repeatable)")
	return cmd
}

// parseLabels reads KEY=VALUE arguments; nil for none.
func parseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

func (a *app) networkLsCmd() *cobra.Command {
	var (
		format string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [--format json] [-q]",
		Aliases: []string{"list"},
		Short:   "List the cluster's networks",
		Args:    checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				networks, err := c.Networks(ctx)
				if err != nil {
					return err
				}
				slices.SortFunc(networks, func(x, y api.Network) int {
					return cmp.Or(cmp.Compare(x.Spec.Name, y.Spec.Name), cmp.Compare(x.ID, y.ID))
				})
				switch {
				case quiet:
					var b strings.Builder
					for _, n := range networks {
						b.WriteString(shortID(n.ID) + "\n")
					}
					_, err := io.WriteString(a.stdout, b.String())
					return err
				case format == formatJSON:
					if networks == nil {
						networks = []api.Network{}
					}
					return writeJSON(a.stdout, networks)
				}
				return writeNetworkTable(a.stdout, networks)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print network IDs only")
	return cmd
}

// writeNetworkTable writes networks as network ls does.
func writeNetworkTable(w io.Writer, networks []api.Network) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NETWORK ID\tNAME\tSUBNET\tGATEWAY\tVNI\tOPTIONS")
	for _, n := range networks {
		var opts []string
		if n.Spec.Ingress {
			opts = append(opts, "ingress")
		}
		if n.Spec.Attachable {
			opts = append(opts, "attachable")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n",
			shortID(n.ID), n.Spec.Name, orDash(n.Spec.Subnet), orDash(n.Gateway), n.VNI, orDash(strings.Join(opts, ",")))
	}
	return tw.Flush()
}

func (a *app) networkInspectCmd() *cobra.Command {
	return inspectCmd(a, "NETWORK", "networks", "inspect prints the named networks (ID, unique ID prefix or name) as a JSON array.", (*api.Client).Network)
}

func (a *app) networkRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "Remove networks no service or task uses",
		Args:    checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(ref string) error {
					if err := c.RemoveNetwork(ctx, ref); err != nil {
						return err
					}
					fmt.Fprintln(a.stdout, ref)
					return nil
				})
			})
		},
	}
}

// endpointFlags are the network flags of shoal service create.
type endpointFlags struct {
	networks, publish []string
	mode              string
}

func (f *endpointFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.networks, "network", nil, "attach the tasks to an overlay network, by name or ID (repeatable)")
	fs.StringArrayVarP(&f.publish, "publish", "p", nil,
		"publish a port: [IP:]PUBLISHED:TARGET[/tcp|udp] on every node (8080:80), or mode=host,published=443,target=8443[,protocol=udp][,published_ip=IP] (repeatable)")
	fs.StringVar(&f.mode, "endpoint-mode", "", "how the service name resolves: vip (one virtual IP, the default) or dnsrr (the task addresses)")
}

// apply checks the flags and sets the spec's networks and endpoint.
func (f *endpointFlags) apply(spec *api.ServiceSpec) error {
	for _, n := range f.networks {
		if strings.TrimSpace(n) == "" {
			return fmt.Errorf("--network %q: want a network name or ID", n)
		}
		spec.Networks = append(spec.Networks, n)
	}
	switch m := api.EndpointMode(f.mode); m {
	case "", api.EndpointVIP, api.EndpointDNSRR:
		spec.Endpoint.Mode = m
	default:
		return fmt.Errorf("--endpoint-mode %q: want vip or dnsrr", f.mode)
	}
	seen := make(map[string]string)
	for _, s := range f.publish {
		p, err := parsePublish(s)
		if err != nil {
			return err
		}
		key := publishKey(p)
		if prev, dup := seen[key]; dup {
			return fmt.Errorf("--publish %q: port %s is already published by --publish %q", s, key, prev)
		}
		seen[key] = s
		spec.Endpoint.Ports = append(spec.Endpoint.Ports, p)
	}
	if err := checkPorts(spec.Endpoint.Ports); err != nil {
		return fmt.Errorf("--publish: %w", err)
	}
	if spec.Endpoint.Mode == api.EndpointDNSRR && len(spec.Endpoint.IngressPorts()) > 0 {
		return fmt.Errorf("--publish needs --endpoint-mode vip: the routing mesh balances over a virtual IP (or publish with mode=host)")
	}
	return nil
}
