package haproxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// writeTimeout bounds one write to HAProxy: a peer that stops reading for
// this long is cut off.
const writeTimeout = 10 * time.Second

var errWriterClosed = errors.New("haproxy: connection writer closed")

// batchWriter coalesces the ACKs of pipelined verdicts: Write appends to a
// buffer, and one goroutine writes whatever has accumulated with one
// syscall. Under load many ACKs go out per write (and HAProxy reads them
// in one); a lone ACK is written at once. The buffer holds at most the
// ACKs of the verdicts in flight, which MaxInFlight bounds.
type batchWriter struct {
	c    net.Conn
	kick chan struct{} // capacity 1: "there is something to write"
	done chan struct{} // closed when loop returns

	mu     sync.Mutex // guards buf, err, closed
	buf    []byte
	err    error
	closed bool
}

func newBatchWriter(c net.Conn) *batchWriter {
	b := &batchWriter{c: c, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go b.loop()
	return b
}

// Write queues p. It fails once a write to the connection has failed or
// the writer is closed.
func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, errWriterClosed
	}
	b.buf = append(b.buf, p...)
	select {
	case b.kick <- struct{}{}:
	default: // a write is already due; it will take p too
	}
	return len(p), nil
}

func (b *batchWriter) loop() {
	defer close(b.done)
	var out []byte
	for {
		_, more := <-b.kick
		b.mu.Lock()
		out, b.buf = b.buf, out[:0]
		failed := b.err != nil
		b.mu.Unlock()
		if len(out) > 0 && !failed {
			b.c.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := b.c.Write(out); err != nil {
				b.mu.Lock()
				b.err = err
				b.mu.Unlock()
				b.c.Close() // the connection's reader sees it and ends
			}
		}
		if !more {
			return
		}
	}
}

// close writes what is queued and stops the writer. Later Writes fail.
func (b *batchWriter) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.kick)
	}
	b.mu.Unlock()
	<-b.done
}
