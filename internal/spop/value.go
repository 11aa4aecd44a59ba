package spop

import (
	"bytes"
	"net/netip"
	"strconv"
)

// Kind is the type of a typed-data value: the low 4 bits of its type byte.
type Kind uint8

// The SPOP data types. Types 10 to 15 are reserved.
const (
	KindNull   Kind = 0 // no data; HAProxy sends it when a sample is unavailable
	KindBool   Kind = 1 // no data; the value is flag bit 0 (true 0x11, false 0x01)
	KindInt32  Kind = 2 // varint
	KindUint32 Kind = 3 // varint
	KindInt64  Kind = 4 // varint; HAProxy sends integer samples as INT64
	KindUint64 Kind = 5 // varint
	KindIPv4   Kind = 6 // 4 bytes, network order
	KindIPv6   Kind = 7 // 16 bytes, network order
	KindString Kind = 8 // <length varint><bytes>
	KindBinary Kind = 9 // <length varint><bytes>
)

var kindNames = [...]string{"NULL", "BOOL", "INT32", "UINT32", "INT64", "UINT64", "IPV4", "IPV6", "STRING", "BINARY"}

// String returns the SPOP name of k, such as "STRING".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// boolFlag is the typed-data flag bit that holds a BOOL's value.
const boolFlag = 0x10

// Value is a typed-data value. The zero Value is NULL. Build values with the
// XxxValue constructors; read them with the accessors, which report whether
// the value has the kind asked for and never panic.
//
// A STRING or BINARY value decoded from a frame aliases the buffer it was
// decoded from (for a Reader, until the next ReadFrame): copy it, with Text
// or Frame.Clone, before keeping it.
type Value struct {
	kind Kind
	num  uint64     // BOOL (0 or 1) and the four integer kinds: the varint's bit pattern
	addr netip.Addr // IPV4, IPV6
	b    []byte     // STRING, BINARY when decoded or built from bytes
	s    string     // STRING, BINARY when built from a string
}

// NullValue returns the NULL value. In a set-var action it unsets the
// variable.
func NullValue() Value { return Value{} }

// BoolValue returns a BOOL value.
func BoolValue(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.num = 1
	}
	return v
}

// Int32Value returns an INT32 value. Negative values are sign-extended to
// 64 bits before encoding, as HAProxy does, so they take 10 bytes.
func Int32Value(i int32) Value { return Value{kind: KindInt32, num: uint64(int64(i))} } //nolint:gosec // G115: sign extension, as HAProxy does.

// Uint32Value returns a UINT32 value.
func Uint32Value(u uint32) Value { return Value{kind: KindUint32, num: uint64(u)} }

// Int64Value returns an INT64 value, encoded as the varint of its uint64
// bit pattern.
func Int64Value(i int64) Value { return Value{kind: KindInt64, num: uint64(i)} } //nolint:gosec // G115: the wire format is the bit pattern.

// Uint64Value returns a UINT64 value.
func Uint64Value(u uint64) Value { return Value{kind: KindUint64, num: u} }

// IPValue returns an IPV4 value for an IPv4 address and an IPV6 value for
// any other valid address (an IPv4-mapped IPv6 address stays IPV6). The zone
// is dropped. An invalid address makes AppendFrame fail.
func IPValue(a netip.Addr) Value {
	if a.Is4() {
		return Value{kind: KindIPv4, addr: a}
	}
	if !a.IsValid() {
		return Value{kind: KindIPv6}
	}
	return Value{kind: KindIPv6, addr: a.WithZone("")}
}

// StringValue returns a STRING value. It does not copy s.
func StringValue(s string) Value { return Value{kind: KindString, s: s} }

// BytesValue returns a STRING value holding b. It does not copy b.
func BytesValue(b []byte) Value { return Value{kind: KindString, b: b} }

// BinaryValue returns a BINARY value. It does not copy b.
func BinaryValue(b []byte) Value { return Value{kind: KindBinary, b: b} }

// Kind returns the type of v.
func (v Value) Kind() Kind { return v.kind }

// Bool returns the value of a BOOL.
func (v Value) Bool() (b, ok bool) { return v.num != 0, v.kind == KindBool }

// Int64 returns the value of any of the four integer kinds as a signed
// 64-bit integer, as HAProxy does when it reads an agent's value: a UINT64
// above 2^63-1 comes back negative.
func (v Value) Int64() (int64, bool) {
	return int64(v.num), v.isInt() //nolint:gosec // G115: HAProxy's own conversion.
}

