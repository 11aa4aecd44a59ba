package haproxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/haproxy"
	"github.com/gatehouse-proxy/gatehouse/internal/spop"
)

// These tests cover the agent's protocol handling; the verdicts themselves
// (sessions, policy, audit) are tested with a whole gatehouse in
// internal/app (spoe_test.go, haproxy_e2e_test.go).

const ioTimeout = 5 * time.Second

// startAgent runs an agent with no routes (every verdict is 404 no-route)
// on 127.0.0.1, trusting peers as trusted says.
func startAgent(t *testing.T, trusted bool, tweak func(*haproxy.AgentOptions)) (*haproxy.Agent, string) {
	t.Helper()
	al, err := audit.New(audit.Options{Output: "stdout", Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	opts := haproxy.AgentOptions{
		Route:   func(host, path string) *auth.Route { return nil },
		Trusted: func(netip.Addr) bool { return trusted },
		Audit:   al,
	}
	if tweak != nil {
		tweak(&opts)
	}
	a, err := haproxy.NewAgent(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		a.Shutdown(ctx)
		select {
		case err := <-served:
			if !errors.Is(err, haproxy.ErrAgentClosed) {
				t.Errorf("Serve returned %v, want ErrAgentClosed", err)
			}
		case <-time.After(ioTimeout):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return a, ln.Addr().String()
}

type client struct {
	t *testing.T
	c net.Conn
	r *spop.Reader
	w *spop.Writer
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t, c, spop.NewReader(c, 1<<20), spop.NewWriter(c, 1<<20)}
}

func (c *client) send(f spop.Frame) {
	c.t.Helper()
	if err := c.w.WriteFrame(&f); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next frame, or an error when the connection ends.
func (c *client) read() (*spop.Frame, error) {
	var f spop.Frame
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	if err := c.r.ReadFrame(&f); err != nil {
		return nil, err
	}
	return f.Clone()
}

func hello(caps string) spop.Frame {
	return spop.Frame{Type: spop.FrameHAProxyHello, Flags: spop.FlagFIN, KV: []spop.KV{
		{Name: []byte("supported-versions"), Value: spop.StringValue("2.0")},
		{Name: []byte("max-frame-size"), Value: spop.Uint32Value(spop.DefaultMaxFrameSize)},
		{Name: []byte("capabilities"), Value: spop.StringValue(caps)},
	}}
}

func notify(sid, fid uint64, path string) spop.Frame {
	return spop.Frame{Type: spop.FrameNotify, Flags: spop.FlagFIN, StreamID: sid, FrameID: fid,
		Messages: []spop.Message{{Name: []byte(haproxy.MessageName), Args: []spop.Arg{
			{Name: []byte("method"), Value: spop.StringValue("GET")},
			{Name: []byte("host"), Value: spop.StringValue("app.test")},
			{Name: []byte("path"), Value: spop.StringValue(path)},
			{Name: []byte("src"), Value: spop.IPValue(netip.MustParseAddr("192.0.2.1"))},
		}}}}
}

func status(t *testing.T, f *spop.Frame) int64 {
	t.Helper()
	for _, a := range f.Actions {
		if a.Name == haproxy.VarStatus {
			n, _ := a.Value.Int64()
			return n
		}
	}
	return 0
}

func TestAgentRefusesUntrustedPeer(t *testing.T) {
	_, addr := startAgent(t, false, nil)
	c := dial(t, addr)
	c.send(hello("pipelining"))
	f, err := c.read()
	if err == nil {
		t.Fatalf("untrusted peer got %s, want the connection closed", f.Type)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("untrusted connection stayed open (read %v), want it closed", err)
	}
}

func TestAgentAnswersWithoutPipelining(t *testing.T) {
	_, addr := startAgent(t, true, nil)
	c := dial(t, addr)
	c.send(hello(""))
	if f, err := c.read(); err != nil || f.Type != spop.FrameAgentHello {
		t.Fatalf("HELLO: %v %v", f, err)
	}
	for i := range uint64(3) {
		c.send(notify(i, 1, "/x"))
		f, err := c.read()
		if err != nil || f.Type != spop.FrameAck || f.StreamID != i || f.FrameID != 1 {
			t.Fatalf("NOTIFY %d: %v %v", i, f, err)
		}
		if s := status(t, f); s != 404 {
			t.Errorf("no route: status %d, want 404", s)
		}
	}
}

// TestAgentRefusesFrameLargerThanNegotiated: a peer announcing a huge
// frame is cut off before the agent reads (or allocates) it.
func TestAgentRefusesFrameLargerThanNegotiated(t *testing.T) {
	_, addr := startAgent(t, true, nil)
	c := dial(t, addr)
	c.send(hello("pipelining"))
	if _, err := c.read(); err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 1<<30)
	c.c.Write(b[:])
	f, err := c.read()
	if err != nil || f.Type != spop.FrameAgentDisconnect {
		t.Fatalf("got %v %v, want AGENT-DISCONNECT", f, err)
	}
	if v, _ := f.Lookup("status-code"); func() uint64 { n, _ := v.Uint64(); return n }() != uint64(spop.StatusFrameTooBig) {
		t.Errorf("status-code %v, want %d", v, spop.StatusFrameTooBig)
	}
}

// TestAgentShutdownSaysGoodbyeAndStopsAccepting: Shutdown sends
// AGENT-DISCONNECT on an open connection and closes the listener. (These
// agents decide every verdict on the reader; draining verdicts still in
// flight is TestSPOEShutdownDrainsVerdictsInFlight in internal/app.)
func TestAgentShutdownSaysGoodbyeAndStopsAccepting(t *testing.T) {
	a, addr := startAgent(t, true, nil)
	c := dial(t, addr)
	c.send(hello("pipelining"))
	if _, err := c.read(); err != nil {
		t.Fatal(err)
	}
	c.send(notify(1, 1, "/x"))
	if f, err := c.read(); err != nil || f.Type != spop.FrameAck {
		t.Fatalf("%v %v", f, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := c.read()
	if err != nil || f.Type != spop.FrameAgentDisconnect {
		t.Fatalf("after Shutdown: %v %v, want AGENT-DISCONNECT", f, err)
	}
	if _, err := net.DialTimeout("tcp", addr, ioTimeout); err == nil {
		t.Error("agent still accepts after Shutdown")
	}
}

// TestAgentAnswersEveryPipelinedNotifyOnce: NOTIFYs written back to back
// each get exactly one ACK with their own IDs. Here all are decided on the
// reader and batched; verdicts that wait (answered from goroutines, in any
// order) are TestSPOESlowVerdictDoesNotHoldUpOthers in internal/app.
func TestAgentAnswersEveryPipelinedNotifyOnce(t *testing.T) {
	_, addr := startAgent(t, true, nil)
	c := dial(t, addr)
	c.send(hello("pipelining"))
	if _, err := c.read(); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range uint64(n) {
		c.send(notify(2*i+1, 1, "/x"))
	}
	seen := map[uint64]bool{}
	for range n {
		f, err := c.read()
		if err != nil || f.Type != spop.FrameAck || seen[f.StreamID] || f.StreamID%2 != 1 || f.StreamID >= 2*n {
			t.Fatalf("%v %v", f, err)
		}
		seen[f.StreamID] = true
	}
}
