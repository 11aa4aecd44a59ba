package spop

import (
	"errors"
	"fmt"
	"strings"
)

// Version is the SPOP version gatehouse speaks and announces. HAProxy has
// offered "2.0" in supported-versions since 1.8, in both SPOE engines.
const Version = "2.0"

// CapPipelining is the only capability gatehouse announces. Without it
// HAProxy 3.1+ allows one NOTIFY in flight per connection. The others,
// "async" and "fragmentation", were removed in 3.1, and with async HAProxy
// 2.6 may expect an ACK on any connection of the engine.
const CapPipelining = "pipelining"

// Hello is a HAPROXY-HELLO, parsed.
type Hello struct {
	// Versions are the entries of supported-versions, spaces trimmed.
	Versions []string
	// MaxFrameSize is the largest frame HAProxy accepts and sends.
	MaxFrameSize uint32
	// Capabilities are the entries of capabilities, spaces trimmed:
	// "pipelining,async" from HAProxy 2.6-3.0, "pipelining" from 3.1+, and
	// none on a 2.6 health check.
	Capabilities []string
	// Healthcheck is set on option spop-check probes: answer the HELLO,
	// then close without a DISCONNECT.
	Healthcheck bool
	// EngineID identifies the SPOE engine (per thread in 2.6, per agent in
	// 3.1+). It is optional.
	EngineID string
}

// ParseHello parses a HAPROXY-HELLO. It returns ErrUnexpectedFrame for any
// other frame type, and ErrNoVersion, ErrNoMaxFrameSize or
// ErrNoCapabilities when the entry is missing or not a STRING (an integer,
// for max-frame-size), with the status HAProxy defines for each. Unknown
// entries are ignored, as the protocol asks.
func ParseHello(f *Frame) (Hello, error) {
	var h Hello
	if f.Type != FrameHAProxyHello {
		return h, fmt.Errorf("expecting HAPROXY-HELLO, got %v: %w", f.Type, ErrUnexpectedFrame)
	}
	v, ok := f.Lookup("supported-versions")
	s, isText := v.Text()
	if !ok || v.Kind() != KindString || !isText {
		return h, ErrNoVersion
	}
	h.Versions = splitList(s)

	v, ok = f.Lookup("max-frame-size")
	n, isInt := v.Int64()
	if !ok || !isInt {
		return h, ErrNoMaxFrameSize
	}
	if n < MinFrameSize || n > 1<<32-1 {
		return h, fmt.Errorf("max-frame-size %d: %w", n, ErrBadMaxFrameSize)
	}
	h.MaxFrameSize = uint32(n)

	v, ok = f.Lookup("capabilities")
	s, isText = v.Text()
	if !ok || v.Kind() != KindString || !isText {
		return h, ErrNoCapabilities
	}
	h.Capabilities = splitList(s)

	if v, ok := f.Lookup("healthcheck"); ok {
		h.Healthcheck, _ = v.Bool()
	}
	if v, ok := f.Lookup("engine-id"); ok && v.Kind() == KindString {
		h.EngineID, _ = v.Text()
	}
	return h, nil
}

