package upstream

import (
	"context"
	"errors"
	"sync"
)

// ErrQueueFull is returned by Limiter.Acquire when the target is at its
// connection limit and its wait queue is full. The proxy answers 503 with
// Retry-After: the target is alive but saturated, which differs from
// ErrNoTarget (nothing is alive) in logs and metrics.
var ErrQueueFull = errors.New("upstream target queue is full")

// Limiter caps the requests sent to one target at a time, with a bounded
// queue of waiters, like HAProxy's maxconn and maxqueue: Metabase answers
// a few expensive requests faster than many at once, and a bounded queue
// turns an overload into quick 503s instead of a growing backlog.
//
// Waiters are served in arrival order. The fast path (a free slot, no
// queue) takes an uncontended mutex and allocates nothing; a waiter
// allocates its channel. A nil *Limiter means no limit: every method
// accepts a nil receiver.
type Limiter struct {
	max, maxQueue int

	mu      sync.Mutex // guards active and waiters
	active  int
	waiters []chan struct{} // FIFO; a waiter is granted by closing its channel
}

// NewLimiter returns a limiter of maxConns concurrent holders and at most
// maxQueue waiters. maxConns must be positive.
func NewLimiter(maxConns, maxQueue int) *Limiter {
	return &Limiter{max: maxConns, maxQueue: maxQueue}
}

// Acquire takes a slot, waiting in the queue until one frees or ctx ends.
// It returns ErrQueueFull at once when the queue is full (or maxQueue is 0
// and no slot is free), and ctx.Err() when ctx ends first. Each nil return
// must be matched by one Release.
func (l *Limiter) Acquire(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.active < l.max && len(l.waiters) == 0 {
		l.active++
		l.mu.Unlock()
		return nil
	}
	if len(l.waiters) >= l.maxQueue {
		l.mu.Unlock()
		return ErrQueueFull
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()

	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	select {
	case <-ch:
		// Granted while ctx ended: the slot is ours to hand back.
		l.mu.Unlock()
		l.Release()
		return ctx.Err()
	default:
	}
	if i := indexChan(l.waiters, ch); i >= 0 {
		l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
	}
	l.mu.Unlock()
	return ctx.Err()
}

// Release frees a slot, handing it to the oldest waiter if there is one.
func (l *Limiter) Release() {
	if l == nil {
		return
	}
	l.mu.Lock()
	if len(l.waiters) > 0 {
		ch := l.waiters[0]
		l.waiters[0] = nil
		l.waiters = l.waiters[1:]
		close(ch) // the slot passes on: active is unchanged
	} else {
		l.active--
	}
	l.mu.Unlock()
}

// Active reports the slots held.
func (l *Limiter) Active() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

// Queued reports the requests waiting for a slot.
func (l *Limiter) Queued() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters)
}

func indexChan(s []chan struct{}, c chan struct{}) int {
	for i, x := range s {
		if x == c {
			return i
		}
	}
	return -1
}
