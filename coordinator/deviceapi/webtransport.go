package deviceapi

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// The client protocol over WebTransport, for browsers (docs/security.md,
// "Browsers"). An HTTP/3 listener beside the QUIC one, with the same
// connection limits, serves WebTransport sessions at wire.WebTransportPath.
// A session's first stream must carry wire.Authenticate, the device's
// token; every later stream is one request, served by serveStream as on
// QUIC: the same limits, admission, memory budget and checks, the peer
// being the token's device.

// webTransportServer is a node's HTTP/3 listener and WebTransport server.
type webTransportServer struct {
	ln *wire.Listener
	wt *webtransport.Server
}

// quicConnKey keys a request's QUIC connection in its context.
type quicConnKey struct{}

// ListenWebTransport listens for HTTP/3 on addr and serves WebTransport
// sessions until Close.
func (s *Server) ListenWebTransport(addr string) (net.Addr, error) {
	s.startAuth()
	if s.auth.required() && len(s.auth.tokens()) == 0 {
		return nil, errors.New("coordinator: Config.WebTransportAddr needs device token keys (Config.TLS.TokenKeys, the certs directory's device-token.pem) when devices must authenticate")
	}
	// The node's certificate, the current one at each handshake (a
	// reload takes effect at the next session), unless a certificate of
	// its own serves browsers.
	tlsConf := &tls.Config{GetCertificate: s.certs.GetCertificate}
	if s.cfg.WebTransportCert != nil {
		tlsConf = &tls.Config{Certificates: []tls.Certificate{*s.cfg.WebTransportCert}}
	}
	ln, err := wire.ListenWebTransport(addr, tlsConf, wire.ConnLimits{MaxConns: s.maxConns()})
	if err != nil {
		return nil, err
	}
	ws := &webTransportServer{ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc(wire.WebTransportPath, func(w http.ResponseWriter, r *http.Request) {
		conn, _ := r.Context().Value(quicConnKey{}).(*quic.Conn)
		sess, err := ws.wt.Upgrade(w, r)
		if err != nil || conn == nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		s.wg.Add(1)
		defer s.wg.Done()
		s.serveSession(sess, conn)
	})
	ws.wt = &webtransport.Server{
		H3: &http3.Server{
			Handler:         mux,
			MaxHeaderBytes:  8 << 10,
			IdleTimeout:     wire.IdleTimeout,
			EnableDatagrams: true,
			ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
				return context.WithValue(ctx, quicConnKey{}, c)
			},
		},
		// A session carries no ambient credential (no cookie, no client
		// certificate): its device token is sent by the page itself, so
		// any origin (the shop's pages) may open one.
		CheckOrigin:       func(*http.Request) bool { return true },
		ReorderingTimeout: wire.HandshakeTimeout,
	}
	webtransport.ConfigureHTTP3Server(ws.wt.H3)
	s.wt = ws
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.waitStart() {
			return
		}
		for {
			conn, err := ln.Accept(s.ctx)
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				ws.wt.ServeQUICConn(conn)
			}()
		}
	}()
	return ln.Addr(), nil
}

func (s *webTransportServer) close() error {
	err := s.wt.Close()
	s.ln.Close()
	return err
}

