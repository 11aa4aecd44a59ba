package spop

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// edgeValues has every kind, with its edge values.
func edgeValues() []Value {
	vs := []Value{
		NullValue(),
		BoolValue(true), BoolValue(false),
		Int32Value(0), Int32Value(-1), Int32Value(math.MinInt32), Int32Value(math.MaxInt32),
		Uint32Value(0), Uint32Value(239), Uint32Value(240), Uint32Value(math.MaxUint32),
		Int64Value(0), Int64Value(-1), Int64Value(math.MinInt64), Int64Value(math.MaxInt64),
		Uint64Value(0), Uint64Value(math.MaxUint64),
		IPValue(netip.MustParseAddr("0.0.0.0")), IPValue(netip.MustParseAddr("255.255.255.255")),
		IPValue(netip.MustParseAddr("::")), IPValue(netip.MustParseAddr("2001:db8::1")),
		IPValue(netip.MustParseAddr("::ffff:10.0.0.1")),
		StringValue(""), StringValue("é\x00\r\n"), BytesValue([]byte("x")),
		StringValue(strings.Repeat("s", 239)), StringValue(strings.Repeat("s", 240)),
		StringValue(strings.Repeat("s", 2288)),
		BinaryValue(nil), BinaryValue([]byte{0, 0xFF}), BinaryValue(bytes.Repeat([]byte{0xF0}, 300)),
	}
	for _, v := range varintBoundaries() {
		vs = append(vs, Uint64Value(v), Int64Value(int64(v))) //nolint:gosec // bit patterns
	}
	return vs
}

func roundTrip(t *testing.T, f *Frame) *Frame {
	t.Helper()
	b, err := AppendFrame(nil, f)
	if err != nil {
		t.Fatalf("AppendFrame: %v", err)
	}
	var g Frame
	if err := DecodeFrame(b, &g); err != nil {
		t.Fatalf("DecodeFrame(%x): %v", b, err)
	}
	want := *f
	want.Flags |= FlagFIN
	if diff := cmp.Diff(&want, &g, frameCmp); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	b2, err := AppendFrame(nil, &g)
	if err != nil || !bytes.Equal(b, b2) {
		t.Errorf("re-encoding differs: %v\n%x\n%x", err, b, b2)
	}
	return &g
}

func TestRoundTripValues(t *testing.T) {
	for _, v := range edgeValues() {
		t.Run(v.Kind().String(), func(t *testing.T) {
			roundTrip(t, &Frame{Type: FrameNotify, StreamID: 1, FrameID: 1, Messages: []Message{
				{Name: []byte("m"), Args: []Arg{arg("a", v), arg("", v)}},
			}})
			roundTrip(t, &Frame{Type: FrameAck, StreamID: 1, FrameID: 1, Actions: []Action{
				SetVar(ScopeTxn, "v", v), UnsetVar(ScopeReq, "u"),
			}})
			roundTrip(t, &Frame{Type: FrameHAProxyHello, KV: []KV{kv("k", v)}})
		})
	}
}

func TestRoundTripFrames(t *testing.T) {
	many := make([]Arg, MaxArgs)
	for i := range many {
		many[i] = arg("", NullValue())
	}
	tests := []struct {
		name string
		f    Frame
	}{
		{"empty-ack", Ack(0, 0, nil)},
		{"ack-all-scopes", Ack(math.MaxUint64, math.MaxUint64, []Action{
			SetVar(ScopeProc, "a", Int64Value(1)), SetVar(ScopeSess, "b", Int64Value(2)),
			SetVar(ScopeTxn, "c", NullValue()), UnsetVar(ScopeReq, "d"), UnsetVar(ScopeRes, ""),
		})},
		{"empty-notify", Frame{Type: FrameNotify, StreamID: 240, FrameID: 2288}},
		{"notify-no-args", Frame{Type: FrameNotify, Messages: []Message{{Name: []byte("a")}, {Name: []byte("")}}}},
		{"notify-max-args", Frame{Type: FrameNotify, Messages: []Message{{Name: []byte("m"), Args: many}}}},
		{"notify-several", Frame{Type: FrameNotify, StreamID: 3, FrameID: 1, Messages: []Message{
			{Name: []byte("one"), Args: []Arg{arg("x", StringValue("1"))}},
			{Name: []byte("two"), Args: []Arg{arg("y", BoolValue(false)), arg("z", Uint32Value(7))}},
		}}},
		{"agent-disconnect", AgentDisconnect(StatusBadVersion, "unsupported version")},
		{"haproxy-disconnect", Frame{Type: FrameHAProxyDisconnect, KV: []KV{
			kv("status-code", Uint32Value(0)), kv("message", StringValue("")),
		}}},
		{"agent-hello", AgentHello(MinFrameSize, "")},
		{"reserved-flags-kept", Frame{Type: FrameAck, Flags: FlagFIN | FlagAbort | 1<<31}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { roundTrip(t, &tt.f) })
	}
}

