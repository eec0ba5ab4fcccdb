//go:build !js

package client

import (
	"context"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// transportConn is a connection to a node: QUIC in native builds.
type transportConn = quic.Conn

// dial connects to a node's client address with the Dialer's TLS
// configuration.
func (d *Dialer) dial(ctx context.Context, addr string) (*transportConn, error) {
	return wire.Dial(ctx, addr, d.tls)
}

// exchangeOn runs one request on its own stream of conn.
func exchangeOn(ctx context.Context, conn *transportConn, req wire.Message, l wire.Limits, recv func(wire.Message) (bool, error)) error {
	return wire.Exchange(ctx, conn, req, l, recv)
}
