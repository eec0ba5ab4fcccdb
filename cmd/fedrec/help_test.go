package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// Asked for help, every command prints it and exits 0; a usage error
// exits 2.
func TestHelpExitsZero(t *testing.T) {
	bin := fedrecBinary(t)
	for name := range commands() {
		cmd := exec.CommandContext(t.Context(), bin, name, "--help")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(strings.ToLower(string(out)), "usage") {
			t.Errorf("fedrec %s --help = %v:\n%s", name, err, out)
		}
	}
	err := exec.CommandContext(t.Context(), bin, "status", "--no-such-flag").Run()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("fedrec status --no-such-flag = %v, want exit status 2", err)
	}
}
