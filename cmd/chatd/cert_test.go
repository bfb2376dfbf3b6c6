package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMode os.FileMode
		wantErr  string
	}{
		{name: "default mode", args: []string{"-host", "localhost,127.0.0.1"}, wantMode: 0o600},
		{name: "readable by a balancer", args: []string{"-host", "localhost", "-mode", "0644"}, wantMode: 0o644},
		{name: "bad mode", args: []string{"-mode", "rw"}, wantCode: 2, wantErr: "octal file mode"},
		{name: "mode out of range", args: []string{"-mode", "7777"}, wantCode: 2, wantErr: "octal file mode"},
		{name: "no days", args: []string{"-days", "0"}, wantCode: 2, wantErr: "-days"},
		{name: "unknown flag", args: []string{"-nope"}, wantCode: 2, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "x.pem")
			var stderr bytes.Buffer
			code := certCommand(append(tt.args, "-out", out), &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if tt.wantCode != 0 {
				if !strings.Contains(stderr.String(), tt.wantErr) {
					t.Fatalf("stderr %q does not say %q", stderr.String(), tt.wantErr)
				}
				return
			}
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tt.wantMode {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tt.wantMode)
			}
			// One PEM with certificate and key, as HAProxy and -tls-cert/-tls-key take it.
			pair, err := tls.LoadX509KeyPair(out, out)
			if err != nil {
				t.Fatalf("not a certificate and key: %v", err)
			}
			cert, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.VerifyHostname("localhost"); err != nil {
				t.Errorf("certificate not for localhost: %v", err)
			}
		})
	}
}
