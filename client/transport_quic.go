//go:build !js

package client

import (
	"context"
	"fmt"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// transportConn is a connection to a node: QUIC in native builds.
type transportConn = quic.Conn

// Transport is one UDP socket that many Dialers share
// (DialerConfig.Transport): a process that plays many devices, such as a
// simulator's crowd, dials all their connections from it rather than
// holding a socket, its buffers and its reader per connection. Apps, one
// device each, need none. It is safe for concurrent use.
type Transport struct {
	t *wire.ClientTransport
}

// NewTransport opens a UDP socket on an ephemeral port. Close it after
// the Dialers that use it.
func NewTransport() (*Transport, error) {
	t, err := wire.NewClientTransport()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Transport{t}, nil
}

// Close closes the socket and every connection dialled over it.
func (t *Transport) Close() error { return t.t.Close() }

// dial connects to a node's client address with the Dialer's TLS
// configuration, over DialerConfig.Transport if set.
func (d *Dialer) dial(ctx context.Context, addr string) (*transportConn, error) {
	if t := d.cfg.Transport; t != nil {
		return t.t.Dial(ctx, addr, d.tls)
	}
	return wire.Dial(ctx, addr, d.tls)
}

// exchangeOn runs one request on its own stream of conn.
func exchangeOn(ctx context.Context, conn *transportConn, req wire.Message, l wire.Limits, recv func(wire.Message) (bool, error)) error {
	return wire.Exchange(ctx, conn, req, l, recv)
}
