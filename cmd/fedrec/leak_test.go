package main

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test's goroutines end with it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
