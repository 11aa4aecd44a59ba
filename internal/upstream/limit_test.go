package upstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiterQueueFull(t *testing.T) {
	l := NewLimiter(2, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if a, q := l.Active(), l.Queued(); a != 2 || q != 0 {
		t.Fatalf("active %d queued %d at the limit, want 2 and 0", a, q)
	}
	queued := make(chan error, 1)
	go func() { queued <- l.Acquire(ctx) }()
	waitFor(t, ctx, func() bool { return l.Queued() == 1 })

	if err := l.Acquire(ctx); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Acquire with a full queue = %v, want ErrQueueFull", err)
	}
	l.Release()
	if err := <-queued; err != nil {
		t.Fatalf("queued Acquire = %v", err)
	}
	if a, q := l.Active(), l.Queued(); a != 2 || q != 0 {
		t.Fatalf("active %d queued %d, want 2 and 0", a, q)
	}
	l.Release()
	l.Release()
	if a := l.Active(); a != 0 {
		t.Fatalf("active %d after every release", a)
	}
}

func TestLimiterNoQueueFailsAtOnce(t *testing.T) {
	l := NewLimiter(1, 0)
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(context.Background()); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Acquire = %v, want ErrQueueFull", err)
	}
}

func TestLimiterWaitEndsWithContext(t *testing.T) {
	l := NewLimiter(1, 5)
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Acquire(ctx) }()
	bound, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	waitFor(t, bound, func() bool { return l.Queued() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", err)
	}
	if q := l.Queued(); q != 0 {
		t.Fatalf("%d still queued after cancel", q)
	}
	l.Release()
	if a := l.Active(); a != 0 {
		t.Fatalf("slot leaked: active %d", a)
	}
}

func TestNilLimiterIsUnlimited(t *testing.T) {
	var l *Limiter
	for range 3 {
		if err := l.Acquire(context.Background()); err != nil || l.Active() != 0 || l.Queued() != 0 {
			t.Fatal("nil limiter limits")
		}
	}
	l.Release()
	p := newTestPool(t, PoolOptions{}, 1)
	if p.members[0].Limiter() != nil {
		t.Fatal("limiter without MaxConns")
	}
	p = newTestPool(t, PoolOptions{MaxConns: 3, MaxQueue: 1}, 1)
	if l := p.members[0].Limiter(); l == nil || l.max != 3 || l.maxQueue != 1 {
		t.Fatalf("limiter %+v, want 3 and 1", l)
	}
}

// TestLimiterConcurrent never lets more than max holders in, under the race
// detector, with waiters that give up.
func TestLimiterConcurrent(t *testing.T) {
	const maxConns = 4
	l := NewLimiter(maxConns, 100)
	var holders, peak atomic.Int64
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Go(func() {
			for i := range 200 {
				ctx, cancel := context.WithCancel(context.Background())
				if (g+i)%7 == 0 {
					cancel() // some give up before or while waiting
				}
				err := l.Acquire(ctx)
				cancel()
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Error(err)
					}
					continue
				}
				n := holders.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				holders.Add(-1)
				l.Release()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > maxConns {
		t.Errorf("%d holders at once, limit %d", p, maxConns)
	}
	if a, q := l.Active(), l.Queued(); a != 0 || q != 0 {
		t.Errorf("active %d queued %d at the end", a, q)
	}
}
