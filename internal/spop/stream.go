package spop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Reader reads frames from a connection. It is not safe for concurrent
// use; an agent reads each connection from one goroutine.
type Reader struct {
	r   io.Reader
	max int // frame size limit, without the 4-byte length
	hdr [4]byte
	buf []byte // frame body; never longer than max
}

// NewReader returns a Reader that refuses frames longer than maxFrameSize
// bytes (not counting the 4-byte length). Before the handshake use the
// agent's own limit; after it, SetMaxFrameSize with the negotiated one.
// A maxFrameSize below MinFrameSize means MinFrameSize.
func NewReader(r io.Reader, maxFrameSize int) *Reader {
	return &Reader{r: r, max: max(maxFrameSize, MinFrameSize)}
}

// SetMaxFrameSize changes the frame size limit, as NewReader describes.
func (r *Reader) SetMaxFrameSize(n int) { r.max = max(n, MinFrameSize) }

// ReadFrame reads the next frame into f, which it reuses as DecodeFrame
// does; f's names and STRING/BINARY values alias the Reader's buffer until
// the next ReadFrame.
//
// It returns io.EOF when the connection ends cleanly between frames, an
// error wrapping ErrTruncated and io.ErrUnexpectedEOF when it ends inside
// one, and ErrFrameTooBig (without reading the frame) when the announced
// length exceeds the limit. The buffer grows to the announced length only,
// so it never exceeds the limit whatever the peer claims. After an error
// the stream is out of step: send AGENT-DISCONNECT with StatusOf(err) and
// close.
func (r *Reader) ReadFrame(f *Frame) error {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("reading frame length: %w: %w", ErrTruncated, err)
		}
		return err // io.EOF: a clean close between frames
	}
	n := int64(binary.BigEndian.Uint32(r.hdr[:]))
	if n > int64(r.max) {
		return fmt.Errorf("reading frame of %d bytes (max-frame-size %d): %w", n, r.max, ErrFrameTooBig)
	}
	if n < minFrameLen {
		return fmt.Errorf("reading frame of %d bytes: %w", n, ErrTruncated)
	}
	if int64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	body := r.buf[:n]
	if _, err := io.ReadFull(r.r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading frame of %d bytes: %w: %w", n, ErrTruncated, err)
	}
	return decodeBody(body, f)
}

// Writer writes frames to a connection. WriteFrame is safe for concurrent
// use, so pipelined handlers can each write their ACK; each frame goes out in
// one Write call.
type Writer struct {
	mu  sync.Mutex // guards everything below
	w   io.Writer
	max int
	buf []byte
	err error // the first Write error; sticky
}

// NewWriter returns a Writer that refuses to send frames longer than
// maxFrameSize bytes (not counting the 4-byte length). Use the negotiated
// max-frame-size: HAProxy closes the connection on a longer frame. A
// maxFrameSize below MinFrameSize means MinFrameSize.
func NewWriter(w io.Writer, maxFrameSize int) *Writer {
	return &Writer{w: w, max: max(maxFrameSize, MinFrameSize)}
}

// SetMaxFrameSize changes the frame size limit, as NewWriter describes.
func (w *Writer) SetMaxFrameSize(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.max = max(n, MinFrameSize)
}

// WriteFrame encodes f, with FlagFIN set, and writes it. A frame longer
// than the limit is not written and returns ErrFrameTooBig: for an ACK,
// send a smaller one (HAProxy treats a missing ACK as a failed verdict).
// After the first Write error every call fails, since a partly written frame
// leaves the stream out of step.
func (w *Writer) WriteFrame(f *Frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return fmt.Errorf("writing %v after an earlier error: %w", f.Type, w.err)
	}
	b, err := AppendFrame(w.buf[:0], f)
	if err != nil {
		return err
	}
	if cap(b) <= w.max+4 {
		w.buf = b // keep the buffer for the next frame, but never an oversized one
	}
	if n := len(b) - 4; n > w.max {
		return fmt.Errorf("writing %v of %d bytes (max-frame-size %d): %w", f.Type, n, w.max, ErrFrameTooBig)
	}
	if _, err := w.w.Write(b); err != nil {
		w.err = err
		return fmt.Errorf("writing %v: %w", f.Type, err)
	}
	return nil
}
