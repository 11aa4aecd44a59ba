package spop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

func TestReaderReadsPipelinedFrames(t *testing.T) {
	var in []byte
	in = append(in, goldenHello(t)...)
	for i := range uint64(50) {
		f := Frame{Type: FrameNotify, StreamID: i, FrameID: i + 1, Messages: []Message{
			{Name: []byte("check-auth"), Args: []Arg{arg("i", Uint64Value(i))}},
		}}
		var err error
		if in, err = AppendFrame(in, &f); err != nil {
			t.Fatal(err)
		}
	}
	in = append(in, wire(t, h("00 00 00 07 02 00 00 00 01 00 00"))...) // HAPROXY-DISCONNECT, no KV
	for name, src := range map[string]io.Reader{
		"whole":    bytes.NewReader(in),
		"one-byte": iotest.OneByteReader(bytes.NewReader(in)),
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src, DefaultMaxFrameSize)
			var f Frame
			if err := r.ReadFrame(&f); err != nil || f.Type != FrameHAProxyHello {
				t.Fatalf("first frame: %v %v", f.Type, err)
			}
			for i := range uint64(50) {
				if err := r.ReadFrame(&f); err != nil {
					t.Fatalf("NOTIFY %d: %v", i, err)
				}
				v, _ := f.Messages[0].Arg("i")
				if n, _ := v.Uint64(); f.StreamID != i || f.FrameID != i+1 || n != i {
					t.Fatalf("NOTIFY %d: stream %d frame %d arg %v", i, f.StreamID, f.FrameID, v)
				}
			}
			if err := r.ReadFrame(&f); err != nil || f.Type != FrameHAProxyDisconnect {
				t.Fatalf("last frame: %v %v", f.Type, err)
			}
			if err := r.ReadFrame(&f); err != io.EOF { //nolint:errorlint // ReadFrame returns io.EOF itself, as io.Reader does
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderRefusesOversizedFrames(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		max    int
		status Status
		want   error
	}{
		{"one-over", wire(t, h("00 00 40 00")), DefaultMaxFrameSize, StatusFrameTooBig, ErrFrameTooBig},
		{"2^32-1", wire(t, h("ff ff ff ff 03 00 00 00 01")), DefaultMaxFrameSize, StatusFrameTooBig, ErrFrameTooBig},
		{"over-min", wire(t, h("00 00 01 01")), 1, StatusFrameTooBig, ErrFrameTooBig},
		{"under-header", wire(t, h("00 00 00 06 03 00 00 00 01 00")), DefaultMaxFrameSize, StatusInvalidFrame, ErrTruncated},
		{"claims-max-sends-little", wire(t, h("00 00 3f fc 03 00 00 00 01 00 01")), DefaultMaxFrameSize, StatusInvalidFrame, ErrTruncated},
		{"cut-in-length", wire(t, h("00 00")), DefaultMaxFrameSize, StatusInvalidFrame, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.in), tt.max)
			var f Frame
			err := r.ReadFrame(&f)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadFrame = %v, want %v", err, tt.want)
			}
			if s := StatusOf(err); s != tt.status {
				t.Errorf("StatusOf = %v, want %v", s, tt.status)
			}
			// Whatever the peer claims, the buffer never outgrows the limit.
			if c := cap(r.buf); c > max(tt.max, MinFrameSize) {
				t.Errorf("buffer grew to %d bytes, limit %d", c, tt.max)
			}
		})
	}
}

func TestReaderTruncatedMidFrame(t *testing.T) {
	in := goldenNotify(t)
	r := NewReader(bytes.NewReader(in[:len(in)-3]), DefaultMaxFrameSize)
	var f Frame
	err := r.ReadFrame(&f)
	if !errors.Is(err, ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadFrame = %v, want ErrTruncated and io.ErrUnexpectedEOF", err)
	}
}

