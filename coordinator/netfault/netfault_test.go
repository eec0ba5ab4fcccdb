package netfault

import (
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo runs a UDP echo server until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			c.WriteToUDP(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().String()
}

func TestProxyDelayLossPartition(t *testing.T) {
	p, err := New("127.0.0.1:0", echo(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("udp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func() (time.Duration, bool) {
		start := time.Now()
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		return time.Since(start), err == nil && string(buf[:n]) == "ping"
	}
	if _, ok := roundTrip(); !ok {
		t.Fatal("no echo through a clean link")
	}
	p.Set(Link{Delay: 50 * time.Millisecond})
	if d, ok := roundTrip(); !ok || d < 100*time.Millisecond {
		t.Errorf("round trip with 50 ms each way = %v, %v; want ≥ 100 ms", d, ok)
	}
	p.Set(Link{Down: true})
	if _, ok := roundTrip(); ok {
		t.Error("an echo crossed a partition")
	}
	for _, tc := range []struct {
		name     string
		up, down Link
	}{
		{"client to target", Link{Down: true}, Link{}},
		{"target to client", Link{}, Link{Down: true}},
	} {
		p.SetEach(tc.up, tc.down)
		before := p.Stats().Dropped
		if _, ok := roundTrip(); ok {
			t.Errorf("an echo crossed a link down from %s", tc.name)
		}
		if got := p.Stats().Dropped - before; got != 1 {
			t.Errorf("link down from %s: %d datagrams dropped, want 1", tc.name, got)
		}
	}
	p.Set(Link{Loss: 0.5})
	got := 0
	const tries = 200
	for range tries {
		c.Write([]byte("ping"))
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 16)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		got++
	}
	// Each echo crosses the link twice: 25 % expected.
	if got < tries/8 || got > tries*3/8 {
		t.Errorf("%d of %d echoes through 50 %% loss each way, want about %d", got, tries, tries/4)
	}
	if s := p.Stats(); s.Dropped == 0 || s.Forwarded == 0 {
		t.Errorf("Stats() = %+v", s)
	}
}
