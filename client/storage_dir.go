//go:build !(js && wasm)

package client

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// dirStorage is the store's files in a directory. Whole files are written
// to a temporary file, fsynced and renamed over the old one; the log is
// appended to and fsynced.
type dirStorage struct{ dir string }

// openStorage returns the storage of Config.Dir, creating the directory
// if create.
func openStorage(dir string, create bool) (storage, error) {
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("client: store: %w", err)
		}
	}
	return dirStorage{dir: dir}, nil
}

// platformKey: outside browsers the app passes Config.Key.
func platformKey(storage) keySealer { return nil }

func (d dirStorage) read(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(d.dir, name))
}

func (d dirStorage) list() ([]string, error) { return storeFiles(d.dir) }

func (d dirStorage) remove(name string) error {
	if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (d dirStorage) sync() error { return syncDir(d.dir) }

func (d dirStorage) close() error { return nil }

// storeFiles lists the names in dir that belong to the store.
func storeFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: store: %w", err)
	}
	var out []string
	for _, e := range ents {
		// The Dialer's state (DialerConfig.StateDir) is not the store's:
		// it says nothing about the user and outlives a deletion.
		if strings.HasPrefix(e.Name(), filePrefix) && !strings.HasPrefix(e.Name(), dialerStateFile) && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("client: store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("client: store: sync dir: %w", err)
	}
	return nil
}

// write atomically replaces dir/name with b: write a temporary file,
// fsync it, rename it over name, fsync the directory.
func (d dirStorage) write(name string, b []byte) error {
	tmp := filepath.Join(d.dir, name+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("client: store: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(d.dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("client: store: write %s: %w", name, err)
	}
	return syncDir(d.dir)
}

func (d dirStorage) openAppend(name string) (appendFile, error) {
	f, err := os.OpenFile(filepath.Join(d.dir, name), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	return dirLog{f}, nil
}

// dirLog is the log open for appending, positioned at its end.
type dirLog struct{ f *os.File }

func (l dirLog) append(b []byte) error {
	if _, err := l.f.Write(b); err != nil {
		return err
	}
	return l.f.Sync()
}

func (l dirLog) truncate(size int64) error {
	if err := l.f.Truncate(size); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return err
	}
	_, err := l.f.Seek(size, io.SeekStart)
	return err
}

func (l dirLog) close() error { return l.f.Close() }
