package spop

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// h is hex text in a wire() call; spaces are ignored.
type h string

// wire builds bytes from hex (h), literal text (string) and raw bytes.
func wire(t testing.TB, parts ...any) []byte {
	t.Helper()
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case h:
			x, err := hex.DecodeString(strings.ReplaceAll(string(p), " ", ""))
			if err != nil {
				t.Fatalf("bad hex %q: %v", p, err)
			}
			b = append(b, x...)
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		default:
			t.Fatalf("wire: unexpected %T", p)
		}
	}
	return b
}

// frameCmp compares frames by their exported fields; Value has an Equal
// method, which cmp uses.
var frameCmp = cmp.Options{cmpopts.IgnoreUnexported(Frame{}), cmpopts.EquateEmpty()}

// The frames below were captured from HAProxy 2.6.12 (Debian 12) talking to
// a test agent: ../shared/haproxy-spop.md §2.2.9.

func goldenHealthcheckHello(t testing.TB) []byte {
	return wire(t, h("00 00 00 4e 01 00 00 00 01 00 00"),
		h("12"), "supported-versions", h("08 03"), "2.0",
		h("0e"), "max-frame-size", h("03 fc f0 06"),
		h("0c"), "capabilities", h("08 00"),
		h("0b"), "healthcheck", h("11"))
}

func goldenHello(t testing.TB) []byte {
	return wire(t, h("00 00 00 81 01 00 00 00 01 00 00"),
		h("12"), "supported-versions", h("08 03"), "2.0",
		h("0e"), "max-frame-size", h("03 fc f0 06"),
		h("0c"), "capabilities", h("08 10"), "pipelining,async",
		h("09"), "engine-id", h("08 24"), "bba9ad48-7d73-4852-9f1f-6907150be53b")
}

func goldenAgentHello(t testing.TB) []byte {
	return wire(t, h("00 00 00 40 65 00 00 00 01 00 00"),
		h("07"), "version", h("08 03"), "2.0",
		h("0e"), "max-frame-size", h("03 fc f0 06"),
		h("0c"), "capabilities", h("08 0a"), "pipelining")
}

func goldenNotify(t testing.TB) []byte {
	return wire(t, h("00 00 00 4a 03 00 00 00 01 00 01"),
		h("0a"), "check-auth", h("04"),
		h("06"), "method", h("08 03"), "GET",
		h("04"), "path", h("08 02"), "/a",
		h("03"), "src", h("06 7f 00 00 01"),
		h("05"), "authz", h("08 11"), "Bearer good-token")
}

func goldenAck(t testing.TB) []byte {
	return wire(t, h("00 00 00 44 67 00 00 00 01 00 01"),
		h("01 03 02 02"), "ok", h("11"),
		h("01 03 02 04"), "user", h("08 11"), "alice@example.com",
		h("01 03 02 06"), "groups", h("08 0f"), "analysts,admins")
}

func kv(name string, v Value) KV { return KV{Name: []byte(name), Value: v} }

func arg(name string, v Value) Arg { return Arg{Name: []byte(name), Value: v} }

