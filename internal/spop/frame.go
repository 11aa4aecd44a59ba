package spop

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"strconv"
)

// FrameType is the first byte of a frame.
type FrameType uint8

// The frame types. HAProxy sends types 1 to 3, the agent 101 to 103.
const (
	FrameHAProxyHello      FrameType = 1
	FrameHAProxyDisconnect FrameType = 2
	FrameNotify            FrameType = 3
	FrameAgentHello        FrameType = 101
	FrameAgentDisconnect   FrameType = 102
	FrameAck               FrameType = 103
)

// String returns the SPOP name of t, such as "NOTIFY".
func (t FrameType) String() string {
	switch t {
	case FrameHAProxyHello:
		return "HAPROXY-HELLO"
	case FrameHAProxyDisconnect:
		return "HAPROXY-DISCONNECT"
	case FrameNotify:
		return "NOTIFY"
	case FrameAgentHello:
		return "AGENT-HELLO"
	case FrameAgentDisconnect:
		return "AGENT-DISCONNECT"
	case FrameAck:
		return "ACK"
	}
	return "FrameType(" + strconv.Itoa(int(t)) + ")"
}

func (t FrameType) known() bool {
	return (t >= FrameHAProxyHello && t <= FrameNotify) || (t >= FrameAgentHello && t <= FrameAck)
}

// Flags is the 32-bit big-endian flags field of a frame.
type Flags uint32

// The frame flags. Bits 2 to 31 are reserved; DecodeFrame keeps them as
// received.
const (
	// FlagFIN marks the last fragment of a frame. Every frame must have it:
	// AppendFrame always sets it, and DecodeFrame refuses a frame without it
	// with ErrFragmented.
	FlagFIN Flags = 1 << 0
	// FlagAbort aborts a fragmented frame; only HAProxy ≤ 3.0 sent it.
	FlagAbort Flags = 1 << 1
)

// Limits on what DecodeFrame accepts, on top of the frame size.
const (
	// MinFrameSize is the smallest max-frame-size SPOP allows.
	MinFrameSize = 256
	// DefaultMaxFrameSize is HAProxy's default max-frame-size:
	// tune.bufsize (16384) minus the 4-byte length.
	DefaultMaxFrameSize = 16380
	// MaxItems caps the list entries of one frame: KV entries, plus
	// messages and their arguments, plus actions. HAProxy's NOTIFYs carry
	// tens; the cap bounds the memory a hostile frame can make a decoder
	// hold whatever the frame size.
	MaxItems = 1024
	// MaxArgs is the most arguments a message or action can have: the
	// count is one byte.
	MaxArgs = 255
	// minFrameLen is a frame's smallest length: type, flags, two 1-byte varints.
	minFrameLen = 1 + 4 + 1 + 1
)

// Frame is one SPOP frame. Which payload field is used depends on Type:
// KV for HELLO and DISCONNECT frames, Messages for NOTIFY, Actions for ACK;
// AppendFrame ignores the others.
//
// A Frame filled by DecodeFrame or Reader.ReadFrame reuses its slices from
// one call to the next, and its names and STRING/BINARY values alias the
// decoded buffer: extract what must outlive the next read, or Clone it.
type Frame struct {
	Type     FrameType
	Flags    Flags
	StreamID uint64 // opaque; 0 for HELLO and DISCONNECT, and for HAProxy 2.6's first stream
	FrameID  uint64 // opaque; echo both IDs of a NOTIFY in its ACK
	KV       []KV
	Messages []Message
	Actions  []Action

	args []Arg // backing array of Messages[i].Args, reused across decodes
}

// KV is an entry of the KV-LIST payload of HELLO and DISCONNECT frames.
type KV struct {
	Name  []byte
	Value Value
}

// Message is one SPOE message of a NOTIFY frame: its name as in
// spoe-message, and its arguments in declaration order.
type Message struct {
	Name []byte
	Args []Arg
}

// Arg is a message argument. Name is empty for an unnamed argument.
type Arg struct {
	Name  []byte
	Value Value
}

// Arg returns the value of the first argument called name.
func (m *Message) Arg(name string) (Value, bool) {
	for i := range m.Args {
		if string(m.Args[i].Name) == name {
			return m.Args[i].Value, true
		}
	}
	return Value{}, false
}

// Message returns the first message of a NOTIFY called name.
func (f *Frame) Message(name string) (*Message, bool) {
	for i := range f.Messages {
		if string(f.Messages[i].Name) == name {
			return &f.Messages[i], true
		}
	}
	return nil, false
}

