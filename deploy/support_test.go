package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// requireBinary skips a test when a program is missing, except in CI
// (CI=true), where a missing program is a failure: .ci/run installs it.
func requireBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI must install it: see .ci/run)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}

var (
	buildOnce sync.Once
	chatdBin  string
	buildErr  error
	buildOut  []byte
)

// chatdBinary builds cmd/chatd of the parent module once per test run.
func chatdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chatd-deploy-test")
		if err != nil {
			buildErr = err
			return
		}
		chatdBin = filepath.Join(dir, "chatd")
		cmd := exec.Command("go", "build", "-o", chatdBin, "./cmd/chatd")
		cmd.Dir = ".."
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build chatd: %v\n%s", buildErr, buildOut)
	}
	return chatdBin
}
