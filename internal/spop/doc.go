// Package spop is a codec for SPOP 2.0, the Stream Processing Offload
// Protocol HAProxy's SPOE filter speaks to an offload agent (a SPOA). It
// encodes and decodes frames and knows the handshake rules; it knows nothing
// of gatehouse's policy, and it opens no connections. The agent in
// internal/haproxy is built on it.
//
// The protocol is specified in HAProxy's doc/SPOE.txt; ../shared/haproxy-spop.md
// in the gatehouse workspace summarises it, with the frames captured from
// HAProxy 2.6.12 that the tests use as golden vectors.
//
// # Wire format
//
// Every frame is a 4-byte big-endian length, not counting itself, then:
//
//	<TYPE:1> <FLAGS:4 big-endian> <STREAM-ID:varint> <FRAME-ID:varint> <PAYLOAD>
//
// FLAGS bit 0 is FIN and bit 1 ABORT; the others are reserved. The frame
// types are HAPROXY-HELLO (1), HAPROXY-DISCONNECT (2) and NOTIFY (3) from
// HAProxy, and AGENT-HELLO (101), AGENT-DISCONNECT (102) and ACK (103) from
// the agent. HELLO and DISCONNECT frames carry a KV list (Frame.KV), a NOTIFY
// a list of messages with named arguments (Frame.Messages), an ACK a list of
// set-var and unset-var actions (Frame.Actions), possibly empty.
//
// Varints use HAProxy's "peers" encoding, not LEB128: a value below 240 is
// one byte; otherwise the first byte is v|0xF0 and (v-240)>>4 follows in
// 7-bit groups, high bit set on all but the last. 16380 is fc f0 06; any
// uint64 fits in MaxVarintLen (10) bytes. See AppendVarint and ConsumeVarint.
//
// Typed data (Value) is a type byte, the type in the low 4 bits and flags
// in the high 4, then the data: NULL and BOOL have none (BOOL true is 0x11,
// false 0x01); INT32, UINT32, INT64 and UINT64 are varints of the 64-bit
// pattern, so a negative number takes 10 bytes; IPV4 and IPV6 are 4 and 16
// bytes; STRING and BINARY are a varint length and the bytes. Names (KV
// names, message and argument names, variable names) are untyped strings: a
// length and the bytes, with no type byte. An argument name may be empty.
//
// # API
//
// A connection handler reads with a Reader and writes with a Writer:
//
//	r := spop.NewReader(conn, spop.DefaultMaxFrameSize)
//	w := spop.NewWriter(conn, spop.DefaultMaxFrameSize)
//	var f spop.Frame
//	if err := r.ReadFrame(&f); err != nil { ... }
//	hs, reply, err := spop.Negotiate(&f, ourMax) // AGENT-HELLO, or AGENT-DISCONNECT
//	w.WriteFrame(&reply)                         // then close if err != nil or hs.Healthcheck
//	r.SetMaxFrameSize(int(hs.MaxFrameSize))
//	w.SetMaxFrameSize(int(hs.MaxFrameSize))
//	for r.ReadFrame(&f) == nil { ... }           // NOTIFY → ack := spop.Ack(f.StreamID, f.FrameID, actions)
//
// DecodeFrame and AppendFrame do the same on byte slices. Frame, Message,
// Arg, KV, Value and Action are plain values; Value has constructors
// (StringValue, BoolValue, IPValue, ...) and accessors that report the kind
// instead of panicking.
//
// A decoded Frame aliases its input: names and STRING/BINARY values point
// into the Reader's buffer until the next ReadFrame. A handler that runs
// while the connection goes on reading (pipelining) must copy what it keeps,
// with Value.Text or Frame.Clone. Reader is for one goroutine; Writer is
// safe for concurrent use and writes each frame with one Write call, so
// pipelined handlers may write their ACKs directly.
//
// # Limits and hostile input
//
// Reader refuses a frame longer than its limit before reading it
// (ErrFrameTooBig) and grows its buffer only to the announced length, so it
// never holds more than the limit, whatever the peer claims. DecodeFrame
// checks every length against the bytes left before using it, decodes the
// whole payload (a truncated element, a reserved data type, an unknown action
// or scope, a varint over 10 bytes or 2^64-1, bytes beyond the announced
// length: all errors), refuses frames with more than MaxItems list entries,
// and allocates only to grow the Frame's slices, which it reuses: decoding
// into a warm Frame does not allocate. Unknown flag bits of a type byte are
// ignored, as HAProxy does. Encoding is canonical: a decoded frame
// re-encodes to the bytes it came from, but for those ignored flag bits.
// FuzzDecodeFrame checks all of this.
//
// Errors are *Error values carrying the Status an agent sends in its
// AGENT-DISCONNECT (StatusOf extracts it); they are wrapped with context, so
// compare with errors.Is. io.EOF between frames is a normal close: HAProxy
// 3.x closes idle pooled connections without a DISCONNECT.
//
// # HAProxy 2.6 and the 3.1+ engine
//
// HAProxy 3.1 rewrote SPOE on a multiplexer (mux-spop) but kept the wire
// protocol at "2.0". To work with both, this package:
//
//   - announces version "2.0" (Version) and accepts any HELLO offering a 2.x
//     version; 3.1+ refuses an agent version above every offered major.
//   - announces only "pipelining" (CapPipelining), and only when HAProxy
//     offered it (2.6 health checks offer nothing). 2.6 offers
//     "pipelining,async"; async (ACKs on any connection) and fragmentation
//     are gone in 3.1 and are never announced. Without pipelining 3.1+ keeps
//     one NOTIFY in flight per connection.
//   - negotiates max-frame-size as min(agent, HAProxy), at least
//     MinFrameSize (256); 3.1+ answers anything outside [256, its own] with
//     status 9. The default on both is 16380 (tune.bufsize - 4).
//   - sets FIN on every frame it encodes, and refuses frames without FIN
//     (ErrFragmented, status 10), as 3.1+ does; 2.6 would read them as
//     fragments.
//   - treats stream-id and frame-id as opaque and never checks them: 2.6
//     numbers its first stream 0 and counts frames per context; 3.1+ uses
//     odd stream-ids and frame-ids from 1 and rejects an ACK with stream-id
//     0, which it never causes. Ack echoes the NOTIFY's IDs.
//   - reads HELLO's healthcheck (3.1+ and option spop-check): answer with
//     AGENT-HELLO, then close without a DISCONNECT.
//
// What the codec leaves to the agent: sending each ACK on the connection
// its NOTIFY came on; the connection states (await HELLO → running →
// closing) and answering a frame before HELLO or a decoding error with the
// AGENT-DISCONNECT Negotiate or StatusOf provides; replying to
// HAPROXY-DISCONNECT with AGENT-DISCONNECT(StatusNormal); bounding in-flight
// NOTIFYs and the handler deadline (shorter than HAProxy's timeout
// processing); choosing ScopeTxn for verdict variables, never ScopeSess (a
// session variable outlives the request it was decided for); keeping
// "<scope>.<prefix>.<name>" under 64 bytes; and stripping CR, LF and other
// control characters from values that become header values; and sending a
// smaller ACK when Writer refuses one as larger than the negotiated
// max-frame-size (HAProxy treats a missing ACK as a failed verdict).
package spop
