package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestHAProxyConfigValid checks deploy/haproxy.cfg with haproxy -c, with
// the environment both docker compose and scripts/cluster.sh give it.
func TestHAProxyConfigValid(t *testing.T) {
	haproxy := requireBinary(t, "haproxy")
	cert := filepath.Join(t.TempDir(), "localhost.pem")
	if out, err := exec.Command(chatdBinary(t), "cert", "-host", "localhost,127.0.0.1", "-out", cert).CombinedOutput(); err != nil {
		t.Fatalf("chatd cert: %v\n%s", err, out)
	}
	cmd := exec.Command(haproxy, "-c", "-f", "haproxy.cfg")
	cmd.Env = append(os.Environ(),
		"LB_HTTP_BIND=127.0.0.1:18080", "LB_HTTPS_BIND=127.0.0.1:18443", "LB_CERT="+cert,
		"CHATD1_ADDR=127.0.0.1:18081", "CHATD2_ADDR=127.0.0.1:18082", "CHATD3_ADDR=127.0.0.1:18083")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}
