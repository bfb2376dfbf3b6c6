//go:build !linux

package server

import (
	"net"
	"time"
)

// deferAccept is TCP_DEFER_ACCEPT where Linux has it; elsewhere,
// connections are accepted as they come.
func deferAccept(net.Listener, time.Duration) {}
