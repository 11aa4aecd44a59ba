package spop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func helloFrame(kvs ...KV) Frame {
	return Frame{Type: FrameHAProxyHello, Flags: FlagFIN, KV: kvs}
}

func TestNegotiate(t *testing.T) {
	versions := kv("supported-versions", StringValue("2.0"))
	size := kv("max-frame-size", Uint32Value(16380))
	caps := kv("capabilities", StringValue("pipelining,async"))
	tests := []struct {
		name     string
		f        Frame
		ours     uint32
		wantSize uint32
		wantPipe bool
		wantCaps string
		wantErr  error
	}{
		{"2.6", helloFrame(versions, size, caps), DefaultMaxFrameSize, 16380, true, "pipelining", nil},
		{"3.1-healthcheck", helloFrame(versions, size, kv("capabilities", StringValue("pipelining")), kv("healthcheck", BoolValue(true))),
			DefaultMaxFrameSize, 16380, true, "pipelining", nil},
		{"spaces-and-versions", helloFrame(kv("supported-versions", StringValue(" 1.0 , 2.1 ")), size, kv("capabilities", StringValue(" async , pipelining "))),
			DefaultMaxFrameSize, 16380, true, "pipelining", nil},
		{"no-pipelining", helloFrame(versions, size, kv("capabilities", StringValue("async"))), DefaultMaxFrameSize, 16380, false, "", nil},
		{"ours-smaller", helloFrame(versions, size, caps), 1024, 1024, true, "pipelining", nil},
		{"ours-below-min", helloFrame(versions, size, caps), 10, MinFrameSize, true, "pipelining", nil},
		{"theirs-smaller", helloFrame(versions, kv("max-frame-size", Uint32Value(300)), caps), DefaultMaxFrameSize, 300, true, "pipelining", nil},
		{"size-any-int", helloFrame(versions, kv("max-frame-size", Int64Value(4096)), caps), DefaultMaxFrameSize, 4096, true, "pipelining", nil},
		{"unknown-keys-skipped", helloFrame(kv("x", BinaryValue([]byte{1})), versions, size, caps, kv("engine-id", Int32Value(1))),
			DefaultMaxFrameSize, 16380, true, "pipelining", nil},

		{"not-hello", Frame{Type: FrameNotify, Flags: FlagFIN}, DefaultMaxFrameSize, 0, false, "", ErrUnexpectedFrame},
		{"no-version", helloFrame(size, caps), DefaultMaxFrameSize, 0, false, "", ErrNoVersion},
		{"version-not-string", helloFrame(kv("supported-versions", BinaryValue([]byte("2.0"))), size, caps), DefaultMaxFrameSize, 0, false, "", ErrNoVersion},
		{"version-1", helloFrame(kv("supported-versions", StringValue("1.0")), size, caps), DefaultMaxFrameSize, 0, false, "", ErrBadVersion},
		{"version-3", helloFrame(kv("supported-versions", StringValue("3.0,20.0")), size, caps), DefaultMaxFrameSize, 0, false, "", ErrBadVersion},
		{"version-empty", helloFrame(kv("supported-versions", StringValue("")), size, caps), DefaultMaxFrameSize, 0, false, "", ErrBadVersion},
		{"no-size", helloFrame(versions, caps), DefaultMaxFrameSize, 0, false, "", ErrNoMaxFrameSize},
		{"size-string", helloFrame(versions, kv("max-frame-size", StringValue("16380")), caps), DefaultMaxFrameSize, 0, false, "", ErrNoMaxFrameSize},
		{"size-255", helloFrame(versions, kv("max-frame-size", Uint32Value(255)), caps), DefaultMaxFrameSize, 0, false, "", ErrBadMaxFrameSize},
		{"size-negative", helloFrame(versions, kv("max-frame-size", Int32Value(-1)), caps), DefaultMaxFrameSize, 0, false, "", ErrBadMaxFrameSize},
		{"size-2^32", helloFrame(versions, kv("max-frame-size", Uint64Value(1<<32)), caps), DefaultMaxFrameSize, 0, false, "", ErrBadMaxFrameSize},
		{"no-caps", helloFrame(versions, size), DefaultMaxFrameSize, 0, false, "", ErrNoCapabilities},
		{"caps-null", helloFrame(versions, size, kv("capabilities", NullValue())), DefaultMaxFrameSize, 0, false, "", ErrNoCapabilities},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, reply, err := Negotiate(&tt.f, tt.ours)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Negotiate error = %v, want %v", err, tt.wantErr)
			}
			// The reply must survive the wire.
			b, aerr := AppendFrame(nil, &reply)
			if aerr != nil {
				t.Fatal(aerr)
			}
			var got Frame
			if err := DecodeFrame(b, &got); err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != nil {
				var want *Error
				errors.As(tt.wantErr, &want)
				d, err := ParseDisconnect(&got)
				if got.Type != FrameAgentDisconnect || err != nil || d.Status != want.Status || d.Message != want.msg {
					t.Errorf("reply = %v %+v %v, want AGENT-DISCONNECT %d %q", got.Type, d, err, want.Status, want.msg)
				}
				return
			}
			want := AgentHello(tt.wantSize, tt.wantCaps)
			if diff := cmp.Diff(&want, &got, frameCmp); diff != "" {
				t.Errorf("AGENT-HELLO (-want +got):\n%s", diff)
			}
			if hs.MaxFrameSize != tt.wantSize || hs.Pipelining != tt.wantPipe {
				t.Errorf("handshake = %+v", hs)
			}
		})
	}
}

