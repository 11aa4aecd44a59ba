//go:build unix

package upstream

import (
	"net"
	"syscall"
)

// peekAlive looks at a pooled connection without blocking or consuming
// anything: recv with MSG_PEEK|MSG_DONTWAIT answers EAGAIN for a healthy
// idle connection, 0 bytes for one the target closed, and data for a target
// that sent something unasked (which breaks HTTP/1.1 framing).
func peekAlive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK //nolint:errorlint // raw errno
		return true
	})
	return err == nil && alive
}
