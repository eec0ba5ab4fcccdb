// Package netfault is a loopback UDP proxy that delays, drops and
// partitions datagrams, for fault tests of the QUIC client protocol (tc
// netem is not available to tests). A client dials the proxy's address
// instead of the server's; each client address gets its own upstream
// socket, so the server sees one peer per client.
package netfault

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Link is how the proxy treats datagrams, in each direction.
type Link struct {
	// Loss is the probability that a datagram is dropped.
	Loss float64
	// Delay is added to every datagram (one way); order is kept.
	Delay time.Duration
	// Down drops everything: a partition.
	Down bool
}

// Stats counts datagrams since the proxy started.
type Stats struct {
	Forwarded, Dropped int64
}

// Proxy forwards UDP datagrams between clients and one target address.
// Create it with New, change the link with Set, and stop it with Close,
// which waits for every goroutine it started.
type Proxy struct {
	conn   *net.UDPConn
	target *net.UDPAddr

	mu       sync.Mutex
	up, down Link // client to target, target to client
	rng      *rand.Rand
	sessions map[string]*session
	closed   bool

	forwarded, dropped atomic.Int64
	done               chan struct{}
	wg                 sync.WaitGroup
}

type session struct {
	up     *net.UDPConn // to the target
	client *net.UDPAddr
	toUp   chan packet
	toDown chan packet
}

type packet struct {
	at time.Time
	b  []byte
}

// queueLen bounds the datagrams in flight per session and direction;
// beyond it datagrams are dropped, as by a full router queue.
const queueLen = 4096

// New listens on listen (e.g. "127.0.0.1:0") and forwards to target.
// seed drives the loss decisions.
func New(listen, target string, seed uint64) (*Proxy, error) {
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	la, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, err
	}
	p := &Proxy{conn: conn, target: ta, rng: rand.New(rand.NewPCG(seed, 0x7e7)), sessions: map[string]*session{}, done: make(chan struct{})}
	p.wg.Go(p.readClients)
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.conn.LocalAddr().String() }

// Set changes the link, both ways, for every datagram from now on.
func (p *Proxy) Set(l Link) { p.SetEach(l, l) }

// SetEach changes the link one way at a time: up carries what clients
// send, down what the target answers. A link down one way only lets a
// client hear a reply yet never send another request.
func (p *Proxy) SetEach(up, down Link) {
	p.mu.Lock()
	p.up, p.down = up, down
	p.mu.Unlock()
}

// Stats returns the datagram counts.
func (p *Proxy) Stats() Stats {
	return Stats{Forwarded: p.forwarded.Load(), Dropped: p.dropped.Load()}
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	err := p.conn.Close()
	for _, s := range p.sessions {
		s.up.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// admit decides the fate of a datagram sent up (or down): its delivery
// time, or false to drop it.
func (p *Proxy) admit(up bool) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.down
	if up {
		l = p.up
	}
	if l.Down || (l.Loss > 0 && p.rng.Float64() < l.Loss) {
		p.dropped.Add(1)
		return time.Time{}, false
	}
	return time.Now().Add(l.Delay), true
}

func (p *Proxy) readClients() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s := p.session(from)
		if s == nil {
			return
		}
		p.enqueue(s.toUp, true, buf[:n])
	}
}

func (p *Proxy) enqueue(q chan packet, up bool, b []byte) {
	at, ok := p.admit(up)
	if !ok {
		return
	}
	select {
	case q <- packet{at: at, b: append([]byte(nil), b...)}:
	default:
		p.dropped.Add(1)
	}
}

// session returns the client's session, starting it on first use; nil
// once the proxy is closed.
func (p *Proxy) session(client *net.UDPAddr) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if s := p.sessions[client.String()]; s != nil {
		return s
	}
	up, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		return nil
	}
	s := &session{up: up, client: client, toUp: make(chan packet, queueLen), toDown: make(chan packet, queueLen)}
	p.sessions[client.String()] = s
	p.wg.Go(func() { p.deliver(s.toUp, func(b []byte) { up.Write(b) }) })
	p.wg.Go(func() { p.deliver(s.toDown, func(b []byte) { p.conn.WriteToUDP(b, client) }) })
	p.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. ICMP port unreachable while the target is down
			}
			p.enqueue(s.toDown, false, buf[:n])
		}
	})
	return s
}

// deliver sends each queued datagram at its time, in order.
func (p *Proxy) deliver(q chan packet, send func([]byte)) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case pkt := <-q:
			if d := time.Until(pkt.at); d > 0 {
				t.Reset(d)
				select {
				case <-p.done:
					return
				case <-t.C:
				}
			}
			send(pkt.b)
			p.forwarded.Add(1)
		}
	}
}
