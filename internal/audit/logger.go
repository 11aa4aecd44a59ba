package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for [Options].
const (
	// DefaultFlushInterval is how often buffered records are written at least.
	DefaultFlushInterval = 200 * time.Millisecond
	// DefaultCheckInterval is how often a file sink checks whether its path
	// was moved or removed.
	DefaultCheckInterval = time.Second
)

const (
	// flushThreshold wakes the writer early once this many bytes are pending,
	// so a burst is written in large chunks without waiting for the ticker.
	flushThreshold = 64 << 10
	// maxBacklog is how many unwritten bytes (about 10,000 records) make the
	// sink count as failing, so that Handler refuses new requests.
	maxBacklog = 4 << 20
	// maxKeptBuffer caps the buffer capacity kept for reuse after a burst.
	maxKeptBuffer = 1 << 20
	// fileMode is the permission of a newly created audit file.
	fileMode = 0o640
)

// Options configures a [Logger].
type Options struct {
	// Output is where records go: "stdout", "stderr", or an absolute file
	// path. A file is opened with O_APPEND|O_CREATE and mode 0640 (before the
	// umask); its parent directory must exist. Required.
	Output string

	// FlushInterval is the longest a record stays buffered in memory before
	// it is written. The default is DefaultFlushInterval (200ms). Records
	// still buffered are lost only if the process is killed without running
	// Close (SIGKILL, OOM kill, power loss).
	FlushInterval time.Duration

	// CheckInterval is how often a file sink compares the file at Output
	// with the one it has open (os.SameFile) and reopens Output when the file
	// was moved or removed, so rotation needs no signal. The default is
	// DefaultCheckInterval (1s). Unused for stdout and stderr.
	CheckInterval time.Duration

	// Stdout and Stderr replace os.Stdout and os.Stderr, for tests.
	Stdout, Stderr io.Writer

	// Log is the operator log, for sink errors and handler panics. It never
	// receives record contents. The default discards.
	Log *slog.Logger

	// OnEmit, if set, is called once per record, before the record is
	// encoded, in the goroutine that called Emit. It is the metrics hook; it
	// must not keep the *Record after it returns.
	OnEmit func(*Record)
}

// Logger writes records as JSON lines to one sink. It is safe for concurrent
// use.
//
// Emit never drops a record and never waits for the disk. It encodes the
// record and appends it to an in-memory buffer; a background goroutine writes
// the buffer at least every FlushInterval, and sooner after a burst. When the
// sink fails (a write error) or falls behind by more than about 4 MiB,
// [Logger.Err] reports it and [Handler] refuses new requests with 503 (reason
// "audit-unavailable") until the sink catches up: gatehouse fails closed
// rather than serve requests it cannot audit, and memory grows only by the
// small records of refused requests. Unwritten records are retried at every
// flush.
type Logger struct {
	path          string // file path; "" for stdout and stderr
	log           *slog.Logger
	onEmit        func(*Record)
	flushInterval time.Duration
	checkInterval time.Duration
	kick          chan struct{} // wakes the writer early; capacity 1
	done          chan struct{} // closed by Close to stop the writer
	wg            sync.WaitGroup

	mu      sync.Mutex // guards pending and closed
	pending []byte     // encoded records waiting for the writer
	closed  bool       // Close has taken the last pending bytes

	// fmu guards the fields below it and is held across every write, so
	// writes, rotation and Close never interleave.
	fmu        sync.Mutex
	w          io.Writer // the sink: f, or stdout/stderr; nil after Close for a file
	f          *os.File  // the open file of a file sink; nil otherwise and after Close
	out        []byte    // bytes taken from pending and not yet written
	writeErr   error     // the last write's error; nil after a success
	reopenErr  error     // the last automatic reopen's error, to log only changes
	backlogged bool      // unwritten bytes exceeded maxBacklog at the last write

	// The health fields are atomic so that Err and Handler never wait for a
	// write in progress, which holds fmu.
	unhealthy   atomic.Bool           // writeErr != nil || backlogged || backlogFlag; read per request by Handler
	backlogFlag atomic.Bool           // set by Emit when pending exceeds maxBacklog between writes
	lastErr     atomic.Pointer[error] // a copy of writeErr for Err

	closeOnce sync.Once
	closeErr  error // the result of Close, set once
}

