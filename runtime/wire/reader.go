package wire

import (
	"errors"
	"fmt"
	"io"
)

// initialReaderBuf is the starting size of a Reader's buffer: room for the usual small
// packages without growing.
const initialReaderBuf = 4096

// maxEmptyReads is how many successive (0, nil) reads Next tolerates before it gives up with
// io.ErrNoProgress.
const maxEmptyReads = 100

// Reader reads packages from a byte stream, such as a raw TCP connection.
//
// It reads ahead into one buffer that it reuses between calls, so it may consume bytes from
// the underlying reader beyond the package it returns; use one Reader per stream. The buffer
// grows with the bytes that actually arrive, never merely because a header claims a large
// body, and never beyond HeaderLen+maxBody: a header claiming a longer body is rejected as
// soon as it arrives, without waiting for that body.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	r       io.Reader
	maxBody int
	size    int    // the buffer's starting size
	buf     []byte // buf[start:end] holds bytes read but not yet returned
	start   int
	end     int
	readErr error // error from r not yet reported, once buffered packages are used up
	fatal   error // a stream error after which no more packages can be read
}

// NewReader returns a Reader of packages from r whose bodies are at most maxBody bytes
// (maxBody <= 0 means MaxLength).
func NewReader(r io.Reader, maxBody int) *Reader {
	return NewReaderSize(r, maxBody, initialReaderBuf)
}

// NewReaderSize is NewReader with a buffer that starts at size bytes (at
// least HeaderLen) instead of 4 kB: a server holding many mostly idle
// streams keeps less memory per stream. The buffer still grows to fit a
// larger package, and then keeps its size.
func NewReaderSize(r io.Reader, maxBody, size int) *Reader {
	return &Reader{r: r, maxBody: effectiveMax(maxBody), size: max(size, HeaderLen)}
}

// Next returns the type and body of the next package. The body aliases the Reader's buffer
// and is valid only until the next call to Next.
//
// At the end of the stream between two packages Next returns io.EOF. It returns an error
// wrapping ErrTruncated (and io.ErrUnexpectedEOF) if the stream ends inside a package,
// ErrTooLarge if a header claims a body longer than maxBody, and ErrUnknownType for a type
// outside 1..5; these three are final, as is io.EOF: every later call returns the same error.
// Other errors from the underlying reader (a read deadline, for example) are returned as they
// are, and a later call carries on where this one stopped.
func (r *Reader) Next() (PackageType, []byte, error) {
	if r.fatal != nil {
		return 0, nil, r.fatal
	}
	empty := 0
	for {
		avail := r.end - r.start
		need := HeaderLen
		if avail >= HeaderLen {
			t, n := parseHeader(r.buf[r.start:])
			if err := checkHeader(t, n, r.maxBody); err != nil {
				r.fatal = err
				return 0, nil, err
			}
			if avail >= HeaderLen+n {
				body := r.buf[r.start+HeaderLen : r.start+HeaderLen+n : r.start+HeaderLen+n]
				r.start += HeaderLen + n
				if r.start == r.end {
					r.start, r.end = 0, 0
				}
				return t, body, nil
			}
			need = HeaderLen + n
		}

		if r.readErr != nil {
			err := r.readErr
			r.readErr = nil
			if errors.Is(err, io.EOF) {
				if avail > 0 {
					err = fmt.Errorf("%w: stream ended %d bytes into a package: %w", ErrTruncated, avail, io.ErrUnexpectedEOF)
				} else {
					err = io.EOF
				}
				r.fatal = err
			}
			return 0, nil, err
		}

		r.makeRoom(need)
		m, err := r.r.Read(r.buf[r.end:])
		if m < 0 || m > len(r.buf)-r.end {
			r.fatal = fmt.Errorf("wire: invalid count %d from Read", m)
			return 0, nil, r.fatal
		}
		r.end += m
		r.readErr = err
		if m == 0 && err == nil {
			empty++
			if empty >= maxEmptyReads {
				return 0, nil, io.ErrNoProgress
			}
		} else {
			empty = 0
		}
	}
}

// makeRoom makes free space after r.end for the next read, given that the package at r.start
// needs need bytes (header included) in all. It moves the unread bytes to the front when they
// are in the way, and grows the buffer only when it is full of unread bytes, by doubling
// (never beyond HeaderLen+maxBody): memory follows the bytes that actually arrived, not what a
// header claims. The caller guarantees r.end-r.start < need <= HeaderLen+maxBody.
func (r *Reader) makeRoom(need int) {
	if r.start > 0 && (r.end == len(r.buf) || len(r.buf)-r.start < need) {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if r.end < len(r.buf) {
		return
	}
	size := min(max(2*len(r.buf), r.size), HeaderLen+r.maxBody)
	nb := make([]byte, size)
	r.end = copy(nb, r.buf[r.start:r.end])
	r.start = 0
	r.buf = nb
}
