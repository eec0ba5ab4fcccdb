//go:build !js

package wire

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// The client protocol over WebTransport (HTTP/3), for browsers: a session
// at WebTransportPath whose first stream carries Authenticate, then one
// request per bidirectional stream, framed as on QUIC. The same limits
// hold, and the QUIC settings are QUICConfig's but for what HTTP/3 needs.
const (
	// webTransportUniStreams are the unidirectional streams HTTP/3
	// opens (control, QPACK encoder and decoder); WebTransport's own
	// unidirectional streams are not used.
	webTransportUniStreams = 3
)

// WebTransportQUICConfig returns QUICConfig's settings for HTTP/3 with
// WebTransport: one more bidirectional stream (the session's CONNECT),
// HTTP/3's unidirectional streams, and the extensions WebTransport needs
// (datagrams, resets with partial delivery; datagrams are never read).
func WebTransportQUICConfig() *quic.Config {
	c := QUICConfig()
	c.MaxIncomingStreams = MaxStreams + 1
	c.MaxIncomingUniStreams = webTransportUniStreams
	c.EnableDatagrams = true
	c.EnableStreamResetPartialDelivery = true
	return c
}

// WebTransportTLSConfig returns a clone of base for HTTP/3: TLS 1.3 only,
// ALPN "h3". base is not modified.
func WebTransportTLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{http3.NextProtoH3}
	return c
}

// ListenWebTransport listens for HTTP/3 connections on a UDP address with
// WebTransportQUICConfig, WebTransportTLSConfig(tlsConf) and the
// connection limits lim. The caller serves each accepted connection's
// HTTP/3 (webtransport.Server.ServeQUICConn).
func ListenWebTransport(addr string, tlsConf *tls.Config, lim ConnLimits) (*Listener, error) {
	return listen(addr, WebTransportTLSConfig(tlsConf), WebTransportQUICConfig(), lim)
}

// DialWebTransport opens a WebTransport session to url
// ("https://host:port" + WebTransportPath) and authenticates it with
// token (see Authenticate). It is what a browser does, for native tools
// and tests. The session closes when ctx ends or the caller closes it.
func DialWebTransport(ctx context.Context, url string, tlsConf *tls.Config, token []byte) (*webtransport.Session, *Authenticated, error) {
	dctx, cancel := context.WithTimeout(ctx, 2*HandshakeTimeout)
	defer cancel()
	d := &webtransport.Transport{TLSClientConfig: WebTransportTLSConfig(tlsConf), QUICConfig: WebTransportQUICConfig()}
	rsp, sess, err := d.Dial(dctx, url, http.Header{})
	if err != nil {
		return nil, nil, err
	}
	if rsp.StatusCode != http.StatusOK {
		sess.CloseWithError(0, "")
		return nil, nil, fmt.Errorf("wire: WebTransport session refused: %s", rsp.Status)
	}
	var ok *Authenticated
	err = ExchangeSession(dctx, sess, &Authenticate{Version: Version, Token: token}, Limits{}, func(m Message) (bool, error) {
		a, isAuth := m.(*Authenticated)
		if !isAuth {
			return true, Errorf(CodeUnknownType, "unexpected %s after Authenticate", m.Type())
		}
		ok = a
		return true, nil
	})
	if err != nil {
		sess.CloseWithError(0, "")
		return nil, nil, err
	}
	return sess, ok, nil
}

// ExchangeSession runs one request on its own bidirectional stream of a
// WebTransport session, as ExchangeStream does, waiting at most
// StreamWait for the stream as Exchange does.
func ExchangeSession(ctx context.Context, sess *webtransport.Session, req Message, l Limits, recv func(Message) (done bool, err error)) error {
	st, err := OpenStream(ctx, sess.OpenStreamSync)
	if err != nil {
		return err
	}
	return ExchangeStream(ctx, &webTransportStream{st}, req, l, recv)
}

// webTransportStream is a WebTransport stream as a Stream.
type webTransportStream struct{ *webtransport.Stream }

func (s *webTransportStream) CancelRead() { s.Stream.CancelRead(0) }
func (s *webTransportStream) CancelWrite() {
	s.Stream.CancelWrite(webtransport.StreamErrorCode(streamCancelled))
}