// encPool holds scratch buffers for encoding a record outside the lock.
var encPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// New validates opts, opens the sink and starts the background writer. Call
// [Logger.Close] to flush and stop it.
func New(opts Options) (*Logger, error) {
	l := &Logger{
		log:           opts.Log,
		onEmit:        opts.OnEmit,
		flushInterval: opts.FlushInterval,
		checkInterval: opts.CheckInterval,
		kick:          make(chan struct{}, 1),
		done:          make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.flushInterval < 0 {
		return nil, fmt.Errorf("audit: flush interval %v is negative", l.flushInterval)
	}
	if l.flushInterval == 0 {
		l.flushInterval = DefaultFlushInterval
	}
	if l.checkInterval < 0 {
		return nil, fmt.Errorf("audit: check interval %v is negative", l.checkInterval)
	}
	if l.checkInterval == 0 {
		l.checkInterval = DefaultCheckInterval
	}
	switch opts.Output {
	case "stdout":
		l.w = opts.Stdout
		if l.w == nil {
			l.w = os.Stdout
		}
	case "stderr":
		l.w = opts.Stderr
		if l.w == nil {
			l.w = os.Stderr
		}
	case "":
		return nil, errors.New(`audit: output is required ("stdout", "stderr" or an absolute file path)`)
	default:
		if !filepath.IsAbs(opts.Output) {
			return nil, fmt.Errorf(`audit: output %q is not "stdout", "stderr" or an absolute file path`, opts.Output)
		}
		dir := filepath.Dir(opts.Output)
		if fi, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("audit: output directory %s: %w", dir, pathErrCause(err))
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("audit: output directory %s is not a directory", dir)
		}
		f, err := openFile(opts.Output)
		if err != nil {
			return nil, err
		}
		l.path, l.f, l.w = opts.Output, f, f
	}
	l.wg.Add(1)
	go l.run()
	return l, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("audit: opening %s: %w", path, pathErrCause(err))
	}
	return f, nil
}

// pathErrCause strips the *fs.PathError wrapper, whose message repeats the
// path the caller already names.
func pathErrCause(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// Emit encodes r and queues it for writing. It calls Options.OnEmit first. r
// may be reused once Emit returns. Emit never blocks on the sink; see
// [Logger] for what happens when the sink fails. A record emitted after
// [Logger.Close] is written synchronously (a file sink is reopened for it), so
// that records of requests still running at shutdown, such as hijacked
// WebSocket connections, which http.Server.Shutdown does not wait for, are
// not lost.
func (l *Logger) Emit(r *Record) {
	if r == nil {
		return
	}
	if l.onEmit != nil {
		l.onEmit(r)
	}
	bp := encPool.Get().(*[]byte)
	buf := append(r.AppendJSON((*bp)[:0]), '\n')

	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.pending = append(l.pending, buf...)
	}
	n := len(l.pending)
	l.mu.Unlock()

	if closed {
		l.writeLate(buf)
	}
	if cap(buf) <= flushThreshold {
		*bp = buf
		encPool.Put(bp)
	}
	if closed {
		return
	}
	if n >= flushThreshold {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	if n >= maxBacklog && !l.backlogFlag.Load() {
		l.backlogFlag.Store(true)
		l.unhealthy.Store(true)
	}
}

// Err returns nil while the sink is healthy. Otherwise it describes why
// records are not being written: the last write error, or a backlog of
// unwritten records. While Err is non-nil, [Handler] refuses requests with 503.
// A readiness check should report it, so that HAProxy stops sending traffic.
func (l *Logger) Err() error {
	if !l.unhealthy.Load() {
		return nil
	}
	if p := l.lastErr.Load(); p != nil {
		return fmt.Errorf("audit: writing records: %w", *p)
	}
	return errors.New("audit: sink is more than 4 MiB behind")
}

// Reopen closes and reopens a file sink at Output, after writing the buffered
// records to the old file. Call it on SIGHUP, after logrotate has moved the
// file away; without it the file is reopened within CheckInterval anyway. On
// error the old file stays in use. For stdout and stderr it does nothing.
func (l *Logger) Reopen() error {
	if l.path == "" {
		return nil
	}
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if l.f == nil {
		return errors.New("audit: Reopen after Close")
	}
	return l.reopenLocked()
}

// Close writes all buffered records, stops the background writer and closes
// a file sink. It returns the first error from the final write or close.
// Close waits for a write in progress, so on a hung sink (a stuck NFS mount)
// it hangs too; bound it with the shutdown deadline. Close is idempotent; see
// [Logger.Emit] for records emitted after it.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.wg.Wait()
		l.fmu.Lock()
		defer l.fmu.Unlock()
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.closeErr = l.flushLocked()
		if l.f != nil {
			if err := l.f.Close(); err != nil && l.closeErr == nil {
				l.closeErr = fmt.Errorf("audit: closing %s: %w", l.path, err)
			}
			l.f, l.w = nil, nil
		}
	})
	return l.closeErr
}