// splitList splits a comma-separated HELLO list; HAProxy ignores spaces.
func splitList(s string) []string {
	var out []string
	for e := range strings.SplitSeq(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// Has reports whether HAProxy announced capability c.
func (h *Hello) Has(c string) bool {
	for _, e := range h.Capabilities {
		if e == c {
			return true
		}
	}
	return false
}

// supports2 reports whether h offers a 2.x version.
func (h *Hello) supports2() bool {
	for _, v := range h.Versions {
		if major, _, _ := strings.Cut(v, "."); major == "2" {
			return true
		}
	}
	return false
}

// Handshake is the outcome of a successful HELLO exchange.
type Handshake struct {
	Hello
	// MaxFrameSize is the negotiated limit for both directions:
	// min(agent, HAProxy); HAProxy's own is Hello.MaxFrameSize. Pass it to
	// Reader and Writer SetMaxFrameSize.
	MaxFrameSize uint32
	// Pipelining reports that both sides announced pipelining: HAProxy may
	// send NOTIFYs without waiting for ACKs, and ACKs may go in any order.
	Pipelining bool
}

// Negotiate answers HAProxy's first frame. maxFrameSize is the agent's own
// limit (DefaultMaxFrameSize is HAProxy's default; below MinFrameSize means
// MinFrameSize).
//
// On success it returns the handshake and the AGENT-HELLO to send: version
// "2.0", max-frame-size min(agent, HAProxy), and capability "pipelining" if
// HAProxy offered it, nothing else. If hs.Healthcheck is set, send the reply
// and close.
//
// When the frame is not a HAPROXY-HELLO (any frame before HELLO is a
// protocol error), an entry is missing or no 2.x version is offered, it
// returns the error and an AGENT-DISCONNECT carrying its status: send the
// reply, then close.
func Negotiate(f *Frame, maxFrameSize uint32) (Handshake, Frame, error) {
	h, err := ParseHello(f)
	if err == nil && !h.supports2() {
		err = fmt.Errorf("supported-versions %q: %w", strings.Join(h.Versions, ","), ErrBadVersion)
	}
	if err != nil {
		return Handshake{}, AgentDisconnect(StatusOf(err), errMessage(err)), err
	}
	hs := Handshake{
		Hello:        h,
		MaxFrameSize: min(max(maxFrameSize, MinFrameSize), h.MaxFrameSize),
		Pipelining:   h.Has(CapPipelining),
	}
	caps := ""
	if hs.Pipelining {
		caps = CapPipelining
	}
	return hs, AgentHello(hs.MaxFrameSize, caps), nil
}

// errMessage returns the message of the *Error in err's chain, for the
// DISCONNECT frame: HAProxy logs it.
func errMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.msg
	}
	return StatusOf(err).String()
}

// AgentHello returns an AGENT-HELLO frame with stream-id and frame-id 0 and
// the three entries HAProxy requires, in the order HAProxy's own test agent
// uses: version (Version), max-frame-size (UINT32) and capabilities.
func AgentHello(maxFrameSize uint32, capabilities string) Frame {
	return Frame{
		Type:  FrameAgentHello,
		Flags: FlagFIN,
		KV: []KV{
			{Name: []byte("version"), Value: StringValue(Version)},
			{Name: []byte("max-frame-size"), Value: Uint32Value(maxFrameSize)},
			{Name: []byte("capabilities"), Value: StringValue(capabilities)},
		},
	}
}

// AgentDisconnect returns an AGENT-DISCONNECT frame with stream-id and
// frame-id 0, status-code (UINT32) and message (STRING). Send it, then close
// the connection; in reply to a HAPROXY-DISCONNECT use StatusNormal.
func AgentDisconnect(status Status, message string) Frame {
	return Frame{
		Type:  FrameAgentDisconnect,
		Flags: FlagFIN,
		KV: []KV{
			{Name: []byte("status-code"), Value: Uint32Value(uint32(status))},
			{Name: []byte("message"), Value: StringValue(message)},
		},
	}
}

// Disconnect is a HAPROXY-DISCONNECT or AGENT-DISCONNECT, parsed.
type Disconnect struct {
	Status  Status
	Message string
}

// ParseDisconnect parses a DISCONNECT frame. A missing or ill-typed
// status-code reads as StatusUnknown, a missing message as empty: the peer
// is leaving either way.
func ParseDisconnect(f *Frame) (Disconnect, error) {
	d := Disconnect{Status: StatusUnknown}
	if f.Type != FrameHAProxyDisconnect && f.Type != FrameAgentDisconnect {
		return d, fmt.Errorf("expecting DISCONNECT, got %v: %w", f.Type, ErrUnexpectedFrame)
	}
	if v, ok := f.Lookup("status-code"); ok {
		if n, ok := v.Int64(); ok && n >= 0 && n <= 1<<32-1 {
			d.Status = Status(n)
		}
	}
	if v, ok := f.Lookup("message"); ok {
		d.Message, _ = v.Text()
	}
	return d, nil
}

// Ack returns the ACK for the NOTIFY with the given stream-id and frame-id,
// which must be echoed exactly as received: HAProxy 2.6 numbers its first
// stream 0, while 3.1+ uses odd stream-ids and frame-ids from 1. It does not
// copy actions. gatehouse sets its verdict in ScopeTxn, never ScopeSess.
func Ack(streamID, frameID uint64, actions []Action) Frame {
	return Frame{Type: FrameAck, Flags: FlagFIN, StreamID: streamID, FrameID: frameID, Actions: actions}
}