// Lookup returns the value of the first KV entry called name.
func (f *Frame) Lookup(name string) (Value, bool) {
	for i := range f.KV {
		if string(f.KV[i].Name) == name {
			return f.KV[i].Value, true
		}
	}
	return Value{}, false
}

// ActionType is the first byte of an ACK action.
type ActionType uint8

// The action types.
const (
	ActionSetVar   ActionType = 1 // 3 arguments: scope, name, value
	ActionUnsetVar ActionType = 2 // 2 arguments: scope, name
)

// Scope is the scope of a variable an action sets or unsets. HAProxy
// prefixes the name with the agent's var-prefix: txn.<prefix>.<name>.
type Scope uint8

// The variable scopes.
const (
	ScopeProc Scope = 0 // the whole process
	// ScopeSess is the client connection: a session variable survives
	// across keep-alive requests and HTTP/2 streams, so a stale verdict
	// could authorize a later request. gatehouse answers in ScopeTxn only.
	ScopeSess Scope = 1
	ScopeTxn  Scope = 2 // the transaction (one HTTP request and response)
	ScopeReq  Scope = 3 // the request half of the transaction
	ScopeRes  Scope = 4 // the response half of the transaction
)

var scopeNames = [...]string{"proc", "sess", "txn", "req", "res"}

// String returns the scope as HAProxy writes it, such as "txn".
func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return "Scope(" + strconv.Itoa(int(s)) + ")"
}

// Action is one action of an ACK frame. Value is used by set-var only; a
// NULL value makes HAProxy unset the variable.
type Action struct {
	Type  ActionType
	Scope Scope
	Name  string
	Value Value
}

// SetVar returns a set-var action.
func SetVar(scope Scope, name string, v Value) Action {
	return Action{Type: ActionSetVar, Scope: scope, Name: name, Value: v}
}

// UnsetVar returns an unset-var action.
func UnsetVar(scope Scope, name string) Action {
	return Action{Type: ActionUnsetVar, Scope: scope, Name: name}
}

// decoder reads the elements of a frame from p, which it consumes.
type decoder struct {
	p []byte
}

func (d *decoder) byte() (byte, error) {
	if len(d.p) == 0 {
		return 0, ErrTruncated
	}
	c := d.p[0]
	d.p = d.p[1:]
	return c, nil
}

func (d *decoder) varint() (uint64, error) {
	v, n, err := ConsumeVarint(d.p)
	if err != nil {
		return 0, err
	}
	d.p = d.p[n:]
	return v, nil
}

// string reads an untyped string: a varint length and that many bytes. The
// length is checked against what is left before it is used, so a hostile
// length never causes an allocation or a panic.
func (d *decoder) string() ([]byte, error) {
	n, err := d.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.p)) {
		return nil, ErrTruncated
	}
	s := d.p[:n:n]
	d.p = d.p[n:]
	return s, nil
}

func (d *decoder) value() (Value, error) {
	t, err := d.byte()
	if err != nil {
		return Value{}, err
	}
	// The high 4 bits are flags; HAProxy defines only BOOL's value bit and
	// ignores the rest, and so does this decoder.
	k := Kind(t & 0x0F)
	switch k {
	case KindNull:
		return Value{}, nil
	case KindBool:
		return BoolValue(t&boolFlag != 0), nil
	case KindInt32, KindUint32, KindInt64, KindUint64:
		n, err := d.varint()
		return Value{kind: k, num: n}, err
	case KindIPv4:
		if len(d.p) < 4 {
			return Value{}, ErrTruncated
		}
		a := netip.AddrFrom4([4]byte(d.p[:4]))
		d.p = d.p[4:]
		return Value{kind: k, addr: a}, nil
	case KindIPv6:
		if len(d.p) < 16 {
			return Value{}, ErrTruncated
		}
		a := netip.AddrFrom16([16]byte(d.p[:16]))
		d.p = d.p[16:]
		return Value{kind: k, addr: a}, nil
	case KindString, KindBinary:
		b, err := d.string()
		if err != nil {
			return Value{}, err
		}
		if b == nil {
			b = []byte{} // keep "decoded" (b != nil) for the empty string
		}
		return Value{kind: k, b: b}, nil
	}
	return Value{}, ErrDataType
}

