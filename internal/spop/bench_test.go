package spop

import (
	"io"
	"net/netip"
	"testing"
)

// typicalNotify is the NOTIFY of the validated spoe-gatehouse.conf:
// method, host, path, query, src, ssl, authz, session and reqid.
func typicalNotify(b *testing.B) []byte {
	f := Frame{Type: FrameNotify, StreamID: 12345, FrameID: 1, Messages: []Message{{
		Name: []byte("check-auth"),
		Args: []Arg{
			arg("method", StringValue("GET")),
			arg("host", StringValue("metabase.example.com")),
			arg("path", StringValue("/api/dashboard/42")),
			arg("query", StringValue("tab=1&filter=region")),
			arg("src", IPValue(netip.MustParseAddr("203.0.113.7"))),
			arg("ssl", BoolValue(true)),
			arg("authz", NullValue()),
			arg("session", StringValue("gh1.Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg.c2lnbmF0dXJlc2lnbmF0dXJl")),
			arg("reqid", StringValue("7F000001:C5A2_7F000001:01BB_66A1B2C3_0001:1F2E")),
		},
	}}}
	out, err := AppendFrame(nil, &f)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func BenchmarkDecodeNotify(b *testing.B) {
	in := typicalNotify(b)
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := DecodeFrame(in, &f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendAck(b *testing.B) {
	ack := Ack(12345, 1, []Action{
		SetVar(ScopeTxn, "ok", BoolValue(true)),
		SetVar(ScopeTxn, "user", StringValue("alice")),
		SetVar(ScopeTxn, "email", StringValue("alice@example.com")),
		SetVar(ScopeTxn, "groups", StringValue("analysts,admins")),
	})
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendFrame(buf[:0], &ack); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkWriteAck(b *testing.B) {
	ack := Ack(12345, 1, []Action{
		SetVar(ScopeTxn, "ok", BoolValue(true)),
		SetVar(ScopeTxn, "user", StringValue("alice")),
		SetVar(ScopeTxn, "email", StringValue("alice@example.com")),
		SetVar(ScopeTxn, "groups", StringValue("analysts,admins")),
	})
	w := NewWriter(io.Discard, DefaultMaxFrameSize)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteFrame(&ack); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVarint(b *testing.B) {
	buf := make([]byte, 0, MaxVarintLen)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendVarint(buf[:0], 16380)
		if _, _, err := ConsumeVarint(buf); err != nil {
			b.Fatal(err)
		}
	}
}