func TestAppendFrameSetsFIN(t *testing.T) {
	b, err := AppendFrame(nil, &Frame{Type: FrameAck})
	if err != nil {
		t.Fatal(err)
	}
	if want := wire(t, h("00 00 00 07 67 00 00 00 01 00 00")); !bytes.Equal(b, want) {
		t.Errorf("got %x, want %x", b, want)
	}
}

func TestAppendFrameInvalid(t *testing.T) {
	tooMany := make([]Arg, MaxArgs+1)
	tests := []struct {
		name string
		f    Frame
	}{
		{"frame-type-0", Frame{Type: 0}},
		{"frame-type-4", Frame{Type: 4}},
		{"action-type", Ack(1, 1, []Action{{Type: 3, Name: "x"}})},
		{"scope", Ack(1, 1, []Action{SetVar(5, "x", NullValue())})},
		{"kind", Ack(1, 1, []Action{SetVar(ScopeTxn, "x", Value{kind: 10})})},
		{"invalid-addr", Ack(1, 1, []Action{SetVar(ScopeTxn, "x", IPValue(netip.Addr{}))})},
		{"args", Frame{Type: FrameNotify, Messages: []Message{{Args: tooMany}}}},
		{"kv-kind", Frame{Type: FrameAgentHello, KV: []KV{kv("x", Value{kind: 15})}}},
		{"notify-kind", Frame{Type: FrameNotify, Messages: []Message{{Args: []Arg{arg("a", Value{kind: 12})}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			out, err := AppendFrame(dst, &tt.f)
			if err == nil {
				t.Fatalf("AppendFrame succeeded: %x", out)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %v is not an *Error", err)
			}
			if string(out) != "prefix" {
				t.Errorf("dst changed to %q", out)
			}
		})
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	notify := goldenNotify(t)
	withLen := func(body []byte) []byte {
		return wire(t, []byte{byte(len(body) >> 24), byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body)
	}
	tests := []struct {
		name string
		in   []byte
		want *Error
	}{
		{"empty", nil, ErrTruncated},
		{"short-length", wire(t, h("00 00 00")), ErrTruncated},
		{"length-only", wire(t, h("00 00 00 00")), ErrTruncated},
		{"truncated-body", notify[:len(notify)-1], ErrTruncated},
		{"trailing", append(bytes.Clone(notify), 0), ErrTrailingBytes},
		{"huge-length", wire(t, h("ff ff ff ff 03 00 00 00 01 00 01")), ErrTruncated},
		{"header-only-6", withLen(wire(t, h("03 00 00 00 01 00"))), ErrTruncated},
		{"type-0", withLen(wire(t, h("00 00 00 00 01 00 00"))), ErrFrameType},
		{"type-4", withLen(wire(t, h("04 00 00 00 01 00 00"))), ErrFrameType},
		{"type-100", withLen(wire(t, h("64 00 00 00 01 00 00"))), ErrFrameType},
		{"no-fin", withLen(wire(t, h("03 00 00 00 00 00 01"))), ErrFragmented},
		{"abort-no-fin", withLen(wire(t, h("03 00 00 00 02 00 01"))), ErrFragmented},
		{"bad-stream-id", withLen(wire(t, h("03 00 00 00 01 ff ff ff ff ff ff ff ff ff ff 00"))), ErrBadVarint},
		{"truncated-frame-id", withLen(wire(t, h("03 00 00 00 01 00 f0"))), ErrTruncated},
		{"string-length-beyond-frame", withLen(wire(t, h("03 00 00 00 01 00 01 05"), "abcd")), ErrTruncated},
		{"string-length-2^64-1", withLen(wire(t, h("03 00 00 00 01 00 01"), AppendVarint(nil, math.MaxUint64), "x")), ErrTruncated},
		{"string-length-bad-varint", withLen(wire(t, h("03 00 00 00 01 00 01 ff ff ff ff ff ff ff ff ff 7f"))), ErrBadVarint},
		{"missing-nb-args", withLen(wire(t, h("03 00 00 00 01 00 01 01"), "m")), ErrTruncated},
		{"missing-arg", withLen(wire(t, h("03 00 00 00 01 00 01 01"), "m", h("02 01"), "a", h("00"))), ErrTruncated},
		{"arg-missing-value", withLen(wire(t, h("03 00 00 00 01 00 01 01"), "m", h("01 01"), "a")), ErrTruncated},
		{"data-type-10", withLen(wire(t, h("03 00 00 00 01 00 01 01"), "m", h("01 01"), "a", h("0a"))), ErrDataType},
		{"data-type-15-flags", withLen(wire(t, h("03 00 00 00 01 00 01 01"), "m", h("01 01"), "a", h("ff"))), ErrDataType},
		{"ipv4-short", withLen(wire(t, h("03 00 00 00 01 00 01 01"), "m", h("01 01"), "a", h("06 7f 00 00"))), ErrTruncated},
		{"ipv6-short", withLen(wire(t, h("03 00 00 00 01 00 01 01"), "m", h("01 01"), "a", h("07 00"))), ErrTruncated},
		{"int-truncated", withLen(wire(t, h("03 00 00 00 01 00 01 01"), "m", h("01 01"), "a", h("04 ff"))), ErrTruncated},
		{"kv-missing-value", withLen(wire(t, h("01 00 00 00 01 00 00 01"), "k")), ErrTruncated},
		{"kv-bad-type", withLen(wire(t, h("01 00 00 00 01 00 00 01"), "k", h("0b"))), ErrDataType},
		{"action-unknown", withLen(wire(t, h("67 00 00 00 01 00 01 03 03 02 01"), "x", h("00"))), ErrAction},
		{"set-var-2-args", withLen(wire(t, h("67 00 00 00 01 00 01 01 02 02 01"), "x")), ErrAction},
		{"unset-var-3-args", withLen(wire(t, h("67 00 00 00 01 00 01 02 03 02 01"), "x", h("00"))), ErrAction},
		{"scope-5", withLen(wire(t, h("67 00 00 00 01 00 01 01 03 05 01"), "x", h("00"))), ErrAction},
		{"action-truncated", withLen(wire(t, h("67 00 00 00 01 00 01 01"))), ErrTruncated},
		{"set-var-no-value", withLen(wire(t, h("67 00 00 00 01 00 01 01 03 02 01"), "x")), ErrTruncated},
		{"too-many-kv", withLen(wire(t, h("01 00 00 00 01 00 00"), bytes.Repeat([]byte{0, 0}, MaxItems+1))), ErrTooManyItems},
		{"too-many-messages", withLen(wire(t, h("03 00 00 00 01 00 00"), bytes.Repeat([]byte{0, 0}, MaxItems+1))), ErrTooManyItems},
		{"too-many-args", withLen(wire(t, h("03 00 00 00 01 00 00"), bytes.Repeat(wire(t, h("00 ff"), bytes.Repeat([]byte{0, 0}, 255)), 5))), ErrTooManyItems},
		{"too-many-actions", withLen(wire(t, h("67 00 00 00 01 00 00"), bytes.Repeat(wire(t, h("02 02 02 00")), MaxItems+1))), ErrTooManyItems},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			err := DecodeFrame(tt.in, &f)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeFrame(%x) error = %v, want %v", tt.in, err, tt.want)
			}
			if got, want := StatusOf(err), tt.want.Status; got != want {
				t.Errorf("StatusOf = %v, want %v", got, want)
			}
		})
	}
}

// TestDecodeIgnoresDataFlags checks that unknown flag bits of a type byte
// are ignored, as HAProxy does, and dropped on re-encoding.
func TestDecodeIgnoresDataFlags(t *testing.T) {
	in := wire(t, h("00 00 00 0f 67 00 00 00 01 00 01 01 03 02 01"), "x", h("e8 01"), "y")
	var f Frame
	if err := DecodeFrame(in, &f); err != nil {
		t.Fatal(err)
	}
	if v := f.Actions[0].Value; !v.Equal(StringValue("y")) {
		t.Errorf("value = %v", v)
	}
	in = wire(t, h("00 00 00 0d 67 00 00 00 01 00 01 01 03 02 01"), "x", h("e1"))
	if err := DecodeFrame(in, &f); err != nil {
		t.Fatal(err)
	}
	if v := f.Actions[0].Value; !v.Equal(BoolValue(false)) {
		t.Errorf("0xe1 = %v, want BOOL false", v)
	}
}

// TestDecodeReusesFrame checks that decoding into a used Frame leaves
// nothing of the previous frame behind, and allocates nothing once warm.
func TestDecodeReusesFrame(t *testing.T) {
	notify, hello := goldenNotify(t), goldenHello(t)
	var f Frame
	for _, in := range [][]byte{notify, hello, notify} {
		if err := DecodeFrame(in, &f); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.KV) != 0 || len(f.Messages) != 1 || len(f.Messages[0].Args) != 4 {
		t.Errorf("frame after reuse: %+v", f)
	}
	if n := testing.AllocsPerRun(100, func() { _ = DecodeFrame(notify, &f) }); n != 0 {
		t.Errorf("warm DecodeFrame(NOTIFY) allocates %v times, want 0", n)
	}
}

func TestMessageArgsDoNotOverlap(t *testing.T) {
	var f Frame
	roundTripped := roundTrip(t, &Frame{Type: FrameNotify, Messages: []Message{
		{Name: []byte("a"), Args: []Arg{arg("1", NullValue())}},
		{Name: []byte("b"), Args: []Arg{arg("2", NullValue())}},
	}})
	f = *roundTripped
	// Appending to one message's arguments must not clobber the next's.
	f.Messages[0].Args = append(f.Messages[0].Args, arg("x", NullValue()))
	if string(f.Messages[1].Args[0].Name) != "2" {
		t.Errorf("second message's argument clobbered: %q", f.Messages[1].Args[0].Name)
	}
}

func TestClone(t *testing.T) {
	in := goldenNotify(t)
	var f Frame
	if err := DecodeFrame(in, &f); err != nil {
		t.Fatal(err)
	}
	g, err := f.Clone()
	if err != nil {
		t.Fatal(err)
	}
	clear(in) // the clone must not alias the input
	want := wire(t, goldenNotify(t))
	var w Frame
	if err := DecodeFrame(want, &w); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&w, g, frameCmp); diff != "" {
		t.Errorf("clone (-want +got):\n%s", diff)
	}
}

