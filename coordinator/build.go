package coordinator

import (
	"runtime"
	"runtime/debug"
)

// Build describes the running binary, from the build information the Go
// toolchain embeds: enough to check an upgrade node by node.
type Build struct {
	// Version is the main module's version: a release tag for a binary
	// built with 'go install module@version', "(devel)" for one built
	// from a work tree.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from ("" if
	// unknown), Modified whether the work tree had changes, Time the
	// commit's time.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Time     string `json:"time,omitempty"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// BuildInfo returns the running binary's Build.
func BuildInfo() Build {
	b := Build{Version: "(unknown)", GoVersion: runtime.Version()}
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

// String is the version as one line: "v1.2.0 (abc123…, go1.26.0)".
func (b Build) String() string {
	s := b.Version + " ("
	if b.Revision != "" {
		s += b.Revision
		if b.Modified {
			s += "+modified"
		}
		s += ", "
	}
	return s + b.GoVersion + ")"
}