func TestGoldenDecode(t *testing.T) {
	tests := []struct {
		name string
		in   func(testing.TB) []byte
		want Frame
	}{
		{"healthcheck-hello", goldenHealthcheckHello, Frame{
			Type: FrameHAProxyHello, Flags: FlagFIN,
			KV: []KV{
				kv("supported-versions", StringValue("2.0")),
				kv("max-frame-size", Uint32Value(16380)),
				kv("capabilities", StringValue("")),
				kv("healthcheck", BoolValue(true)),
			},
		}},
		{"hello", goldenHello, Frame{
			Type: FrameHAProxyHello, Flags: FlagFIN,
			KV: []KV{
				kv("supported-versions", StringValue("2.0")),
				kv("max-frame-size", Uint32Value(16380)),
				kv("capabilities", StringValue("pipelining,async")),
				kv("engine-id", StringValue("bba9ad48-7d73-4852-9f1f-6907150be53b")),
			},
		}},
		{"agent-hello", goldenAgentHello, Frame{
			Type: FrameAgentHello, Flags: FlagFIN,
			KV: []KV{
				kv("version", StringValue("2.0")),
				kv("max-frame-size", Uint32Value(16380)),
				kv("capabilities", StringValue("pipelining")),
			},
		}},
		{"notify", goldenNotify, Frame{
			Type: FrameNotify, Flags: FlagFIN, StreamID: 0, FrameID: 1,
			Messages: []Message{{Name: []byte("check-auth"), Args: []Arg{
				arg("method", StringValue("GET")),
				arg("path", StringValue("/a")),
				arg("src", IPValue(netip.MustParseAddr("127.0.0.1"))),
				arg("authz", StringValue("Bearer good-token")),
			}}},
		}},
		{"ack", goldenAck, Frame{
			Type: FrameAck, Flags: FlagFIN, StreamID: 0, FrameID: 1,
			Actions: []Action{
				SetVar(ScopeTxn, "ok", BoolValue(true)),
				SetVar(ScopeTxn, "user", StringValue("alice@example.com")),
				SetVar(ScopeTxn, "groups", StringValue("analysts,admins")),
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in(t)
			var f Frame
			if err := DecodeFrame(in, &f); err != nil {
				t.Fatalf("DecodeFrame: %v", err)
			}
			if diff := cmp.Diff(tt.want, f, frameCmp); diff != "" {
				t.Errorf("decoded frame (-want +got):\n%s", diff)
			}
			// Every captured frame is in canonical form, so it re-encodes
			// to the same bytes, both from the decoded frame and from the
			// frame built by hand.
			for _, src := range []*Frame{&f, &tt.want} {
				out, err := AppendFrame(nil, src)
				if err != nil {
					t.Fatalf("AppendFrame: %v", err)
				}
				if !bytes.Equal(out, in) {
					t.Errorf("AppendFrame:\n got %x\nwant %x", out, in)
				}
			}
		})
	}
}

func TestGoldenNotifyAccessors(t *testing.T) {
	var f Frame
	if err := DecodeFrame(goldenNotify(t), &f); err != nil {
		t.Fatal(err)
	}
	m, ok := f.Message("check-auth")
	if !ok {
		t.Fatal("message check-auth not found")
	}
	if _, ok := f.Message("other"); ok {
		t.Error("found a message that is not there")
	}
	if v, _ := m.Arg("method"); v.Kind() != KindString {
		t.Errorf("method kind = %v", v.Kind())
	}
	if s, ok := mustArg(t, m, "authz").Text(); !ok || s != "Bearer good-token" {
		t.Errorf("authz = %q, %v", s, ok)
	}
	if a, ok := mustArg(t, m, "src").Addr(); !ok || a != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("src = %v, %v", a, ok)
	}
	if _, ok := m.Arg("session"); ok {
		t.Error("found an argument that is not there")
	}
}

func mustArg(t *testing.T, m *Message, name string) Value {
	t.Helper()
	v, ok := m.Arg(name)
	if !ok {
		t.Fatalf("argument %q not found", name)
	}
	return v
}

// TestGoldenAckFromHelpers builds the captured ACK the way the agent will:
// Ack echoes the NOTIFY's IDs, including HAProxy 2.6's stream-id 0.
func TestGoldenAckFromHelpers(t *testing.T) {
	var n Frame
	if err := DecodeFrame(goldenNotify(t), &n); err != nil {
		t.Fatal(err)
	}
	ack := Ack(n.StreamID, n.FrameID, []Action{
		SetVar(ScopeTxn, "ok", BoolValue(true)),
		SetVar(ScopeTxn, "user", StringValue("alice@example.com")),
		SetVar(ScopeTxn, "groups", BytesValue([]byte("analysts,admins"))),
	})
	out, err := AppendFrame(nil, &ack)
	if err != nil {
		t.Fatal(err)
	}
	if want := goldenAck(t); !bytes.Equal(out, want) {
		t.Errorf("ACK:\n got %x\nwant %x", out, want)
	}
}

// TestGoldenNegotiate answers the captured HELLOs and compares the reply
// with the AGENT-HELLO HAProxy 2.6.12 accepted.
func TestGoldenNegotiate(t *testing.T) {
	var f Frame
	if err := DecodeFrame(goldenHello(t), &f); err != nil {
		t.Fatal(err)
	}
	hs, reply, err := Negotiate(&f, DefaultMaxFrameSize)
	if err != nil {
		t.Fatalf("Negotiate: %v", err)
	}
	want := Handshake{
		Hello: Hello{
			Versions:     []string{"2.0"},
			MaxFrameSize: 16380,
			Capabilities: []string{"pipelining", "async"},
			EngineID:     "bba9ad48-7d73-4852-9f1f-6907150be53b",
		},
		MaxFrameSize: 16380,
		Pipelining:   true,
	}
	if diff := cmp.Diff(want, hs); diff != "" {
		t.Errorf("handshake (-want +got):\n%s", diff)
	}
	out, err := AppendFrame(nil, &reply)
	if err != nil {
		t.Fatal(err)
	}
	if w := goldenAgentHello(t); !bytes.Equal(out, w) {
		t.Errorf("AGENT-HELLO:\n got %x\nwant %x", out, w)
	}

	if err := DecodeFrame(goldenHealthcheckHello(t), &f); err != nil {
		t.Fatal(err)
	}
	hs, reply, err = Negotiate(&f, DefaultMaxFrameSize)
	if err != nil {
		t.Fatalf("Negotiate health check: %v", err)
	}
	if !hs.Healthcheck || hs.Pipelining || hs.Capabilities != nil {
		t.Errorf("health check handshake = %+v", hs)
	}
	if v, _ := reply.Lookup("capabilities"); !v.Equal(StringValue("")) {
		t.Errorf("health check reply capabilities = %v, want empty (HAProxy offered none)", v)
	}
}
