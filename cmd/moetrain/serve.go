package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/serve"
)

func init() {
	var host string
	var port int
	cmd := &cobra.Command{
		Use:   "serve RUN_DIR|SWEEP_DIR... [--port N] [--host ADDR]",
		Short: "Serve a live page of runs: losses, lr, grad norm, tokens/s, balance losses, expert load, the compare table",
		Long: `Serve a local web page that lists the runs under the given directories (run
directories, or sweep directories holding them) and shows, for each, training and
held-out loss, learning rate, gradient norm, tokens/s, balance losses and a per-layer
expert-load heatmap over training, with the compare table of the runs that have
evaluations. The page updates while the runs train. It only reads the run
directories; it never writes into them.

The server listens on 127.0.0.1 (this machine only) unless --host says otherwise;
--port 0 picks a free port. Ctrl-C stops it.`,
		Example: `  moetrain serve runs/small-deepseekmoe
  moetrain serve runs/sweep-table1 --port 8080`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if port < 0 || port > 65535 {
				return usagef("--port %d: want 0 to 65535", port)
			}
			srv, err := serve.New(args)
			if err != nil {
				return asUsage(err)
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return fmt.Errorf("listen on %s port %d: %w", host, port, err)
			}
			n := len(srv.RunDirs())
			fmt.Fprintf(cmd.OutOrStdout(), "serving %d run(s) at http://%s/ (Ctrl-C stops)\n", n, ln.Addr())
			hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				hs.Shutdown(sctx)
			}()
			if err := hs.Serve(ln); err != nil && err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "address to listen on (0.0.0.0 exposes the page to the network)")
	cmd.Flags().IntVar(&port, "port", 8080, "port to listen on (0: a free one)")
	rootCmd.AddCommand(cmd)
}
