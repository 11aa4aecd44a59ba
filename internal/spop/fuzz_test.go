package spop

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecodeFrame feeds hostile frames to DecodeFrame and Reader and checks
// that they never panic, that decoding allocates nothing beyond what a warm
// Frame already holds (whatever lengths the input claims), that the decoded
// lists stay within MaxItems and the input, and that decode → encode →
// decode is stable and reproduces the input.
func FuzzDecodeFrame(f *testing.F) {
	for _, seed := range [][]byte{
		goldenHealthcheckHello(f), goldenHello(f), goldenAgentHello(f), goldenNotify(f), goldenAck(f),
		wire(f, h("00 00 00 07 02 00 00 00 01 00 00")),
		wire(f, h("00 00 00 0f 03 00 00 00 01 f0 00 ff 7f 01"), "m", h("01 00 07"), bytes.Repeat([]byte{0}, 16)),
		wire(f, h("00 00 00 0f 67 00 00 00 03 01 01 02 02 04 01"), "x", h("01 03 02 01"), "y", h("00")),
		wire(f, h("ff ff ff ff 03 00 00 00 01 00 01")),
		wire(f, h("00 00 00 0c 03 00 00 00 01 00 01 01"), "m", h("01 00 08 ff")),
		// Bodies without a length prefix, for the second check below.
		wire(f, h("03 00 00 00 01 00 01 01"), "m", h("02 01"), "a", h("04 ff ff ff ff ff ff ff ff ff 01 00 09 00")),
		wire(f, h("67 00 00 00 01 00 01 02 02 04 00 01 03 01 01"), "n", h("07"), bytes.Repeat([]byte{0xfe}, 16)),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		// Most inputs fail the length check; also try the input as a frame
		// body behind the right length prefix, to reach the payload decoder.
		framed := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(data)), uint32(len(data))) //nolint:gosec // G115: fuzz inputs are small
		checkDecode(t, append(framed, data...))
	})
}

func checkDecode(t *testing.T, data []byte) {
	// The Reader sees the same bytes as a stream; it must not panic or grow
	// its buffer past the limit.
	r := NewReader(bytes.NewReader(data), MinFrameSize)
	var rf Frame
	for r.ReadFrame(&rf) == nil {
	}
	if cap(r.buf) > MinFrameSize {
		t.Fatalf("Reader buffer grew to %d bytes", cap(r.buf))
	}

	var fr Frame
	if err := DecodeFrame(data, &fr); err != nil {
		if StatusOf(err) == StatusUnknown {
			t.Fatalf("error without a status: %v", err)
		}
		return
	}
	items := len(fr.KV) + len(fr.Messages) + len(fr.Actions)
	for _, m := range fr.Messages {
		items += len(m.Args)
	}
	if items > MaxItems || items > len(data)/2 {
		t.Fatalf("%d list entries from %d bytes", items, len(data))
	}
	// A warm Frame decodes again without allocating; only ACK variable
	// names are copied out, as strings.
	allocs := testing.AllocsPerRun(1, func() { _ = DecodeFrame(data, &fr) })
	if allocs > float64(len(fr.Actions)) {
		t.Fatalf("warm DecodeFrame allocated %v times for %d actions", allocs, len(fr.Actions))
	}

	enc, err := AppendFrame(nil, &fr)
	if err != nil {
		t.Fatalf("re-encoding a decoded frame: %v", err)
	}
	// Only the unknown flag bits of type bytes are dropped, so the
	// re-encoding has the input's length.
	if len(enc) != len(data) {
		t.Fatalf("re-encoding is %d bytes, input %d:\n%x\n%x", len(enc), len(data), data, enc)
	}
	var again Frame
	if err := DecodeFrame(enc, &again); err != nil {
		t.Fatalf("decoding the re-encoding %x: %v", enc, err)
	}
	if diff := cmp.Diff(&fr, &again, frameCmp); diff != "" {
		t.Fatalf("decode → encode → decode (-first +second):\n%s", diff)
	}
	enc2, err := AppendFrame(nil, &again)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding is not stable: %v\n%x\n%x", err, enc, enc2)
	}
	// The frame must also come through a Reader unchanged.
	r = NewReader(bytes.NewReader(enc), len(enc))
	if err := r.ReadFrame(&rf); err != nil {
		t.Fatalf("Reader on %x: %v", enc, err)
	}
	if diff := cmp.Diff(&fr, &rf, frameCmp); diff != "" {
		t.Fatalf("Reader and DecodeFrame differ (-DecodeFrame +Reader):\n%s", diff)
	}
	if err := r.ReadFrame(&rf); err != io.EOF { //nolint:errorlint // io.EOF is returned as is
		t.Fatalf("after the frame: %v", err)
	}
}
