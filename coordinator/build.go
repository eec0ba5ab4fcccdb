package coordinator

import (
	"runtime"
	"runtime/debug"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// BuildInfo returns the running binary's wire.Build.
func BuildInfo() wire.Build {
	b := wire.Build{Version: "(unknown)", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		case "vcs.time":
			b.Time = s.Value
		}
	}
	return b
}
