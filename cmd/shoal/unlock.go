package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/api"
)

func (a *app) unlockCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unlock",
		Short: "Unlock a restarted manager of an autolocked cluster",
		Long: "unlock reads the cluster's unlock key from stdin (one line) and gives it to the\n" +
			"locked manager on this machine, which then starts. A wrong key is refused.",
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if isTerminal(a.stdout) {
				fmt.Fprint(a.stderr, "Unlock key: ")
			}
			line, err := bufio.NewReader(io.LimitReader(a.stdin, 4096)).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read the unlock key from stdin: %w", err)
			}
			key := strings.TrimSpace(line)
			if key == "" {
				return errors.New("no unlock key on stdin: pipe it in, like: shoal unlock < keyfile")
			}
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				if err := c.Unlock(ctx, key); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, "Manager unlocked.")
				return nil
			})
		},
	}
}

func (a *app) unlockKeyCmd() *cobra.Command {
	var quiet, rotate bool
	cmd := &cobra.Command{
		Use:   "unlock-key [-q] [--rotate]",
		Short: "Show or rotate the cluster's unlock key (autolock)",
		Long: "unlock-key prints the key that unlocks a restarted manager of an autolocked\n" +
			"cluster. --rotate replaces it first: every manager rewraps its key file with the\n" +
			"new key within a second; keep the old one until then.",
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *api.Client) error {
				var (
					k   api.UnlockKey
					err error
				)
				if rotate {
					k, err = c.RotateUnlockKey(ctx)
				} else {
					k, err = c.UnlockKey(ctx)
				}
				if err != nil {
					return err
				}
				if quiet {
					fmt.Fprintln(a.stdout, k.Key)
					return nil
				}
				fmt.Fprintf(a.stdout, "To unlock a restarted manager, run on it:\n\n    shoal unlock\n\nand give it this key:\n\n    %s\n\n"+
					"Keep it safe: without it a locked manager cannot restart.\n", k.Key)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the key only")
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the key first")
	return cmd
}
