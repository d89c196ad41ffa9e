package wire

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
)

// ClientFlags are the bits of the flag byte a client may set: compressed route (bit 0), the
// message type (bits 1-3) and FlagGzip (bit 4). Any other bit, FlagError included, is not
// defined for a message from a client.
const ClientFlags = flagCompressedRoute | flagTypeMask | FlagGzip

// Gunzip decompresses body, a gzip stream (the body of a message flagged FlagGzip), into a
// new slice. It never produces or allocates more than limit bytes of output: a stream that
// decompresses to more returns an error wrapping ErrTooLarge. A stream that is not valid gzip,
// is truncated or has trailing bytes returns an error wrapping ErrMalformed. A limit of 0 or
// less means MaxLength. Gunzip reads only from body and never panics.
func Gunzip(body []byte, limit int) ([]byte, error) {
	if limit <= 0 || limit > MaxLength {
		limit = MaxLength
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip body: %w", ErrMalformed, err)
	}
	// Read one byte more than allowed to tell "exactly limit" from "more"; the buffer never
	// grows beyond that.
	ceil := limit + 1
	out := make([]byte, 0, min(ceil, 512+4*len(body)))
	for {
		if len(out) == cap(out) {
			if len(out) == ceil {
				break
			}
			grown := make([]byte, len(out), min(ceil, 2*cap(out)))
			copy(grown, out)
			out = grown
		}
		n, err := zr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF && len(out) <= limit {
			return out, nil
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: gzip body: %w", ErrMalformed, err)
		}
	}
	return nil, fmt.Errorf("%w: gzip body decompresses to more than %d bytes", ErrTooLarge, limit)
}
