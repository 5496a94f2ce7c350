package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/api"
)

// shoal secret and shoal config: docker's verbs. Both kinds are a name,
// labels and up to 500 KB of data; only configs show their data.

func (a *app) secretCmd() *cobra.Command {
	return groupCmd("secret", "Manage secrets: files given to tasks, encrypted on managers, in memory on workers",
		a.fileCreateCmd("secret"), a.fileLsCmd("secret"),
		inspectCmd(a, "SECRET", "secrets", "inspect prints the named secrets (ID, unique ID prefix or name) as a JSON array, never their data.", (*api.Client).Secret),
		a.fileRmCmd("secret"))
}

func (a *app) configCmd() *cobra.Command {
	return groupCmd("config", "Manage configs: files given to tasks",
		a.fileCreateCmd("config"), a.fileLsCmd("config"),
		inspectCmd(a, "CONFIG", "configs", "inspect prints the named configs (ID, unique ID prefix or name) as a JSON array, with their data.", (*api.Client).Config),
		a.fileRmCmd("config"))
}

// readData reads a secret's or config's data from a file or, for "-", stdin,
// refusing more than api.MaxSecretBytes.
func (a *app) readData(kind, name, file string) ([]byte, error) {
	var r io.Reader = a.stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, name, err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, api.MaxSecretBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read %s: %w", kind, name, file, err)
	}
	if len(data) > api.MaxSecretBytes {
		return nil, fmt.Errorf("%s %s: %s holds more than %d bytes (500 KB), the most a %s may hold", kind, name, file, api.MaxSecretBytes, kind)
	}
	if err := api.ValidateSecretData(kind, name, data); err != nil {
		return nil, err
	}
	return data, nil
}

func (a *app) fileCreateCmd(kind string) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [--label KEY=VALUE] NAME FILE|-",
		Short: "Create a " + kind + " from a file, or from stdin with -",
		Long: "create stores a " + kind + " of up to 500 KB read from FILE (- reads stdin) and prints\n" +
			"its ID. Its data cannot change: to rotate, create another and update the services.",
		Args: checkArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := api.ValidateSecretName(kind, name); err != nil {
				return err
			}
			lbls, err := parseLabels(labels)
			if err != nil {
				return err
			}
			data, err := a.readData(kind, name, args[1])
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				var id string
				if kind == "secret" {
					s, err := c.CreateSecret(ctx, api.SecretSpec{Name: name, Labels: lbls, Data: data})
					if err != nil {
						return err
					}
					id = s.ID
				} else {
					s, err := c.CreateConfig(ctx, api.ConfigSpec{Name: name, Labels: lbls, Data: data})
					if err != nil {
						return err
					}
					id = s.ID
				}
				fmt.Fprintln(a.stdout, id)
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "set a "+kind+" label, KEY=VALUE (repeatable)")
	return cmd
}

// fileRow is one line of secret ls or config ls.
type fileRow struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

func (a *app) fileLsCmd(kind string) *cobra.Command {
	var (
		format string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [--format json] [-q]",
		Aliases: []string{"list"},
		Short:   "List the cluster's " + kind + "s",
		Args:    checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				rows := []fileRow{}
				if kind == "secret" {
					list, err := c.Secrets(ctx)
					if err != nil {
						return err
					}
					for _, s := range list {
						rows = append(rows, fileRow{s.ID, s.Spec.Name, s.Spec.Labels, s.Meta.CreatedAt, s.Meta.UpdatedAt})
					}
				} else {
					list, err := c.Configs(ctx)
					if err != nil {
						return err
					}
					for _, s := range list {
						rows = append(rows, fileRow{s.ID, s.Spec.Name, s.Spec.Labels, s.Meta.CreatedAt, s.Meta.UpdatedAt})
					}
				}
				slices.SortFunc(rows, func(x, y fileRow) int { return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.ID, y.ID)) })
				switch {
				case quiet:
					var b strings.Builder
					for _, r := range rows {
						b.WriteString(shortID(r.ID) + "\n")
					}
					_, err := io.WriteString(a.stdout, b.String())
					return err
				case format == formatJSON:
					return writeJSON(a.stdout, rows)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tCREATED\tUPDATED")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", shortID(r.ID), r.Name,
						r.CreatedAt.Format(time.RFC3339), r.UpdatedAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print IDs only")
	return cmd
}

func (a *app) fileRmCmd(kind string) *cobra.Command {
	return &cobra.Command{
		Use:     "rm " + strings.ToUpper(kind) + "...",
		Aliases: []string{"remove"},
		Short:   "Remove " + kind + "s no service uses",
		Args:    checkArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				return a.eachArg(args, func(ref string) error {
					rm := c.RemoveConfig
					if kind == "secret" {
						rm = c.RemoveSecret
					}
					if err := rm(ctx, ref); err != nil {
						return err
					}
					fmt.Fprintln(a.stdout, ref)
					return nil
				})
			})
		},
	}
}
