package metabase

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/metabase/metabasetest"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
)

const (
	testJWTSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testAdminKey  = "mb_gatehouseAdminKey0000000000000000000000="
	testReaderKey = "mb_readerKey000000000000000000000000000000="
	testBrokerKey = "broker-key-0123456789-0123456789-0123456789"
)

// fakeClock is the injected clock, shared by the server and the client.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// jwtEnv is an Enterprise Metabase with JWT SSO and group sync by name.
func jwtEnv(t *testing.T, mod func(*metabasetest.Options)) (*metabasetest.Server, *Client, *fakeClock) {
	t.Helper()
	clock := newClock()
	opts := metabasetest.Options{Edition: metabasetest.Enterprise, JWTEnabled: true, JWTSharedSecret: testJWTSecret,
		JWTGroupSync: true, Now: clock.Now,
		APIKeys: []metabasetest.APIKey{{Name: "gatehouse", Key: testAdminKey, GroupID: metabasetest.AdministratorsGroupID}}}
	if mod != nil {
		mod(&opts)
	}
	s := metabasetest.New(t, opts)
	return s, newClient(t, s, clock, testAdminKey), clock
}

// ossEnv is a free Metabase with an admin API key and a reader key.
func ossEnv(t *testing.T) (*metabasetest.Server, *Client, *fakeClock) {
	t.Helper()
	clock := newClock()
	s := metabasetest.New(t, metabasetest.Options{Now: clock.Now, APIKeys: []metabasetest.APIKey{
		{Name: "gatehouse", Key: testAdminKey, GroupID: metabasetest.AdministratorsGroupID},
		{Name: "reader", Key: testReaderKey, GroupID: metabasetest.AllUsersGroupID},
	}})
	return s, newClient(t, s, clock, testAdminKey), clock
}

func newClient(t *testing.T, s *metabasetest.Server, clock *fakeClock, apiKey string) *Client {
	t.Helper()
	c, err := New(Options{BaseURL: s.URL, APIKey: secret.NewValue([]byte(apiKey)), Now: clock.Now,
		HTTPClient: nil})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// logBuffer is a slog logger writing to a buffer, for secret checks.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newBroker(t *testing.T, c *Client, mod func(*BrokerOptions)) (*Broker, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	opts := BrokerOptions{Client: c, BrokerKey: secret.NewValue([]byte(testBrokerKey)),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&opts)
	}
	b, err := NewBroker(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b, logs
}

func key(s Session) string { return string(s.Key.Reveal()) }
