// export.go is `trainer export`: upload a checkpoint to S3-compatible object storage (package
// checkpoints/objstore: data files first, manifest.json last, then <prefix>/latest), optionally apply remote
// retention, and print a JSON report (files, bytes, seconds, MB/s, skipped files, pruned checkpoints).

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
)

func init() { extraCommands = append(extraCommands, newExportCmd) }

// exportResult is what `trainer export` prints.
type exportResult struct {
	objstore.Report
	Pruned []string `json:"pruned,omitempty"`
}

func newExportCmd() *cobra.Command {
	var ckpt, to, endpoint string
	var keepLast, keepEvery, partMiB, threads int
	c := &cobra.Command{
		Use:   "export --checkpoint DIR --to s3://bucket/prefix",
		Short: "Upload a checkpoint to S3-compatible object storage (s3://bucket/prefix/<name>/); prints a JSON report",
		Long: `Upload a checkpoint directory to s3://bucket/prefix/<name>/ and point s3://bucket/prefix/latest at it.
Data files go first, manifest.json last, so readers never see an incomplete checkpoint; files already
there with the right SHA-256 are skipped. Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN and AWS_REGION; the endpoint from --endpoint or AWS_ENDPOINT_URL (http:// = plain HTTP,
https:// or a bare host = TLS), else AWS S3.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ckpt == "" || to == "" {
				return errors.New("--checkpoint and --to are required")
			}
			dst, err := objstore.ParseURL(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if keepLast < 0 || keepEvery < 0 || partMiB < 5 || threads < 1 {
				return fmt.Errorf("--keep-last and --keep-every must be >= 0, --part-size-mib >= 5, --threads >= 1")
			}
			dir, err := checkpointDir(ckpt)
			if err != nil {
				return err
			}
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			cfg := objstore.ConfigFromEnv()
			if endpoint != "" {
				cfg.Endpoint = endpoint
			}
			cfg.Log = log
			store, err := objstore.New(cfg)
			if err != nil {
				return err
			}
			log.Info("export", "checkpoint", dir, "to", dst.String(), "store", cfg)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := store.Export(ctx, dir, dst, objstore.ExportOptions{PartSize: uint64(partMiB) << 20, Threads: uint(threads)})
			if err != nil {
				return err
			}
			res := exportResult{Report: rep}
			if keepLast > 0 || keepEvery > 0 {
				if res.Pruned, err = store.PruneRemote(ctx, dst, keepLast, keepEvery); err != nil {
					return err
				}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		},
	}
	c.Flags().StringVar(&ckpt, "checkpoint", "", "checkpoint directory (or a run's checkpoints/ directory: its latest)")
	c.Flags().StringVar(&to, "to", "", "destination s3://bucket/prefix (the checkpoint goes to <prefix>/<name>/)")
	c.Flags().StringVar(&endpoint, "endpoint", "", "S3 endpoint URL (default AWS_ENDPOINT_URL, else AWS S3); http:// means plain HTTP")
	c.Flags().IntVar(&keepLast, "keep-last", 0, "after the upload, keep only the N newest remote checkpoints (plus every --keep-every-th and latest); 0 with --keep-every 0 = no pruning")
	c.Flags().IntVar(&keepEvery, "keep-every", 0, "with remote pruning, also keep checkpoints whose step is a multiple of M")
	c.Flags().IntVar(&partMiB, "part-size-mib", 16, "multipart part size in MiB (at least 5)")
	c.Flags().IntVar(&threads, "threads", 4, "parts uploaded in parallel per file")
	return c
}

// checkpointDir accepts a checkpoint directory, or a checkpoints/ directory whose latest names one.
func checkpointDir(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, checkpoints.ManifestFile)); err == nil {
		return dir, nil
	}
	if _, err := os.Stat(filepath.Join(dir, checkpoints.LatestFile)); err == nil {
		return checkpoints.Latest(dir)
	}
	return "", fmt.Errorf("--checkpoint %s: neither a checkpoint (no %s) nor a checkpoints directory (no %s)", dir, checkpoints.ManifestFile, checkpoints.LatestFile)
}

// commandLogger builds a logger to stderr from the root's --log-level and --log-format.
func commandLogger(cmd *cobra.Command) (*slog.Logger, error) {
	g := &globalFlags{logLevel: "info", logFormat: "text"}
	if f := cmd.Flag("log-level"); f != nil {
		g.logLevel = f.Value.String()
	}
	if f := cmd.Flag("log-format"); f != nil {
		g.logFormat = f.Value.String()
	}
	return g.logger(cmd.ErrOrStderr())
}
