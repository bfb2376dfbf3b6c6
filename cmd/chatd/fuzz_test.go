package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/server"
	"github.com/rs/zerolog"
)

// FuzzConfig sets one setting, as a flag and as its variable, to any
// value: chatd either refuses it with one line, or accepts a configuration
// that the server starts with. Settings that name files are left out (a
// fuzzer must not read /dev/zero).
func FuzzConfig(f *testing.F) {
	var names []string
	newFlagSet(&config{}, io.Discard).VisitAll(func(fl *flag.Flag) {
		switch fl.Name {
		case "jwt-public-key", "tls-cert", "tls-key":
			return
		}
		names = append(names, fl.Name)
	})
	for i, v := range []string{"25s", "0", "-1", "1e9", "NaN", "+Inf", "true", "", "1.5s", "http://*.x", "10.0.0.0/33", "a,b,,c", "\x00", "99999999999999999999"} {
		f.Add(uint8(i), v)
	}
	f.Fuzz(func(t *testing.T, idx uint8, value string) {
		name := names[int(idx)%len(names)]
		for _, try := range []struct {
			args []string
			env  env
		}{
			{[]string{"-" + name + "=" + value}, env{}},
			{nil, env{flagEnv(name): value}},
		} {
			cfg, err := parseConfig(try.args, try.env.get, io.Discard)
			if err != nil {
				if line := oneLine(err); strings.Contains(line, "\n") || line == "" {
					t.Fatalf("%s=%q: error %q is not one line", name, value, line)
				}
				continue
			}
			if name == "redis" || name == "redis-cluster" {
				continue // the broker is chosen in serve
			}
			srv, err := server.New(cfg.srv, server.Deps{Broker: hub.NewMemoryBroker(hub.RetentionConfig{}), Logger: zerolog.Nop()})
			if err != nil || srv == nil {
				t.Fatalf("%s=%q was accepted, but the server refuses it: %v", name, value, err)
			}
		}
	})
}
