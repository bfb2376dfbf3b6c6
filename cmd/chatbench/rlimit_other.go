//go:build !unix

package main

// raiseOpenFileLimit is a no-op where there is no RLIMIT_NOFILE; 0 means
// unknown.
func raiseOpenFileLimit() (uint64, error) { return 0, nil }
