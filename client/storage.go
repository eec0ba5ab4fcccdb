package client

import (
	"crypto/cipher"
	"fmt"
)

// storage is what the store does with its files: whole files read and
// replaced atomically (key, snapshot, model) and one appended to (the
// log). Config.Dir is a directory on a phone or a server (dirStorage) and
// an IndexedDB database in a browser (idbStorage); the bytes are the same.
// Errors for a missing file wrap fs.ErrNotExist.
type storage interface {
	// read returns the whole of name.
	read(name string) ([]byte, error)
	// write replaces name with b, durably: after a crash name holds
	// either its old bytes or b.
	write(name string, b []byte) error
	// openAppend opens name, which exists, for appending at its end.
	openAppend(name string) (appendFile, error)
	// remove deletes name if it exists; sync makes the removals so far
	// durable.
	remove(name string) error
	sync() error
	// list returns the names of the store's files (filePrefix...),
	// including temporary ones a crash left behind.
	list() ([]string, error)
	close() error
}

// appendFile is the store's log.
type appendFile interface {
	// append writes b at the end, durably: once it returns nil, a crash
	// keeps b; a crash during it leaves a prefix of b at most.
	append(b []byte) error
	// truncate cuts the file back to size bytes, durably; appends go on
	// from there.
	truncate(size int64) error
	close() error
}

// keySealer seals the store's data key: with the app's key (Config.Key,
// from the phone's keystore) or, in a browser given none, with a
// non-extractable WebCrypto key kept beside the store (kek_js.go). Both
// are AES-256-GCM, so the key file reads the same.
type keySealer interface {
	sealKey(nonce, dek, aad []byte) ([]byte, error)
	// openKey returns ErrWrongKey when sealed does not open.
	openKey(nonce, sealed, aad []byte) ([]byte, error)
}

// appKey is the keySealer of Config.Key.
type appKey struct{ aead cipher.AEAD }

func (k appKey) sealKey(nonce, dek, aad []byte) ([]byte, error) {
	return k.aead.Seal(nil, nonce, dek, aad), nil
}

func (k appKey) openKey(nonce, sealed, aad []byte) ([]byte, error) {
	dek, err := k.aead.Open(nil, nonce, sealed, aad)
	if err != nil {
		return nil, ErrWrongKey
	}
	return dek, nil
}

// keySealerOf returns the sealer of cfg's key: Config.Key if set, else the
// platform's own (browsers), else an error.
func keySealerOf(key []byte, files storage) (keySealer, error) {
	if len(key) == 0 {
		if k := platformKey(files); k != nil {
			return k, nil
		}
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: Config.Key has %d bytes, want %d", ErrInvalidArgument, len(key), KeySize)
	}
	return appKey{newAEAD(key)}, nil
}
