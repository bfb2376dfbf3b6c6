package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version names the build when the linker is told to
// (-ldflags "-X main.version=…", as the Dockerfile does): images are built
// from sources without .git, where Go records no commit.
var version string

// buildVersion says which build this binary is: the linker's version when
// given, else what the Go toolchain recorded in the binary: the module
// version (set by `go install …@vX`, "(devel)" for a build from a
// checkout), the commit and whether the tree had changes (recorded when
// built from a git checkout, unless -buildvcs=false). Operators of a
// cluster need it to tell which nodes run what; it is in `chatd version`
// and in the startup log line.
func buildVersion(info *debug.BuildInfo, ok bool) string {
	if version != "" {
		return version
	}
	if !ok {
		return "unknown (no build information)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var commit, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if len(commit) > 12 {
		commit = commit[:12]
	}
	// A version the toolchain derived from the checkout (a pseudo-version,
	// with "+dirty" for changes) names the commit already.
	if commit == "" || strings.Contains(v, commit) {
		return v
	}
	if modified == "true" {
		commit += "+changes"
	}
	return v + " " + commit
}

// thisBuild is buildVersion of the running binary.
func thisBuild() string {
	return buildVersion(debug.ReadBuildInfo())
}

// versionCommand prints the build's version, commit, Go version and
// platform on one line.
func versionCommand(stdout io.Writer) int {
	fmt.Fprintf(stdout, "chatd %s %s %s/%s\n", thisBuild(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
