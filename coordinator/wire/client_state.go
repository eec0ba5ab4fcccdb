package wire

import (
	"bytes"
	"fmt"
	"math"
	"unicode/utf8"
)

// Records a device keeps between process starts. They are not messages:
// no peer ever sends them. Each is a file-type header (ClientFileMagic, a
// record type, a format version) followed by one msgpack map, so that a
// later SDK can append fields (unknown keys are skipped) and still read
// what an older one wrote.

// ClientFileMagic opens every record of this file.
var ClientFileMagic = [4]byte{'F', 'R', 'C', 'S'}

// Record types of a device's files. Values start at 1 and are only ever
// appended.
const (
	// RecDialerState is a ClientState.
	RecDialerState byte = 1
	// RecStoreAnchor is a StoreAnchor.
	RecStoreAnchor byte = 2
)

// ClientFileVersion is the format version of the records below.
const ClientFileVersion = 1

// clientFileHeaderLen: magic, record type, version.
const clientFileHeaderLen = len(ClientFileMagic) + 2

// Limits of a device's records.
const (
	// MaxStateAddrs bounds the addresses a ClientState remembers.
	MaxStateAddrs = 64
	// MaxAddrLen bounds one address ("host:port").
	MaxAddrLen = 255
	// MaxClientFile bounds the size of a record file.
	MaxClientFile = 64 << 10
	// StoreIDLen is the length of a store's random ID.
	StoreIDLen = 16
)

// ClientState is what a device's Dialer remembers about the cluster's
// addresses between process starts (a file in the device's directory), so
// that a job that starts again after the OS killed the app goes first to
// the address that answered last and leaves the ones that failed for last.
type ClientState struct {
	// Preferred is the address that answered last (or the leader a node
	// named), "" if none.
	Preferred string `msgpack:"preferred"`
	// Addrs holds the addresses that failed since they last answered.
	Addrs []AddrState `msgpack:"addrs"`
}

// AddrState is one address's record of failures.
type AddrState struct {
	Addr string `msgpack:"addr"`
	// Failures counts the connection attempts that failed since the
	// address last answered.
	Failures uint32 `msgpack:"failures"`
	// RetryAtMs is when (Unix milliseconds) the address may be tried
	// before the others again.
	RetryAtMs int64 `msgpack:"retry_at_ms"`
}

// Validate checks the shape of s.
func (s *ClientState) Validate() error {
	if err := checkAddr(s.Preferred, true); err != nil {
		return err
	}
	if len(s.Addrs) > MaxStateAddrs {
		return Errorf(CodeMalformed, "dialer state: %d addresses, at most %d", len(s.Addrs), MaxStateAddrs)
	}
	for _, a := range s.Addrs {
		if err := checkAddr(a.Addr, false); err != nil {
			return err
		}
		if a.RetryAtMs < 0 {
			return Errorf(CodeMalformed, "dialer state: retry time %d", a.RetryAtMs)
		}
	}
	return nil
}

func checkAddr(a string, empty bool) error {
	if (a == "" && !empty) || len(a) > MaxAddrLen || !utf8.ValidString(a) {
		return Errorf(CodeMalformed, "dialer state: address of %d bytes, want 1..%d of UTF-8", len(a), MaxAddrLen)
	}
	return nil
}

// EncodeClientState encodes s as a file's bytes.
func EncodeClientState(s *ClientState) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return encodeClientFile(RecDialerState, s)
}

// DecodeClientState decodes and validates a file written by
// EncodeClientState.
func DecodeClientState(b []byte) (*ClientState, error) {
	s := new(ClientState)
	if err := decodeClientFile(b, RecDialerState, s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// StoreAnchor is what a device's store keeps outside its directory, in a
// place the app provides that an OS backup does not restore with the
// directory (an Android Keystore-backed preference excluded from backup,
// an iOS Keychain item "ThisDeviceOnly"): the store's ID and how far it
// has come, so that a directory restored from an older copy, or emptied,
// is recognised, and the privacy the device has spent, so that it is
// never given back.
type StoreAnchor struct {
	// StoreID is the ID of the store in the directory; all zero when
	// there is none yet (a new install, or after the user deleted their
	// data or the app reset the store).
	StoreID []byte `msgpack:"store"`
	// Generation is the store's snapshot generation at least.
	Generation uint64 `msgpack:"gen"`
	// Charges counts the rounds the store's ledger has charged, at least.
	Charges uint64 `msgpack:"charges"`
	// Epsilon is the privacy the device has spent, at the policy's δ,
	// including Carried.
	Epsilon float64 `msgpack:"eps"`
	// Carried is the privacy spent by stores that were lost (a reset
	// after a rollback or a removal): the ledger starts from it.
	Carried float64 `msgpack:"carried"`
}

// Validate checks the shape of a.
func (a *StoreAnchor) Validate() error {
	switch {
	case len(a.StoreID) != StoreIDLen:
		return Errorf(CodeMalformed, "store anchor: ID of %d bytes, want %d", len(a.StoreID), StoreIDLen)
	case !(a.Epsilon >= 0) || math.IsInf(a.Epsilon, 0) || !(a.Carried >= 0) || math.IsInf(a.Carried, 0):
		return Errorf(CodeMalformed, "store anchor: ε %v, carried %v", a.Epsilon, a.Carried)
	case a.Carried > a.Epsilon:
		return Errorf(CodeMalformed, "store anchor: carried ε %v above the total %v", a.Carried, a.Epsilon)
	}
	return nil
}

// EncodeStoreAnchor encodes a as the bytes the app keeps.
func EncodeStoreAnchor(a *StoreAnchor) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return encodeClientFile(RecStoreAnchor, a)
}

// DecodeStoreAnchor decodes and validates bytes written by
// EncodeStoreAnchor.
func DecodeStoreAnchor(b []byte) (*StoreAnchor, error) {
	a := new(StoreAnchor)
	if err := decodeClientFile(b, RecStoreAnchor, a); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

func encodeClientFile(typ byte, v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(ClientFileMagic[:])
	buf.WriteByte(typ)
	buf.WriteByte(ClientFileVersion)
	if err := marshalTo(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeClientFile(b []byte, typ byte, v any) error {
	switch {
	case len(b) > MaxClientFile:
		return Errorf(CodeTooLarge, "client file: %d bytes, at most %d", len(b), MaxClientFile)
	case len(b) < clientFileHeaderLen || !bytes.Equal(b[:len(ClientFileMagic)], ClientFileMagic[:]):
		return Errorf(CodeMalformed, "client file: bad header")
	case b[4] != typ:
		return Errorf(CodeMalformed, "client file: record type %d, want %d", b[4], typ)
	case b[5] != ClientFileVersion:
		return Errorf(CodeMalformed, "client file: version %d, want %d", b[5], ClientFileVersion)
	}
	if err := unmarshal(b[clientFileHeaderLen:], v); err != nil {
		return fmt.Errorf("client file: %w", err)
	}
	return nil
}