// Uint64 returns the varint bit pattern of any of the four integer kinds.
func (v Value) Uint64() (uint64, bool) { return v.num, v.isInt() }

func (v Value) isInt() bool { return v.kind >= KindInt32 && v.kind <= KindUint64 }

// Addr returns the address of an IPV4 or IPV6 value. HAProxy sends a
// client of an IPv6 listener that connected over IPv4 as an IPv4-mapped
// IPV6 value: Unmap it before matching IPv4 ranges.
func (v Value) Addr() (netip.Addr, bool) {
	return v.addr, v.kind == KindIPv4 || v.kind == KindIPv6
}

// Bytes returns the bytes of a STRING or BINARY value without copying when
// the value was decoded or built from bytes (it then aliases that buffer);
// a value built by StringValue is converted, which allocates.
func (v Value) Bytes() ([]byte, bool) {
	if v.kind != KindString && v.kind != KindBinary {
		return nil, false
	}
	if v.b != nil {
		return v.b, true
	}
	return []byte(v.s), true
}

// Text returns the bytes of a STRING or BINARY value as a string, a copy
// that is safe to keep.
func (v Value) Text() (string, bool) {
	if v.kind != KindString && v.kind != KindBinary {
		return "", false
	}
	if v.b != nil {
		return string(v.b), true
	}
	return v.s, true
}

// Equal reports whether v and w have the same kind and value, however
// each was built.
func (v Value) Equal(w Value) bool {
	if v.kind != w.kind {
		return false
	}
	switch v.kind {
	case KindBool, KindInt32, KindUint32, KindInt64, KindUint64:
		return v.num == w.num
	case KindIPv4, KindIPv6:
		return v.addr == w.addr
	case KindString, KindBinary:
		switch {
		case v.b != nil && w.b != nil:
			return bytes.Equal(v.b, w.b)
		case v.b != nil:
			return string(v.b) == w.s
		case w.b != nil:
			return v.s == string(w.b)
		}
		return v.s == w.s
	}
	return true
}

// String renders v for logs and test failures, such as `STRING "GET"` or
// `IPV4 127.0.0.1`. It is not the value's text: use Text for that.
func (v Value) String() string {
	switch v.kind {
	case KindNull:
		return "NULL"
	case KindBool:
		return "BOOL " + strconv.FormatBool(v.num != 0)
	case KindInt32, KindInt64:
		return v.kind.String() + " " + strconv.FormatInt(int64(v.num), 10) //nolint:gosec // G115: bit pattern.
	case KindUint32, KindUint64:
		return v.kind.String() + " " + strconv.FormatUint(v.num, 10)
	case KindIPv4, KindIPv6:
		return v.kind.String() + " " + v.addr.String()
	case KindString, KindBinary:
		t, _ := v.Text()
		return v.kind.String() + " " + strconv.Quote(t)
	}
	return v.kind.String()
}

// dataLen returns the number of bytes of the STRING or BINARY payload.
func (v Value) dataLen() int {
	if v.b != nil {
		return len(v.b)
	}
	return len(v.s)
}

// appendValue appends v as typed data.
func appendValue(dst []byte, v Value) ([]byte, error) {
	switch v.kind {
	case KindNull:
		return append(dst, byte(KindNull)), nil
	case KindBool:
		if v.num != 0 {
			return append(dst, byte(KindBool)|boolFlag), nil
		}
		return append(dst, byte(KindBool)), nil
	case KindInt32, KindUint32, KindInt64, KindUint64:
		return AppendVarint(append(dst, byte(v.kind)), v.num), nil
	case KindIPv4:
		if !v.addr.Is4() {
			return dst, ErrInvalid
		}
		a := v.addr.As4()
		return append(append(dst, byte(KindIPv4)), a[:]...), nil
	case KindIPv6:
		if !v.addr.IsValid() || v.addr.Is4() {
			return dst, ErrInvalid
		}
		a := v.addr.As16()
		return append(append(dst, byte(KindIPv6)), a[:]...), nil
	case KindString, KindBinary:
		dst = AppendVarint(append(dst, byte(v.kind)), uint64(v.dataLen())) //nolint:gosec // G115: a length is never negative.
		if v.b != nil {
			return append(dst, v.b...), nil
		}
		return append(dst, v.s...), nil
	}
	return dst, ErrInvalid
}