// DecodeFrame decodes one complete frame, b = <length><frame>, into f,
// reusing f's slices. b must hold exactly the length the prefix announces:
// fewer bytes is ErrTruncated, more is ErrTrailingBytes. DecodeFrame does
// not know the negotiated max-frame-size (Reader enforces it); it decodes
// the whole payload, so a frame that returns nil is well formed throughout.
// On error f holds partial results.
//
// DecodeFrame allocates only to grow f's slices, at most MaxItems entries;
// every length in the input is checked against the input before it is used.
func DecodeFrame(b []byte, f *Frame) error {
	if len(b) < 4 {
		return fmt.Errorf("decoding frame length: %w", ErrTruncated)
	}
	n := int64(binary.BigEndian.Uint32(b))
	switch rest := int64(len(b) - 4); {
	case n > rest:
		return fmt.Errorf("decoding frame of %d bytes from %d: %w", n, rest, ErrTruncated)
	case n < rest:
		return fmt.Errorf("decoding frame of %d bytes from %d: %w", n, rest, ErrTrailingBytes)
	}
	return decodeBody(b[4:], f)
}

// decodeBody decodes a frame without its length prefix.
func decodeBody(b []byte, f *Frame) error {
	if len(b) < minFrameLen {
		return fmt.Errorf("decoding frame header: %w", ErrTruncated)
	}
	f.Type = FrameType(b[0])
	f.Flags = Flags(binary.BigEndian.Uint32(b[1:5]))
	f.StreamID, f.FrameID = 0, 0
	f.KV, f.Messages, f.Actions = f.KV[:0], f.Messages[:0], f.Actions[:0]
	if !f.Type.known() {
		return fmt.Errorf("decoding frame type %d: %w", b[0], ErrFrameType)
	}
	if f.Flags&FlagFIN == 0 {
		return fmt.Errorf("decoding %v: %w", f.Type, ErrFragmented)
	}
	d := decoder{p: b[5:]}
	var err error
	if f.StreamID, err = d.varint(); err != nil {
		return fmt.Errorf("decoding %v stream-id: %w", f.Type, err)
	}
	if f.FrameID, err = d.varint(); err != nil {
		return fmt.Errorf("decoding %v frame-id: %w", f.Type, err)
	}
	switch f.Type {
	case FrameNotify:
		err = f.decodeMessages(&d)
	case FrameAck:
		err = f.decodeActions(&d)
	default:
		err = f.decodeKV(&d)
	}
	if err != nil {
		return fmt.Errorf("decoding %v payload: %w", f.Type, err)
	}
	return nil
}

func (f *Frame) decodeKV(d *decoder) error {
	for len(d.p) > 0 {
		if len(f.KV) >= MaxItems {
			return ErrTooManyItems
		}
		name, err := d.string()
		if err != nil {
			return err
		}
		v, err := d.value()
		if err != nil {
			return err
		}
		f.KV = append(f.KV, KV{Name: name, Value: v})
	}
	return nil
}

func (f *Frame) decodeMessages(d *decoder) error {
	// Every message and argument takes at least 2 bytes, so the payload
	// bounds how many arguments can follow. Sizing the backing array once
	// means no argument slice is invalidated by growth while decoding.
	if need := min(len(d.p)/2, MaxItems); cap(f.args) < need {
		f.args = make([]Arg, 0, need)
	}
	args := f.args[:0]
	for len(d.p) > 0 {
		if len(f.Messages)+len(args) >= MaxItems {
			return ErrTooManyItems
		}
		name, err := d.string()
		if err != nil {
			return err
		}
		nb, err := d.byte()
		if err != nil {
			return err
		}
		if len(f.Messages)+1+len(args)+int(nb) > MaxItems {
			return ErrTooManyItems
		}
		start := len(args)
		for range nb {
			an, err := d.string()
			if err != nil {
				return err
			}
			v, err := d.value()
			if err != nil {
				return err
			}
			args = append(args, Arg{Name: an, Value: v})
		}
		f.Messages = append(f.Messages, Message{Name: name, Args: args[start:len(args):len(args)]})
	}
	f.args = args
	return nil
}

