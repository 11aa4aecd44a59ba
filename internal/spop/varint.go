package spop

import "math/bits"

// MaxVarintLen is the longest varint encoding: 10 bytes hold any uint64.
const MaxVarintLen = 10

// AppendVarint appends v in HAProxy's varint encoding (the "peers"
// encoding of include/haproxy/intops.h, not LEB128): values below 240 take
// one byte; otherwise the first byte is v|0xF0 and the rest follow in 7-bit
// groups with the high bit marking continuation. 239 is ef, 240 is f0 00,
// 2288 is f0 80 00 and 16380 is fc f0 06.
func AppendVarint(dst []byte, v uint64) []byte {
	if v < 240 {
		return append(dst, byte(v))
	}
	dst = append(dst, byte(v)|0xF0) //nolint:gosec // G115: truncation to the low byte is the encoding.
	v = (v - 240) >> 4
	for v >= 128 {
		dst = append(dst, byte(v)|0x80) //nolint:gosec // G115: truncation to the low byte is the encoding.
		v = (v - 128) >> 7
	}
	return append(dst, byte(v))
}

// VarintLen returns the number of bytes AppendVarint uses for v.
func VarintLen(v uint64) int {
	if v < 240 {
		return 1
	}
	n := 2
	for v = (v - 240) >> 4; v >= 128; v = (v - 128) >> 7 {
		n++
	}
	return n
}

// ConsumeVarint decodes the varint at the start of b and returns its value
// and length. It returns ErrTruncated when b ends inside the varint, and
// ErrBadVarint for an encoding longer than MaxVarintLen or a value above
// 2^64-1 (HAProxy's decoder wraps silently; refusing keeps every accepted
// encoding canonical: the encoding is a bijection, so re-encoding a decoded
// value reproduces the input bytes).
func ConsumeVarint(b []byte) (uint64, int, error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	v := uint64(b[0])
	if v < 240 {
		return v, 1, nil
	}
	shift := uint(4)
	for i := 1; i < MaxVarintLen; i++ {
		if i >= len(b) {
			return 0, 0, ErrTruncated
		}
		c := uint64(b[i])
		if c>>(64-shift) != 0 {
			return 0, 0, ErrBadVarint
		}
		var carry uint64
		v, carry = bits.Add64(v, c<<shift, 0)
		if carry != 0 {
			return 0, 0, ErrBadVarint
		}
		if c < 128 {
			return v, i + 1, nil
		}
		shift += 7
	}
	return 0, 0, ErrBadVarint
}
