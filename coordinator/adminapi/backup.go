package adminapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// backup serves GET /v1/backup: a backup file of this node's state.
func (a *Server) backup(w http.ResponseWriter, r *http.Request) {
	pr, pw := io.Pipe()
	type result struct {
		h   store.BackupHeader
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := a.n.Backup(pw)
		pw.CloseWithError(err)
		done <- result{h, err}
	}()
	// Read the header first, so that a failed snapshot is a 500 rather
	// than a truncated 200.
	br := bufio.NewReaderSize(pr, 64<<10)
	h, err := store.ReadBackupHeader(br)
	if err != nil {
		pr.CloseWithError(err)
		res := <-done
		msg := err.Error()
		if res.err != nil {
			msg = res.err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(wire.ClusterError{Error: msg})
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="fedrec-%s-%d.backup"`, h.Node, h.Index))
	hdr.Set("Fedrec-Backup-Index", strconv.FormatUint(h.Index, 10))
	hdr.Set("Fedrec-Model-Version", strconv.FormatUint(h.ModelVersion, 10))
	hdr.Set("Fedrec-Model-Digest", h.ModelDigest)
	var hb writeCounter
	store.WriteBackupHeader(&hb, &h)
	hdr.Set("Content-Length", strconv.FormatInt(hb.n+h.SnapshotSize, 10))
	if err := store.WriteBackupHeader(w, &h); err != nil {
		pr.CloseWithError(err)
		<-done
		return
	}
	_, err = io.Copy(w, br)
	pr.CloseWithError(err)
	if res := <-done; res.err != nil || err != nil {
		a.log.Warn("backup not sent whole", "err", errors.Join(res.err, err))
	}
}

type writeCounter struct{ n int64 }

func (c *writeCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
