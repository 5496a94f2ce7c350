package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/api"
)

func (a *app) joinTokenCmd() *cobra.Command {
	var quiet, rotate bool
	cmd := &cobra.Command{
		Use:   "join-token [-q] [--rotate] worker|manager",
		Short: "Show or rotate a join token",
		Long: "join-token prints the command that joins a node to the cluster as a worker or a\n" +
			"manager. --rotate replaces the token first; the old one stops working.",
		ValidArgs: []string{string(api.RoleWorker), string(api.RoleManager)},
		Args: checkArgs(func(_ *cobra.Command, args []string) error {
			if len(args) != 1 || (args[0] != string(api.RoleWorker) && args[0] != string(api.RoleManager)) {
				return fmt.Errorf("want one role, worker or manager, got %q", args)
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			role := api.NodeRole(args[0])
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				var (
					tokens api.JoinTokens
					err    error
				)
				if rotate {
					tokens, err = c.RotateJoinToken(ctx, role)
				} else {
					tokens, err = c.JoinTokens(ctx)
				}
				if err != nil {
					return err
				}
				token := tokens.Worker
				if role == api.RoleManager {
					token = tokens.Manager
				}
				if quiet {
					fmt.Fprintln(a.stdout, token)
					return nil
				}
				info, err := c.Info(ctx)
				if err != nil {
					return fmt.Errorf("find the API address: %w", err)
				}
				if rotate {
					fmt.Fprintf(a.stdout, "Rotated the %s join token: the old one no longer works.\n\n", role)
				}
				return writeJoinCommand(a.stdout, role, token, info.Endpoints.API)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the token only")
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the token; the old one stops working")
	return cmd
}