func TestValueAccessors(t *testing.T) {
	if b, ok := BoolValue(true).Bool(); !b || !ok {
		t.Error("BoolValue(true).Bool()")
	}
	if _, ok := StringValue("x").Bool(); ok {
		t.Error("STRING.Bool() ok")
	}
	if i, ok := Uint64Value(math.MaxUint64).Int64(); !ok || i != -1 {
		t.Errorf("UINT64 max as Int64 = %d, %v; want -1 as HAProxy reads it", i, ok)
	}
	if i, ok := Int32Value(-2).Int64(); !ok || i != -2 {
		t.Errorf("INT32 -2 as Int64 = %d, %v", i, ok)
	}
	if u, ok := Int32Value(-1).Uint64(); !ok || u != math.MaxUint64 {
		t.Errorf("INT32 -1 bit pattern = %x, %v", u, ok)
	}
	if _, ok := NullValue().Int64(); ok {
		t.Error("NULL.Int64() ok")
	}
	if _, ok := StringValue("x").Addr(); ok {
		t.Error("STRING.Addr() ok")
	}
	if _, ok := Int64Value(1).Text(); ok {
		t.Error("INT64.Text() ok")
	}
	if _, ok := Int64Value(1).Bytes(); ok {
		t.Error("INT64.Bytes() ok")
	}
	if b, ok := StringValue("ab").Bytes(); !ok || string(b) != "ab" {
		t.Errorf("StringValue.Bytes() = %q, %v", b, ok)
	}
	if v := IPValue(netip.MustParseAddr("fe80::1%eth0")); v.Kind() != KindIPv6 || v.addr.Zone() != "" {
		t.Errorf("zoned IPv6 = %v", v)
	}
	if StringValue("a").Equal(BinaryValue([]byte("a"))) {
		t.Error("STRING equals BINARY")
	}
	if !BytesValue([]byte("a")).Equal(StringValue("a")) || !StringValue("a").Equal(BytesValue([]byte("a"))) {
		t.Error("string and bytes forms differ")
	}
	for _, tt := range []struct {
		v    Value
		want string
	}{
		{NullValue(), "NULL"}, {BoolValue(true), "BOOL true"}, {Int32Value(-1), "INT32 -1"},
		{Uint64Value(7), "UINT64 7"}, {IPValue(netip.MustParseAddr("::1")), "IPV6 ::1"},
		{StringValue("GET"), `STRING "GET"`}, {BinaryValue([]byte{0}), `BINARY "\x00"`},
		{Value{kind: 12}, "Kind(12)"},
	} {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{FrameNotify.String(), "NOTIFY"}, {FrameAck.String(), "ACK"}, {FrameType(9).String(), "FrameType(9)"},
		{ScopeTxn.String(), "txn"}, {Scope(9).String(), "Scope(9)"},
		{KindIPv6.String(), "IPV6"}, {StatusBadVersion.String(), "unsupported version"},
		{Status(200).String(), "status 200"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
