//go:build !linux

package main

import "syscall"

// bindAddressNoPort does nothing outside Linux.
func bindAddressNoPort(network, address string, c syscall.RawConn) error { return nil }
