package coordinator

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// raft's leadership transfer to a peer whose in-memory transport
		// is already gone waits out its RPC timeout after Shutdown.
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*InmemTransport).makeRPC"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*Raft).leaderLoop.func2"),
	)
}