func (f *Frame) decodeActions(d *decoder) error {
	for len(d.p) > 0 {
		if len(f.Actions) >= MaxItems {
			return ErrTooManyItems
		}
		t, err := d.byte()
		if err != nil {
			return err
		}
		nb, err := d.byte()
		if err != nil {
			return err
		}
		a := Action{Type: ActionType(t)}
		switch {
		case a.Type == ActionSetVar && nb == 3, a.Type == ActionUnsetVar && nb == 2:
		default:
			return fmt.Errorf("action type %d with %d arguments: %w", t, nb, ErrAction)
		}
		sc, err := d.byte()
		if err != nil {
			return err
		}
		if a.Scope = Scope(sc); a.Scope > ScopeRes {
			return fmt.Errorf("scope %d: %w", sc, ErrAction)
		}
		name, err := d.string()
		if err != nil {
			return err
		}
		a.Name = string(name)
		if a.Type == ActionSetVar {
			if a.Value, err = d.value(); err != nil {
				return err
			}
		}
		f.Actions = append(f.Actions, a)
	}
	return nil
}

// AppendFrame appends f, with its 4-byte length prefix, to dst. It always
// sets FlagFIN, since SPOP 2.0 agents never fragment. It fails with
// ErrInvalid, returning dst unchanged, for an unknown frame type, action
// type, scope or data type, an invalid IP address, or a message or action
// with more than MaxArgs arguments. It does not check the frame size against
// a max-frame-size: Writer does. With enough capacity in dst it does not
// allocate.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	start := len(dst)
	out, err := appendBody(append(dst, 0, 0, 0, 0), f)
	if err != nil {
		return dst[:start], fmt.Errorf("encoding %v: %w", f.Type, err)
	}
	n := len(out) - start - 4
	if n > math.MaxUint32 {
		return dst[:start], fmt.Errorf("encoding %v of %d bytes: %w", f.Type, n, ErrFrameTooBig)
	}
	binary.BigEndian.PutUint32(out[start:], uint32(n)) //nolint:gosec // G115: n is checked above.
	return out, nil
}

func appendBody(b []byte, f *Frame) ([]byte, error) {
	if !f.Type.known() {
		return b, ErrFrameType
	}
	b = append(b, byte(f.Type))
	b = binary.BigEndian.AppendUint32(b, uint32(f.Flags|FlagFIN))
	b = AppendVarint(b, f.StreamID)
	b = AppendVarint(b, f.FrameID)
	var err error
	switch f.Type {
	case FrameNotify:
		for i := range f.Messages {
			m := &f.Messages[i]
			if len(m.Args) > MaxArgs {
				return b, fmt.Errorf("message %q has %d arguments: %w", m.Name, len(m.Args), ErrInvalid)
			}
			b = appendString(b, m.Name)
			b = append(b, byte(len(m.Args))) //nolint:gosec // G115: checked against MaxArgs above.
			for j := range m.Args {
				b = appendString(b, m.Args[j].Name)
				if b, err = appendValue(b, m.Args[j].Value); err != nil {
					return b, fmt.Errorf("argument %q: %w", m.Args[j].Name, err)
				}
			}
		}
	case FrameAck:
		for i := range f.Actions {
			a := &f.Actions[i]
			if a.Scope > ScopeRes {
				return b, fmt.Errorf("action %q scope %d: %w", a.Name, a.Scope, ErrInvalid)
			}
			switch a.Type {
			case ActionSetVar:
				b = append(b, byte(ActionSetVar), 3, byte(a.Scope))
				b = appendString(b, a.Name)
				if b, err = appendValue(b, a.Value); err != nil {
					return b, fmt.Errorf("set-var %q: %w", a.Name, err)
				}
			case ActionUnsetVar:
				b = append(b, byte(ActionUnsetVar), 2, byte(a.Scope))
				b = appendString(b, a.Name)
			default:
				return b, fmt.Errorf("action type %d: %w", a.Type, ErrInvalid)
			}
		}
	default:
		for i := range f.KV {
			b = appendString(b, f.KV[i].Name)
			if b, err = appendValue(b, f.KV[i].Value); err != nil {
				return b, fmt.Errorf("%q: %w", f.KV[i].Name, err)
			}
		}
	}
	return b, nil
}

// appendString appends an untyped string: a varint length and the bytes.
func appendString[S ~string | ~[]byte](b []byte, s S) []byte {
	return append(AppendVarint(b, uint64(len(s))), s...) //nolint:gosec // G115: a length is never negative.
}

// Clone returns a deep copy of f that shares no memory with it, for keeping
// a decoded frame beyond the next read. It fails only when f cannot be
// encoded.
func (f *Frame) Clone() (*Frame, error) {
	b, err := AppendFrame(nil, f)
	if err != nil {
		return nil, err
	}
	g := new(Frame)
	if err := DecodeFrame(b, g); err != nil {
		return nil, err
	}
	return g, nil
}
