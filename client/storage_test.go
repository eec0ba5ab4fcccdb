package client

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// openDirStore opens the store in dir with the app's key, as New does.
func openDirStore(dir string, key []byte) (*store, *state, error) {
	return openStore(dirStorage{dir: dir}, appKey{newAEAD(key)}, nil, slog.New(slog.DiscardHandler))
}

// TestStorageContract checks what the store relies on from its storage,
// on the directory backend (the IndexedDB one runs the same steps in a
// browser: client/web/browsertest).
func TestStorageContract(t *testing.T) {
	dir := t.TempDir()
	// Files that are not the store's are not listed.
	for _, n := range []string{"other.txt", dialerStateFile} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := openStorage(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer files.close()
	testStorage(t, files)
	for _, n := range []string{"other.txt", dialerStateFile} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: %v, want it left alone", n, err)
		}
	}
}

// testStorage runs the storage contract on files, which must be empty.
func testStorage(t *testing.T, files storage) {
	t.Helper()
	list := func(want ...string) {
		t.Helper()
		got, err := files.list()
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("list() = %q, want %q", got, want)
		}
	}
	read := func(name string, want []byte) {
		t.Helper()
		got, err := files.read(name)
		if want == nil {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("read(%s) = %q, %v, want fs.ErrNotExist", name, got, err)
			}
			return
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read(%s) = %q, %v, want %q", name, got, err, want)
		}
	}
	list()
	read(keyFile, nil)
	if _, err := files.openAppend(logFile); err == nil {
		t.Fatal("openAppend of a missing file succeeded")
	}

	// Whole files: write creates and replaces.
	if err := files.write(keyFile, []byte("key-1")); err != nil {
		t.Fatal(err)
	}
	if err := files.write(keyFile, []byte("key-22")); err != nil {
		t.Fatal(err)
	}
	read(keyFile, []byte("key-22"))
	if err := files.write(modelFile, nil); err != nil {
		t.Fatal(err)
	}
	read(modelFile, []byte{})

	// The log: appends go at the end, truncate moves the end back, and
	// writes replace it whole.
	if err := files.write(logFile, []byte("head")); err != nil {
		t.Fatal(err)
	}
	f, err := files.openAppend(logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"+one", "+two", "+three"} {
		if err := f.append([]byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	read(logFile, []byte("head+one+two+three"))
	if err := f.truncate(int64(len("head+one+t"))); err != nil {
		t.Fatal(err)
	}
	read(logFile, []byte("head+one+t"))
	if err := f.append([]byte("!")); err != nil {
		t.Fatal(err)
	}
	read(logFile, []byte("head+one+t!"))
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	// Opened again, the log appends after what it holds.
	if f, err = files.openAppend(logFile); err != nil {
		t.Fatal(err)
	}
	if err := f.append([]byte("?")); err != nil {
		t.Fatal(err)
	}
	read(logFile, []byte("head+one+t!?"))
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	if err := files.write(logFile, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	read(logFile, []byte("fresh"))
	list(keyFile, modelFile, logFile)

	// Removal, of files that exist or not.
	for _, n := range []string{keyFile, keyFile, snapFile} {
		if err := files.remove(n); err != nil {
			t.Fatalf("remove(%s): %v", n, err)
		}
	}
	if err := files.sync(); err != nil {
		t.Fatal(err)
	}
	read(keyFile, nil)
	list(modelFile, logFile)
	if n, err := removeFiles(files); err != nil || n != 2 {
		t.Fatalf("removeFiles = %d, %v, want 2, nil", n, err)
	}
	list()
}
