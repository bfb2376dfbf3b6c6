package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheckCommand asks this machine's chatd for /healthz, for container
// healthchecks on images without a shell or curl. It reads the listen
// address from CHATD_ADDR (or -addr) like the server does.
func healthcheckCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	addr := getenv("CHATD_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	if len(args) == 2 && (args[0] == "-addr" || args[0] == "--addr") {
		addr = args[1]
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(stderr, "chatd healthcheck: bad address %q: %v\n", addr, err)
		return 2
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: 3 * time.Second}
	if getenv("CHATD_TLS_CERT") != "" {
		scheme = "https"
		client.Transport = insecureLocalTransport()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+"/healthz", nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "chatd healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "chatd healthcheck: %s\n", resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