func TestReaderSetMaxFrameSize(t *testing.T) {
	in := goldenHello(t) // 129 bytes, below MinFrameSize
	f := Frame{Type: FrameNotify, Messages: []Message{{Name: make([]byte, 300)}}}
	in, _ = AppendFrame(in, &f)
	r := NewReader(bytes.NewReader(in), DefaultMaxFrameSize)
	if err := r.ReadFrame(&f); err != nil {
		t.Fatal(err)
	}
	r.SetMaxFrameSize(MinFrameSize)
	if err := r.ReadFrame(&f); !errors.Is(err, ErrFrameTooBig) {
		t.Errorf("ReadFrame = %v, want ErrFrameTooBig", err)
	}
}

// countingWriter records each Write call.
type countingWriter struct {
	mu     sync.Mutex
	writes [][]byte
	err    error
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func TestWriterWritesOneFramePerWrite(t *testing.T) {
	var cw countingWriter
	w := NewWriter(&cw, DefaultMaxFrameSize)
	ack := Ack(0, 1, []Action{
		SetVar(ScopeTxn, "ok", BoolValue(true)),
		SetVar(ScopeTxn, "user", StringValue("alice@example.com")),
		SetVar(ScopeTxn, "groups", StringValue("analysts,admins")),
	})
	if err := w.WriteFrame(&ack); err != nil {
		t.Fatal(err)
	}
	if len(cw.writes) != 1 || !bytes.Equal(cw.writes[0], goldenAck(t)) {
		t.Errorf("writes = %x", cw.writes)
	}
	w = NewWriter(io.Discard, DefaultMaxFrameSize)
	if n := testing.AllocsPerRun(100, func() { _ = w.WriteFrame(&ack) }); n != 0 {
		t.Errorf("WriteFrame allocates %v times, want 0", n)
	}
}

func TestWriterRefusesOversizedFrame(t *testing.T) {
	var cw countingWriter
	w := NewWriter(&cw, 0) // means MinFrameSize
	ok := Ack(1, 1, []Action{SetVar(ScopeTxn, "x", BinaryValue(make([]byte, MinFrameSize-7-5-1-2)))})
	if err := w.WriteFrame(&ok); err != nil {
		t.Fatalf("frame of exactly MinFrameSize: %v", err)
	}
	big := Ack(1, 1, []Action{SetVar(ScopeTxn, "x", BinaryValue(make([]byte, MinFrameSize)))})
	if err := w.WriteFrame(&big); !errors.Is(err, ErrFrameTooBig) {
		t.Errorf("WriteFrame = %v, want ErrFrameTooBig", err)
	}
	if len(cw.writes) != 1 {
		t.Errorf("%d writes, want 1", len(cw.writes))
	}
	w.SetMaxFrameSize(DefaultMaxFrameSize)
	if err := w.WriteFrame(&big); err != nil {
		t.Errorf("after SetMaxFrameSize: %v", err)
	}
	invalid := Frame{Type: 7}
	if err := w.WriteFrame(&invalid); !errors.Is(err, ErrFrameType) {
		t.Errorf("invalid frame: %v", err)
	}
}

func TestWriterErrorIsSticky(t *testing.T) {
	cw := countingWriter{err: errors.New("broken pipe")}
	w := NewWriter(&cw, DefaultMaxFrameSize)
	ack := Ack(1, 1, nil)
	if err := w.WriteFrame(&ack); err == nil {
		t.Fatal("WriteFrame succeeded on a broken writer")
	}
	cw.err = nil
	if err := w.WriteFrame(&ack); err == nil {
		t.Error("WriteFrame succeeded after an earlier failure")
	}
	if len(cw.writes) != 0 {
		t.Errorf("%d writes after failure", len(cw.writes))
	}
}

// TestConcurrentAcksDoNotInterleave writes ACKs from many goroutines, as
// pipelined handlers will, and reads them all back whole.
func TestConcurrentAcksDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, DefaultMaxFrameSize)
	var wg sync.WaitGroup
	for i := range uint64(64) {
		wg.Go(func() {
			f := Ack(2*i+1, 1, []Action{SetVar(ScopeTxn, "user", StringValue(fmt.Sprintf("user-%d", i)))})
			if err := w.WriteFrame(&f); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	r := NewReader(&buf, DefaultMaxFrameSize)
	seen := map[uint64]bool{}
	var f Frame
	for {
		err := r.ReadFrame(&f)
		if err == io.EOF { //nolint:errorlint // ReadFrame returns io.EOF itself
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		i := (f.StreamID - 1) / 2
		if v := f.Actions[0].Value; !v.Equal(StringValue(fmt.Sprintf("user-%d", i))) {
			t.Errorf("stream %d carries %v", f.StreamID, v)
		}
		seen[f.StreamID] = true
	}
	if len(seen) != 64 {
		t.Errorf("read %d ACKs, want 64", len(seen))
	}
}

// TestExchangeOverPipe plays both sides of a connection: HAProxy's HELLO
// and pipelined NOTIFYs, and an agent loop on this package's API.
func TestExchangeOverPipe(t *testing.T) {
	haproxy, agent := net.Pipe()
	defer haproxy.Close()
	done := make(chan error, 1)
	go func() {
		defer agent.Close()
		r, w := NewReader(agent, DefaultMaxFrameSize), NewWriter(agent, DefaultMaxFrameSize)
		var f Frame
		if err := r.ReadFrame(&f); err != nil {
			done <- err
			return
		}
		hs, reply, err := Negotiate(&f, 8192)
		if werr := w.WriteFrame(&reply); err != nil || werr != nil {
			done <- errors.Join(err, werr)
			return
		}
		r.SetMaxFrameSize(int(hs.MaxFrameSize))
		w.SetMaxFrameSize(int(hs.MaxFrameSize))
		for {
			if err := r.ReadFrame(&f); err != nil {
				done <- err
				return
			}
			switch f.Type {
			case FrameNotify:
				m, _ := f.Message("check-auth")
				v, _ := m.Arg("authz")
				ok := v.Equal(StringValue("Bearer good-token"))
				ack := Ack(f.StreamID, f.FrameID, []Action{SetVar(ScopeTxn, "ok", BoolValue(ok))})
				if err := w.WriteFrame(&ack); err != nil {
					done <- err
					return
				}
			case FrameHAProxyDisconnect:
				bye := AgentDisconnect(StatusNormal, "normal")
				done <- w.WriteFrame(&bye)
				return
			}
		}
	}()

	hw, hr := NewWriter(haproxy, DefaultMaxFrameSize), NewReader(haproxy, DefaultMaxFrameSize)
	go func() {
		// HAProxy's side writes everything up front: pipelining.
		if _, err := haproxy.Write(goldenHello(t)); err != nil {
			return
		}
		for i, tok := range []string{"Bearer good-token", "Bearer bad"} {
			n := Frame{Type: FrameNotify, StreamID: uint64(2*i + 1), FrameID: 1, Messages: []Message{
				{Name: []byte("check-auth"), Args: []Arg{arg("authz", StringValue(tok))}},
			}}
			if hw.WriteFrame(&n) != nil {
				return
			}
		}
		d := Frame{Type: FrameHAProxyDisconnect, KV: []KV{kv("status-code", Uint32Value(0)), kv("message", StringValue("normal"))}}
		_ = hw.WriteFrame(&d)
	}()

	var got []string
	var f Frame
	for f.Type != FrameAgentDisconnect {
		if err := hr.ReadFrame(&f); err != nil {
			t.Fatalf("HAProxy side: %v", err)
		}
		switch f.Type {
		case FrameAgentHello:
			v, _ := f.Lookup("max-frame-size")
			got = append(got, fmt.Sprintf("hello %v", v))
		case FrameAck:
			got = append(got, fmt.Sprintf("ack %d/%d %v %v", f.StreamID, f.FrameID, f.Actions[0].Scope, f.Actions[0].Value))
		case FrameAgentDisconnect:
			d, _ := ParseDisconnect(&f)
			got = append(got, fmt.Sprintf("disconnect %d %s", d.Status, d.Message))
		}
	}
	if err := <-done; err != nil {
		t.Errorf("agent side: %v", err)
	}
	want := []string{"hello UINT32 8192", "ack 1/1 txn BOOL true", "ack 3/1 txn BOOL false", "disconnect 0 normal"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exchange (-want +got):\n%s", diff)
	}
}
