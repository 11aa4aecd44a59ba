package auth

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/session"
)

// watchGate is a gate with a cookie store, a settable clock and a fast
// watch interval, for the upgraded-connection lifetime tests.
func watchGate(t *testing.T) (*Gate, *atomic.Int64) {
	t.Helper()
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).Unix())
	codec, err := session.NewCodec([]session.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}})
	if err != nil {
		t.Fatal(err)
	}
	revs, err := session.NewRevocationList(session.RevocationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := session.NewCookieStore(session.CookieOptions{Codec: codec, Name: "gh_session", Revocations: revs})
	if err != nil {
		t.Fatal(err)
	}
	g := &Gate{
		opts: Options{
			Store:         store,
			WatchInterval: 5 * time.Millisecond,
			Now:           func() time.Time { return time.Unix(now.Load(), 0) },
		},
		cookie: "gh_session",
	}
	return g, &now
}

func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("the connection's context did not end after %s", what)
	}
}

func TestUpgradedConnectionEndsWithTheSession(t *testing.T) {
	t.Run("Revoked", func(t *testing.T) {
		g, now := watchGate(t)
		at := time.Unix(now.Load(), 0)
		s := &session.Session{ID: session.NewID(), Issuer: "https://idp", Subject: "u1", Provider: "p", CreatedAt: at}
		v, err := g.opts.Store.Save(context.Background(), s, at)
		if err != nil {
			t.Fatal(err)
		}
		loaded, err := g.opts.Store.Load(context.Background(), v, at)
		if err != nil {
			t.Fatal(err)
		}
		ctx := g.watch(context.Background(), sessionPrincipal(loaded), "gh_session="+v)
		select {
		case <-ctx.Done():
			t.Fatal("ended before anything happened")
		case <-time.After(50 * time.Millisecond):
		}
		if err := g.opts.Store.Revoke(context.Background(), loaded, at); err != nil {
			t.Fatal(err)
		}
		waitDone(t, ctx, "logout")
	})
	t.Run("AbsoluteLifetimeEnds", func(t *testing.T) {
		g, now := watchGate(t)
		at := time.Unix(now.Load(), 0)
		p := &Principal{Method: MethodBearer, ExpiresAt: at.Add(time.Hour)}
		ctx := g.watch(context.Background(), p, "")
		select {
		case <-ctx.Done():
			t.Fatal("ended before the expiry")
		case <-time.After(50 * time.Millisecond):
		}
		now.Add(int64(time.Hour / time.Second))
		waitDone(t, ctx, "the expiry")
	})
	t.Run("RequestEnds", func(t *testing.T) {
		g, now := watchGate(t)
		p := &Principal{Method: MethodBearer, ExpiresAt: time.Unix(now.Load(), 0).Add(time.Hour)}
		parent, cancel := context.WithCancel(context.Background())
		ctx := g.watch(parent, p, "")
		cancel()
		waitDone(t, ctx, "the request ended")
	})
}