// serveSession authenticates a session by its first stream, then serves
// its streams as serveConn does a QUIC connection's. While it is not
// authenticated, it holds one of the connection table's slots for
// unauthenticated peers, for at most anonLifetime.
func (s *Server) serveSession(sess *webtransport.Session, conn *quic.Conn) {
	defer s.metrics.Connected(conn)()
	defer sess.CloseWithError(0, "")
	stop := context.AfterFunc(s.ctx, func() { sess.CloseWithError(0, "shutting down") })
	defer stop()
	forget := func() {}
	if s.auth.required() {
		var ok bool
		if forget, ok = s.conns.admit(conn, Peer{}); !ok {
			conn.CloseWithError(connClosedBusy, "too many unauthenticated connections")
			return
		}
	}
	t := time.AfterFunc(anonLifetime, func() {
		sess.CloseWithError(webtransport.SessionErrorCode(connClosedAnon), "unauthenticated")
	})
	peer, err := s.authenticateSession(sess)
	t.Stop()
	forget()
	if err != nil {
		s.log.Debug("webtransport session refused", "remote", conn.RemoteAddr().String(), "err", err)
		// The refusal was written; let the device read it.
		select {
		case <-sess.Context().Done():
		case <-time.After(time.Second):
		}
		return
	}
	if s.auth.required() {
		forget, _ := s.conns.admit(conn, peer)
		defer forget()
	}
	serveStreams(s, sess.AcceptStream, func(st *webtransport.Stream) requestStream { return webTransportStream{st} }, peer)
}

// authenticateSession reads the session's first stream, which must carry
// Authenticate, and answers it: Authenticated with the peer it makes, or
// an Error (CodeUnauthenticated), which it also returns.
func (s *Server) authenticateSession(sess *webtransport.Session) (Peer, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RateGrace)
	defer cancel()
	st, err := sess.AcceptStream(ctx)
	if err != nil {
		return Peer{}, err
	}
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(s.cfg.RateGrace))
	peer, e := s.readAuthenticate(st)
	st.CancelRead(streamDone)
	st.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if e != nil {
		wire.Write(st, e)
		return Peer{}, e
	}
	return peer, wire.Write(st, &wire.Authenticated{Device: peer.Device, ExpiresMs: peer.tokenExpires.UnixMilli()})
}

// readAuthenticate reads a session's Authenticate and verifies its token.
func (s *Server) readAuthenticate(st *webtransport.Stream) (Peer, *wire.Error) {
	l := wire.Limits{Only: wire.Requests}
	t, size, err := wire.ReadHeader(st, l)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return Peer{}, wire.Errorf(wire.CodeUnauthenticated, "no device token within %v", s.cfg.RateGrace)
	case err != nil:
		return Peer{}, wire.Errorf(wire.CodeUnauthenticated, "no device token: %v", err)
	case t != wire.TypeAuthenticate:
		return Peer{}, wire.Errorf(wire.CodeUnauthenticated, "the first request of a WebTransport session must be Authenticate (a device token), not %s", t)
	}
	body, err := wire.ReadBody(st, t, size)
	if err != nil {
		return Peer{}, wire.Errorf(wire.CodeUnauthenticated, "device token: %v", err)
	}
	msg, err := wire.Decode(t, body)
	if err != nil {
		return Peer{}, wire.Errorf(wire.CodeUnauthenticated, "device token: %v", err)
	}
	return s.auth.token(msg.(*wire.Authenticate).Token, time.Now())
}

// token verifies a device token and returns the peer it makes. A node
// that does not authenticate devices (development) and has no token keys
// takes the token's device on its word.
func (a *auth) token(b []byte, now time.Time) (Peer, *wire.Error) {
	var c *wire.TokenClaims
	var err error
	if len(a.tokens()) == 0 && !a.required() {
		c, err = wire.ParseToken(b)
	} else {
		c, err = wire.VerifyToken(b, a.tokens(), now)
	}
	if err != nil {
		e := wire.AsError(err)
		e.Code = wire.CodeUnauthenticated
		return Peer{}, e
	}
	p := Peer{Device: c.Device, tokenExpires: c.Expires()}
	if a.required() {
		if e := a.check(p); e != nil {
			return Peer{}, e
		}
	}
	return p, nil
}

// webTransportStream is a stream of a WebTransport session.
type webTransportStream struct{ *webtransport.Stream }

func (s webTransportStream) CancelRead()  { s.Stream.CancelRead(streamDone) }
func (s webTransportStream) CancelWrite() { s.Stream.CancelWrite(streamDone) }
