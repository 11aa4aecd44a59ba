package spop

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
)

// Status is an SPOP status code, carried by the status-code entry of
// HAPROXY-DISCONNECT and AGENT-DISCONNECT frames (SPOE.txt §3.2.8). Agents may
// define their own codes in the unassigned range.
type Status uint32

// The status codes HAProxy defines. HAProxy's option set-on-error reports an
// SPOP error N as 256+N in txn.<prefix>.err.
const (
	StatusNormal             Status = 0  // normal close
	StatusIO                 Status = 1  // I/O error
	StatusTimeout            Status = 2  // a timeout occurred
	StatusFrameTooBig        Status = 3  // frame is too big
	StatusInvalidFrame       Status = 4  // invalid frame received
	StatusNoVersion          Status = 5  // version value not found
	StatusNoMaxFrameSize     Status = 6  // max-frame-size value not found
	StatusNoCapabilities     Status = 7  // capabilities value not found
	StatusBadVersion         Status = 8  // unsupported version
	StatusBadMaxFrameSize    Status = 9  // max-frame-size too big or too small
	StatusFragmentation      Status = 10 // payload fragmentation is not supported
	StatusInterlacedFrames   Status = 11 // invalid interlaced frames
	StatusFrameIDNotFound    Status = 12 // frame-id not found
	StatusResourceAllocation Status = 13 // resource allocation error
	StatusUnknown            Status = 99 // an unknown error occurred
)

// statusText holds HAProxy's messages for its status codes (spoe_frm_err_reasons).
var statusText = map[Status]string{
	StatusNormal:             "normal",
	StatusIO:                 "I/O error",
	StatusTimeout:            "a timeout occurred",
	StatusFrameTooBig:        "frame is too big",
	StatusInvalidFrame:       "invalid frame received",
	StatusNoVersion:          "version value not found",
	StatusNoMaxFrameSize:     "max-frame-size value not found",
	StatusNoCapabilities:     "capabilities value not found",
	StatusBadVersion:         "unsupported version",
	StatusBadMaxFrameSize:    "max-frame-size too big or too small",
	StatusFragmentation:      "payload fragmentation is not supported",
	StatusInterlacedFrames:   "invalid interlaced frames",
	StatusFrameIDNotFound:    "frame-id not found",
	StatusResourceAllocation: "resource allocation error",
	StatusUnknown:            "an unknown error occurred",
}

// String returns HAProxy's description of s, or "status N" for a code
// HAProxy does not define.
func (s Status) String() string {
	if t, ok := statusText[s]; ok {
		return t
	}
	return "status " + strconv.FormatUint(uint64(s), 10)
}

// Error is a protocol error. Status is the code the agent reports in its
// AGENT-DISCONNECT before closing the connection. The package's sentinel
// errors are *Error values; functions wrap them with context, so test with
// errors.Is and read the status with StatusOf.
type Error struct {
	Status Status
	msg    string
}

func (e *Error) Error() string { return "spop: " + e.msg }

// Decoding errors. All but ErrFrameTooBig and ErrFragmented carry
// StatusInvalidFrame.
var (
	// ErrFrameTooBig reports a frame longer than the negotiated max-frame-size.
	ErrFrameTooBig = &Error{StatusFrameTooBig, "frame too big"}
	// ErrTruncated reports a frame, or an element inside it, that ends early.
	ErrTruncated = &Error{StatusInvalidFrame, "truncated frame"}
	// ErrTrailingBytes reports bytes after the end a frame's length announces.
	ErrTrailingBytes = &Error{StatusInvalidFrame, "trailing bytes after frame"}
	// ErrBadVarint reports a varint longer than 10 bytes or above 2^64-1.
	ErrBadVarint = &Error{StatusInvalidFrame, "invalid varint"}
	// ErrFrameType reports a frame type this package does not know, including
	// type 0 (UNSET), which only fragment continuations used.
	ErrFrameType = &Error{StatusInvalidFrame, "unknown frame type"}
	// ErrDataType reports a reserved typed-data type (10-15).
	ErrDataType = &Error{StatusInvalidFrame, "unknown data type"}
	// ErrAction reports an unknown action type, a wrong argument count or an
	// unknown variable scope in an ACK.
	ErrAction = &Error{StatusInvalidFrame, "invalid action"}
	// ErrTooManyItems reports a frame with more than MaxItems list entries.
	ErrTooManyItems = &Error{StatusInvalidFrame, "too many list entries"}
	// ErrFragmented reports a frame without the FIN flag. SPOP 2.0 as spoken
	// by HAProxy 3.1+ has no fragmentation, and gatehouse never announces it.
	ErrFragmented = &Error{StatusFragmentation, "fragmented frame (FIN not set)"}
	// ErrInvalid reports a Frame or Value that cannot be encoded.
	ErrInvalid = &Error{StatusInvalidFrame, "invalid frame for encoding"}
)

// Handshake errors, from ParseHello and Negotiate.
var (
	// ErrUnexpectedFrame reports a frame other than HAPROXY-HELLO where a
	// HELLO was expected.
	ErrUnexpectedFrame = &Error{StatusInvalidFrame, "unexpected frame type"}
	// ErrNoVersion reports a HELLO without supported-versions.
	ErrNoVersion = &Error{StatusNoVersion, "supported-versions not found"}
	// ErrNoMaxFrameSize reports a HELLO without max-frame-size.
	ErrNoMaxFrameSize = &Error{StatusNoMaxFrameSize, "max-frame-size not found"}
	// ErrNoCapabilities reports a HELLO without capabilities.
	ErrNoCapabilities = &Error{StatusNoCapabilities, "capabilities not found"}
	// ErrBadVersion reports a HELLO that offers no 2.x version.
	ErrBadVersion = &Error{StatusBadVersion, "unsupported version"}
	// ErrBadMaxFrameSize reports a max-frame-size below MinFrameSize or not
	// an integer.
	ErrBadMaxFrameSize = &Error{StatusBadMaxFrameSize, "max-frame-size too big or too small"}
)

// StatusOf returns the status code an agent should report for err: the
// Status of an *Error in its chain, StatusTimeout for deadline errors,
// StatusIO for other I/O errors and StatusNormal for nil or io.EOF (HAProxy
// 3.x closes idle pooled connections without a DISCONNECT).
func StatusOf(err error) Status {
	var e *Error
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return StatusNormal
	case errors.As(err, &e):
		return e.Status
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return StatusTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		return StatusIO
	}
	return StatusUnknown
}
