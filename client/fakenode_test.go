package client

import (
	"context"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Fake nodes for the SDK's network tests.

// serveConns runs perConn on each connection ln accepts and the handler it
// returns on each of that connection's streams, every stream in its own
// goroutine (a fake leader may hold a check-in) and closed after it. The
// returned channel is closed when ln is.
func serveConns(ln *wire.Listener, perConn func(*quic.Conn) func(*quic.Stream)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			handle := perConn(conn)
			go func() {
				for {
					st, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() {
						defer st.Close()
						handle(st)
					}()
				}
			}()
		}
	}()
	return done
}

// serveStreams is serveConns with one handler for every stream.
func serveStreams(ln *wire.Listener, handle func(*quic.Stream)) <-chan struct{} {
	return serveConns(ln, func(*quic.Conn) func(*quic.Stream) { return handle })
}

// fakePlan is a fake node's plan: round 1 on version 2 of m, whose digest
// it names, with timeLeftMs to go.
func fakePlan(m *model.Model, digest []byte, timeLeftMs int64) *wire.Plan {
	return &wire.Plan{Round: 1, Model: 2, Digest: digest, Kind: wire.KindOf(m.Kind), Items: m.Items, Rank: m.Rank,
		Train: wire.TrainParams{LR: 0.01, Reg: 0.1, Epochs: 1}, MinClients: 1, TimeLeftMs: timeLeftMs, Ticket: make([]byte, wire.TicketLen)}
}

// writeModel answers a GetModel with m as version 2; header, when set,
// replaces the digest its header announces.
func writeModel(st *quic.Stream, m *model.Model, header []byte) {
	h, chunks := wire.SplitModel(m, 2, 1)
	if header != nil {
		h.Digest = header
	}
	wire.Write(st, h)
	for _, c := range chunks {
		wire.Write(st, c)
	}
}
