package testenv

import (
	"os/exec"
	"syscall"
	"time"
)

// process is a program a test started (Dex, HAProxy): its combined output
// and its end.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer   // stdout and stderr combined
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result, set before done is closed
}

// startProcess starts cmd, writing its stdout and stderr to out.
func startProcess(cmd *exec.Cmd, out *syncBuffer) (*process, error) {
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process by its PID: SIGTERM, then SIGKILL after grace. It
// waits for the process and is safe to call more than once and from several
// goroutines.
func (p *process) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
