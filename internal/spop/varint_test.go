package spop

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestVarintVectors(t *testing.T) {
	// The vectors of ../shared/haproxy-spop.md §2.2.2, checked there
	// against HAProxy's C encoder.
	tests := []struct {
		v    uint64
		wire string
	}{
		{0, "00"},
		{239, "ef"},
		{240, "f0 00"},
		{2287, "ff 7f"},
		{2288, "f0 80 00"},
		{16380, "fc f0 06"},
		{264431, "ff ff 7f"},
		{264432, "f0 80 80 00"},
	}
	for _, tt := range tests {
		want := wire(t, h(tt.wire))
		if got := AppendVarint(nil, tt.v); !bytes.Equal(got, want) {
			t.Errorf("AppendVarint(%d) = %x, want %x", tt.v, got, want)
		}
		if n := VarintLen(tt.v); n != len(want) {
			t.Errorf("VarintLen(%d) = %d, want %d", tt.v, n, len(want))
		}
		v, n, err := ConsumeVarint(append(want, 0xAA))
		if err != nil || v != tt.v || n != len(want) {
			t.Errorf("ConsumeVarint(%x) = %d, %d, %v; want %d, %d", want, v, n, err, tt.v, len(want))
		}
	}
}

// varintBoundaries returns the first value of each encoded length, and the
// values around it.
func varintBoundaries() []uint64 {
	vs := []uint64{0, 1, math.MaxUint64 - 1, math.MaxUint64, 1 << 63, 1<<63 - 1, 1 << 32, 1<<32 - 1}
	lo := uint64(240) // the first 2-byte value
	for n := 2; n <= MaxVarintLen; n++ {
		vs = append(vs, lo-1, lo, lo+1)
		if n < MaxVarintLen {
			lo += 1 << (4 + 7*(n-1)) // the count of n-byte values
		}
	}
	return vs
}

func TestVarintRoundTrip(t *testing.T) {
	for _, v := range varintBoundaries() {
		b := AppendVarint(nil, v)
		if len(b) != VarintLen(v) || len(b) > MaxVarintLen {
			t.Errorf("AppendVarint(%d) is %d bytes, VarintLen says %d", v, len(b), VarintLen(v))
		}
		got, n, err := ConsumeVarint(b)
		if err != nil || got != v || n != len(b) {
			t.Errorf("ConsumeVarint(AppendVarint(%d) = %x) = %d, %d, %v", v, b, got, n, err)
		}
		// Every shorter prefix is truncated.
		for i := range len(b) {
			if _, _, err := ConsumeVarint(b[:i]); !errors.Is(err, ErrTruncated) {
				t.Errorf("ConsumeVarint(%x) error = %v, want ErrTruncated", b[:i], err)
			}
		}
	}
	if n := VarintLen(math.MaxUint64); n != MaxVarintLen {
		t.Errorf("VarintLen(MaxUint64) = %d, want %d", n, MaxVarintLen)
	}
}

func TestVarintLengthBoundaries(t *testing.T) {
	// The table of ranges in ../shared/haproxy-spop.md §2.2.2.
	for _, tt := range []struct {
		v uint64
		n int
	}{
		{239, 1}, {240, 2}, {2287, 2}, {2288, 3}, {264431, 3}, {264432, 4},
		{33818863, 4}, {33818864, 5}, {4328786159, 5}, {4328786160, 6},
	} {
		if n := VarintLen(tt.v); n != tt.n {
			t.Errorf("VarintLen(%d) = %d, want %d", tt.v, n, tt.n)
		}
	}
}

func TestVarintRejectsOverflow(t *testing.T) {
	max := AppendVarint(nil, math.MaxUint64)
	tests := []struct {
		name string
		in   []byte
	}{
		// One more than MaxUint64: bump the last byte.
		{"max+1", append(bytes.Clone(max[:len(max)-1]), max[len(max)-1]+1)},
		{"last byte too big", wire(t, h("ff ff ff ff ff ff ff ff ff 7f"))},
		{"eleven bytes", wire(t, h("ff ff ff ff ff ff ff ff ff ff 00"))},
		{"ten continuation bytes", wire(t, h("f0 80 80 80 80 80 80 80 80 80"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, _, err := ConsumeVarint(tt.in); !errors.Is(err, ErrBadVarint) {
				t.Errorf("ConsumeVarint(%x) = %d, %v; want ErrBadVarint", tt.in, v, err)
			}
		})
	}
}
