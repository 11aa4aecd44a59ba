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

// batchWriter coalesces ACKs. The connection's reader queues the ACKs it
// decides itself (queued, no wake-up) and writes them all with one syscall
// when it has no complete frame left to read (flush). Verdicts decided on
// goroutines Write theirs, which wakes a writer goroutine that writes
// whatever has accumulated. Under load many ACKs go out per write (and
// HAProxy reads them in one). Batches may go out in any order (each is
// whole frames, and pipelined ACKs may come in any order). The buffer holds
// at most the ACKs of the verdicts in flight.
type batchWriter struct {
	c    net.Conn
	kick chan struct{} // capacity 1: "there is something to write"
	done chan struct{} // closed when loop returns

	wmu sync.Mutex // serializes writes to c

	mu     sync.Mutex // guards buf, spare, err, closed
	buf    []byte
	spare  []byte // the buffer last written, for reuse
	err    error
	closed bool
}

func newBatchWriter(c net.Conn) *batchWriter {
	b := &batchWriter{c: c, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go b.loop()
	return b
}

// Write queues p and has the writer goroutine send it. It fails once a
// write to the connection has failed or the writer is closed.
func (b *batchWriter) Write(p []byte) (int, error) { return b.add(p, true) }

// queued is an io.Writer that queues without waking the writer goroutine:
// the caller flushes.
type queued struct{ b *batchWriter }

func (q queued) Write(p []byte) (int, error) { return q.b.add(p, false) }

func (b *batchWriter) add(p []byte, kick bool) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, errWriterClosed
	}
	b.buf = append(b.buf, p...)
	if kick {
		select {
		case b.kick <- struct{}{}:
		default: // a write is already due; it will take p too
		}
	}
	return len(p), nil
}

// flush writes what is queued, in the caller's goroutine.
func (b *batchWriter) flush() {
	b.mu.Lock()
	if len(b.buf) == 0 || b.err != nil {
		b.mu.Unlock()
		return
	}
	out := b.buf
	b.buf = b.spare[:0]
	b.spare = nil
	b.mu.Unlock()
	b.write(out)
}

func (b *batchWriter) write(out []byte) {
	b.wmu.Lock()
	b.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := b.c.Write(out)
	b.wmu.Unlock()
	b.mu.Lock()
	if err != nil && b.err == nil {
		b.err = err
		b.c.Close() // the connection's reader sees it and ends
	}
	if cap(out) <= 1<<20 {
		b.spare = out[:0]
	}
	b.mu.Unlock()
}

func (b *batchWriter) loop() {
	defer close(b.done)
	for {
		_, more := <-b.kick
		b.flush()
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
