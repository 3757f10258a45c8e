//go:build !linux

package astarteemu

import "io"

// reservePort does nothing outside Linux, where SO_REUSEADDR does not let a
// listener share its port with a bound socket: the broker's port is only
// taken again when it restarts (see listenBroker).
func reservePort(addr string) (io.Closer, string, error) { return nil, addr, nil }