func TestParseHelloHealthcheck(t *testing.T) {
	f := helloFrame(kv("supported-versions", StringValue("2.0")), kv("max-frame-size", Uint32Value(16380)),
		kv("capabilities", StringValue("")), kv("healthcheck", BoolValue(false)))
	h, err := ParseHello(&f)
	if err != nil || h.Healthcheck {
		t.Errorf("healthcheck false: %+v %v", h, err)
	}
	f.KV[3] = kv("healthcheck", StringValue("true")) // wrong type: not a health check
	if h, err = ParseHello(&f); err != nil || h.Healthcheck {
		t.Errorf("healthcheck STRING: %+v %v", h, err)
	}
}

func TestParseDisconnect(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		want Disconnect
		err  error
	}{
		{"normal", Frame{Type: FrameHAProxyDisconnect, KV: []KV{kv("status-code", Uint32Value(0)), kv("message", StringValue("normal"))}},
			Disconnect{StatusNormal, "normal"}, nil},
		{"timeout-int64", Frame{Type: FrameHAProxyDisconnect, KV: []KV{kv("status-code", Int64Value(2))}},
			Disconnect{StatusTimeout, ""}, nil},
		{"empty", Frame{Type: FrameHAProxyDisconnect}, Disconnect{StatusUnknown, ""}, nil},
		{"bad-status", Frame{Type: FrameHAProxyDisconnect, KV: []KV{kv("status-code", Int64Value(-1))}},
			Disconnect{StatusUnknown, ""}, nil},
		{"agent", AgentDisconnect(StatusFrameTooBig, "frame is too big"), Disconnect{StatusFrameTooBig, "frame is too big"}, nil},
		{"not-disconnect", Ack(1, 1, nil), Disconnect{StatusUnknown, ""}, ErrUnexpectedFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDisconnect(&tt.f)
			if !errors.Is(err, tt.err) || d != tt.want {
				t.Errorf("ParseDisconnect = %+v, %v; want %+v, %v", d, err, tt.want, tt.err)
			}
		})
	}
}

func TestAgentDisconnectGolden(t *testing.T) {
	f := AgentDisconnect(StatusBadVersion, "unsupported version")
	b, err := AppendFrame(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	want := wire(t, h("00 00 00 32 66 00 00 00 01 00 00"),
		h("0b"), "status-code", h("03 08"),
		h("07"), "message", h("08 13"), "unsupported version")
	if string(b) != string(want) {
		t.Errorf("got %x\nwant %x", b, want)
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want Status
	}{
		{nil, StatusNormal},
		{io.EOF, StatusNormal},
		{fmt.Errorf("x: %w", ErrFrameTooBig), StatusFrameTooBig},
		{fmt.Errorf("x: %w", ErrFragmented), StatusFragmentation},
		{fmt.Errorf("x: %w", ErrBadVersion), StatusBadVersion},
		{fmt.Errorf("x: %w", ErrTruncated), StatusInvalidFrame},
		{os.ErrDeadlineExceeded, StatusTimeout},
		{timeoutError{}, StatusTimeout},
		{io.ErrUnexpectedEOF, StatusIO},
		{context.Canceled, StatusUnknown},
	}
	for _, tt := range tests {
		if got := StatusOf(tt.err); got != tt.want {
			t.Errorf("StatusOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
