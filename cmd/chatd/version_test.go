package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	t.Parallel()
	const rev = "4572ce0e430f5e26143bbea616cacbb8aab9ce21"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	cases := []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build information", nil, false, "unknown (no build information)"},
		{"go install of a tag", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, true, "v1.2.3"},
		{"checkout without vcs stamping", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "(devel)"},
		{"empty version", &debug.BuildInfo{}, true, "(devel)"},
		{"devel with a commit", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")}, true, "(devel) 4572ce0e430f"},
		{"devel with changes", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")}, true, "(devel) 4572ce0e430f+changes"},
		{"pseudo-version names the commit", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130210453-4572ce0e430f+dirty"}, Settings: vcs("true")}, true, "v0.0.0-20261130210453-4572ce0e430f+dirty"},
		{"tag and commit", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs("false")}, true, "v1.2.3 4572ce0e430f"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildVersion(tc.info, tc.ok); got != tc.want {
				t.Errorf("buildVersion = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBuildVersionFromLinker: a version given to the linker (the
// Dockerfile's CHATD_VERSION) wins over what the toolchain recorded. Not
// parallel: it sets the package's version while no other test runs.
func TestBuildVersionFromLinker(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.4.0-3-gabcdef1"
	info := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	if got := buildVersion(info, true); got != "v1.4.0-3-gabcdef1" {
		t.Errorf("buildVersion = %q, want the linker's v1.4.0-3-gabcdef1", got)
	}
}

// TestVersionCommand: `chatd version` and its flag spellings print one
// line on stdout and exit 0, without reading any configuration.
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "-version", "--version"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{arg}, env{"CHATD_ADDR": "not an address"}.get, &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit status %d, stderr %q", arg, code, stderr.String())
		}
		out := stdout.String()
		if !strings.HasPrefix(out, "chatd ") || !strings.HasSuffix(out, " "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+"\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("%s printed %q, want one line: chatd VERSION GOVERSION OS/ARCH", arg, out)
		}
		if stderr.Len() != 0 {
			t.Errorf("%s: stderr %q", arg, stderr.String())
		}
	}
}
