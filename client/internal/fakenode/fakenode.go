//go:build !js

// The fake nodes are QUIC listeners (coordinator/wire's, native only): the
// tests that use them do not build for js/wasm.

package fakenode

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// ServeConns runs perConn on each connection ln accepts and the handler it
// returns on each of that connection's streams, every stream in its own
// goroutine (a fake leader may hold a check-in) and closed after it. The
// returned channel is closed when ln is.
func ServeConns(ln *wire.Listener, perConn func(*quic.Conn) func(*quic.Stream)) <-chan struct{} {
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

// ServeStreams is ServeConns with one handler for every stream.
func ServeStreams(ln *wire.Listener, handle func(*quic.Stream)) <-chan struct{} {
	return ServeConns(ln, func(*quic.Conn) func(*quic.Stream) { return handle })
}

// Answering starts a fake node, with a certificate of ca, that answers
// every request with reply; it returns its address and the count of the
// requests it read. It stops when t's test ends.
func Answering(t testing.TB, ca *pki.CA, reply func(wire.Message) wire.Message) (string, *atomic.Int32) {
	t.Helper()
	b, err := ca.NodeBundle("fake")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	done := ServeStreams(ln, func(st *quic.Stream) {
		if req, err := wire.Read(st, wire.Limits{}); err == nil {
			hits.Add(1)
			wire.Write(st, reply(req))
		}
	})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), &hits
}

// Plan is a fake node's plan: round 1 on version 2 of m, whose digest it
// names, with timeLeftMs to go.
func Plan(m *model.Model, digest []byte, timeLeftMs int64) *wire.Plan {
	return &wire.Plan{Round: 1, Model: 2, Digest: digest, Kind: wire.KindOf(m.Kind), Items: m.Items, Rank: m.Rank,
		Train: wire.TrainParams{LR: 0.01, Reg: 0.1, Epochs: 1}, MinClients: 1, TimeLeftMs: timeLeftMs, Ticket: make([]byte, wire.TicketLen)}
}

// WriteModel answers a GetModel with m as version 2; header, when set,
// replaces the digest its header announces.
func WriteModel(st *quic.Stream, m *model.Model, header []byte) {
	h, chunks := wire.SplitModel(m, 2, 1)
	if header != nil {
		h.Digest = header
	}
	wire.Write(st, h)
	for _, c := range chunks {
		wire.Write(st, c)
	}
}

// RoundFull is a fake node that selects every device for plan's round and
// then turns its download away, as a node whose part of the round has all
// the uploads it wants does: CodeNoRound, check in again in 700 ms. A
// download for no round or another one is refused (CodeUnknownModel).
// It counts the uploads it acknowledges.
func RoundFull(t testing.TB, ca *pki.CA, plan *wire.Plan) (string, *atomic.Int32) {
	t.Helper()
	var uploads atomic.Int32
	addr, _ := Answering(t, ca, func(req wire.Message) wire.Message {
		switch req := req.(type) {
		case *wire.CheckIn:
			return plan
		case *wire.GetModel:
			if req.Round != plan.Round {
				return &wire.Error{Code: wire.CodeUnknownModel, Message: "downloads for the plan's round only"}
			}
			return &wire.Error{Code: wire.CodeNoRound, Message: "the round has every upload it wants", RetryAfterMs: 700}
		}
		uploads.Add(1)
		return &wire.UploadAck{Round: plan.Round}
	})
	return addr, &uploads
}
