package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hclogAdapter lets hashicorp/raft log through a *slog.Logger.
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{l: l, name: name}
}

func (h *hclogAdapter) log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	level, note := relevel(level, msg, args)
	if !h.l.Enabled(ctx, level) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+4)
	if h.name != "" {
		all = append(all, "component", h.name)
	}
	all = append(all, h.args...)
	for _, a := range args {
		all = append(all, hclogValue(a))
	}
	if note != "" {
		all = append(all, "note", note)
	}
	h.l.Log(ctx, level, msg, all...)
}

// hclogValue renders hclog's formatting wrappers as hclog would, so that
// hclog.Fmt("%0.2f%%", pct) logs "12.50%", not "[%0.2f%% 12.5]".
func hclogValue(a any) any {
	switch v := a.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return string(v)
	}
	return a
}

// relevel lowers Raft's ERROR lines for what happens in a healthy cluster
// and says why: a peer closing its connection as it stops, and a leader
// finding that a joining or lagging follower needs entries it has already
// compacted into a snapshot (it sends the snapshot instead).
//
// Likewise two WARN lines of every join and of a restarted follower
// catching up, which need no attention: the follower that lacks the
// leader's previous entry ("failed to get previous log", the entry not in
// its log yet) and the leader that answers by sending older entries.
func relevel(level slog.Level, msg string, args []any) (slog.Level, string) {
	if level == slog.LevelWarn && msg == "appendEntries rejected, sending older logs" {
		return slog.LevelInfo, "the follower is behind (joining or restarted): it gets the entries it lacks"
	}
	if level < slog.LevelWarn {
		return level, ""
	}
	var err error
	for i := 0; i+1 < len(args); i += 2 {
		if e, ok := args[i+1].(error); ok {
			err = e
		}
	}
	if err == nil {
		return level, ""
	}
	if level < slog.LevelError {
		if msg == "failed to get previous log" && errors.Is(err, raft.ErrLogNotFound) {
			return slog.LevelInfo, "this node is behind the leader (joining or restarted): the leader sends what it lacks"
		}
		return level, ""
	}
	switch {
	case msg == "failed to decode incoming command" && closedConn(err):
		return slog.LevelDebug, "the peer closed the connection"
	case msg == "failed to get log" && errors.Is(err, raft.ErrLogNotFound):
		return slog.LevelInfo, "the entry is compacted into a snapshot: a follower that needs it gets the snapshot"
	}
	return level, ""
}

// closedConn reports whether err is a connection closing under a read:
// the decoder does not always wrap the error, so its text is checked too.
func closedConn(err error) bool {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "use of closed network connection") || strings.Contains(s, "connection reset by peer")
}

func toSlog(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	h.log(toSlog(level), msg, args...)
}
func (h *hclogAdapter) Trace(msg string, args ...any) { h.log(slog.LevelDebug-4, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.log(slog.LevelDebug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.log(slog.LevelInfo, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.log(slog.LevelWarn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.log(slog.LevelError, msg, args...) }

func (h *hclogAdapter) enabled(l slog.Level) bool { return h.l.Enabled(context.Background(), l) }
func (h *hclogAdapter) IsTrace() bool             { return h.enabled(slog.LevelDebug - 4) }
func (h *hclogAdapter) IsDebug() bool             { return h.enabled(slog.LevelDebug) }
func (h *hclogAdapter) IsInfo() bool              { return h.enabled(slog.LevelInfo) }
func (h *hclogAdapter) IsWarn() bool              { return h.enabled(slog.LevelWarn) }
func (h *hclogAdapter) IsError() bool             { return h.enabled(slog.LevelError) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.args }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel is a no-op: the slog handler decides.
func (h *hclogAdapter) SetLevel(hclog.Level) {}

func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.Info(string(trimNewline(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