// run is the background writer.
func (l *Logger) run() {
	defer l.wg.Done()
	flush := time.NewTicker(l.flushInterval)
	defer flush.Stop()
	var check <-chan time.Time
	if l.path != "" {
		t := time.NewTicker(l.checkInterval)
		defer t.Stop()
		check = t.C
	}
	for {
		select {
		case <-l.done:
			return
		case <-flush.C:
			l.flush()
		case <-l.kick:
			l.flush()
		case <-check:
			l.checkMoved()
		}
	}
}

func (l *Logger) flush() {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	_ = l.flushLocked() // errors are recorded in writeErr and logged
}

// flushLocked writes everything pending. l.fmu must be held. Bytes that could
// not be written stay in l.out and are retried first next time, so records
// keep their order and none is lost or repeated.
func (l *Logger) flushLocked() error {
	l.mu.Lock()
	if len(l.out) == 0 {
		l.out, l.pending = l.pending, l.out[:0]
	} else if len(l.pending) > 0 {
		l.out = append(l.out, l.pending...)
		l.pending = l.pending[:0]
	}
	l.mu.Unlock()
	if len(l.out) == 0 {
		l.updateHealth(nil)
		return nil
	}
	var err error
	if l.w == nil {
		err = errors.New("sink is closed")
	} else {
		var n int
		n, err = l.w.Write(l.out)
		if err == nil && n < len(l.out) {
			err = io.ErrShortWrite
		}
		l.out = l.out[:copy(l.out, l.out[n:])]
	}
	if len(l.out) == 0 && cap(l.out) > maxKeptBuffer {
		l.out = nil
	}
	l.updateHealth(err)
	return err
}

// updateHealth records the outcome of a write. l.fmu must be held.
func (l *Logger) updateHealth(err error) {
	if err != nil && l.writeErr == nil {
		l.log.Error("audit sink write failed; refusing requests until it recovers", "output", l.output(), "err", err)
	} else if err == nil && l.writeErr != nil {
		l.log.Info("audit sink recovered", "output", l.output())
	}
	l.writeErr = err
	if err != nil {
		l.lastErr.Store(&err)
	} else {
		l.lastErr.Store(nil)
	}

	l.mu.Lock()
	backlog := len(l.out) + len(l.pending)
	if cap(l.pending) > maxKeptBuffer && len(l.pending) == 0 {
		l.pending = nil
	}
	l.mu.Unlock()
	backlogged := backlog >= maxBacklog
	if backlogged != l.backlogged {
		if backlogged {
			l.log.Error("audit sink is falling behind; refusing requests until it catches up", "output", l.output(), "backlog_bytes", backlog)
		} else {
			l.log.Info("audit sink caught up", "output", l.output())
		}
	}
	l.backlogged = backlogged
	if !backlogged {
		l.backlogFlag.Store(false)
	}
	l.unhealthy.Store(l.writeErr != nil || l.backlogged || l.backlogFlag.Load())
}

func (l *Logger) output() string {
	if l.path == "" {
		return "standard stream"
	}
	return l.path
}

// checkMoved reopens a file sink whose path no longer names the open file.
func (l *Logger) checkMoved() {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if l.f == nil {
		return
	}
	cur, err := os.Stat(l.path)
	if err == nil {
		open, ferr := l.f.Stat()
		if ferr == nil && os.SameFile(cur, open) {
			l.reopenErr = nil
			return
		}
	}
	err = l.reopenLocked()
	if err != nil && l.reopenErr == nil {
		l.log.Error("audit file was moved or removed and cannot be reopened; still writing to the old file", "output", l.path, "err", err)
	}
	l.reopenErr = err
}

// reopenLocked writes what is buffered to the old file, then switches to a
// newly opened file at l.path. l.fmu must be held and l.f open.
func (l *Logger) reopenLocked() error {
	_ = l.flushLocked() // on error the bytes stay buffered for the new file
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	old := l.f
	l.f, l.w = f, f
	if err := old.Close(); err != nil {
		l.log.Warn("closing rotated audit file", "output", l.path, "err", err)
	}
	return nil
}

// writeLate writes one record emitted after Close.
func (l *Logger) writeLate(buf []byte) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	w := l.w
	if l.path != "" {
		f, err := openFile(l.path)
		if err != nil {
			l.log.Error("audit record emitted after Close could not be written", "err", err)
			return
		}
		defer f.Close()
		w = f
	}
	if _, err := w.Write(buf); err != nil {
		l.log.Error("audit record emitted after Close could not be written", "err", err)
	}
}
