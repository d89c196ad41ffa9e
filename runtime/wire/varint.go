package wire

import "fmt"

// MaxVarintLen is the longest varint encoding of a uint64.
const MaxVarintLen = 10

// AppendVarint appends v as a base-128 varint (protobuf style: low 7-bit group first, high bit
// set on every byte but the last): 127 is 7f, 128 is 80 01, 300 is ac 02.
func AppendVarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// VarintLen returns the number of bytes AppendVarint writes for v.
func VarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// ReadVarint decodes a base-128 varint from the start of b and returns its value and length.
// Non-minimal encodings (such as 80 00 for 0) are accepted, as protobuf does. It returns an
// error wrapping ErrTruncated if b ends inside the varint, or ErrMalformed if the value does
// not fit in 64 bits (more than 10 bytes, or a 10th byte above 1).
func ReadVarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < MaxVarintLen; i++ {
		if i >= len(b) {
			return 0, 0, fmt.Errorf("%w: varint ends after %d bytes", ErrTruncated, i)
		}
		c := b[i]
		if i == MaxVarintLen-1 && c > 1 {
			return 0, 0, fmt.Errorf("%w: varint overflows 64 bits", ErrMalformed)
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	// Unreachable: the 10th byte is either rejected above or ends the varint.
	return 0, 0, fmt.Errorf("%w: varint longer than %d bytes", ErrMalformed, MaxVarintLen)
}
