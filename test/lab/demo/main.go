// Command demo runs the local multi-zone lab (make demo) until Ctrl-C.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/spirefed/spire-federation-operator/internal/testenv"
	"github.com/spirefed/spire-federation-operator/test/lab"
)

func main() {
	// The operator's own logs only for errors: the lab prints its progress.
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	// make demo-down stops the lab through this file.
	pidFile := filepath.Join(root, "bin", "demo", "pid")
	if err := os.MkdirAll(filepath.Dir(pidFile), 0o700); err == nil {
		_ = os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o600)
		defer os.Remove(pidFile)
	}
	addr := os.Getenv("DEMO_ADDR")
	if err := lab.Run(ctx, lab.Options{Addr: addr, Out: os.Stdout, KubeconfigDir: filepath.Join(root, "bin", "demo")}); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
