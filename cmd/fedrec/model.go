package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// A model file is a safetensors file (docs/model-format.md): a
// little-endian uint64 n, n bytes of JSON header (padded with spaces to a
// multiple of 8), then the data. Two tensors: "items", F64 [items,
// rank+1] (item i's factor then its bias), and "global_mean", F64 [1];
// the data is exactly the bytes of GET /v1/model?format=raw. The header's
// __metadata__ is the model's manifest; its "digest" is the SHA-256 of the
// big-endian uint32s kind_code, items, rank followed by the data.
const (
	modelFormat        = "fedrec-model"
	modelFormatVersion = "1"
	maxModelHeader     = 1 << 20
)

// stTensor is a safetensors header entry.
type stTensor struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// modelManifest is a model file's __metadata__: safetensors metadata
// values are strings.
type modelManifest struct {
	Format        string `json:"format"`         // fedrec-model
	FormatVersion string `json:"format_version"` // 1
	Version       string `json:"model_version"`
	Round         string `json:"round"`
	Kind          string `json:"kind"`
	KindCode      string `json:"kind_code"`
	Items         string `json:"items"`
	Rank          string `json:"rank"`
	Params        string `json:"params"`
	Digest        string `json:"digest"` // hex SHA-256
	DigestOf      string `json:"digest_of"`
	Layout        string `json:"layout"`
	Exported      string `json:"exported"` // RFC 3339
	Source        string `json:"source"`   // the node asked
}

// modelJSON is a manifest as 'fedrec model export|verify --json' prints
// it: the same keys as modelManifest, with numbers as JSON numbers.
type modelJSON struct {
	Format        string `json:"format"`
	FormatVersion int    `json:"format_version"`
	Version       uint64 `json:"model_version"`
	Round         uint64 `json:"round"`
	Kind          string `json:"kind"`
	KindCode      uint8  `json:"kind_code"`
	Items         int    `json:"items"`
	Rank          int    `json:"rank"`
	Params        int    `json:"params"`
	Digest        string `json:"digest"`
	DigestOf      string `json:"digest_of"`
	Layout        string `json:"layout"`
	Exported      string `json:"exported"`
	Source        string `json:"source"`
}

// json converts a manifest that readModelFile or manifestOf made (its
// numbers are well formed) for printing.
func (m *modelManifest) json() (*modelJSON, error) {
	j := &modelJSON{Format: m.Format, Kind: m.Kind, Digest: m.Digest, DigestOf: m.DigestOf, Layout: m.Layout, Exported: m.Exported, Source: m.Source}
	fv, err1 := strconv.Atoi(m.FormatVersion)
	v, err2 := strconv.ParseUint(m.Version, 10, 64)
	r, err3 := strconv.ParseUint(m.Round, 10, 64)
	k, err4 := strconv.ParseUint(m.KindCode, 10, 8)
	items, err5 := strconv.Atoi(m.Items)
	rank, err6 := strconv.Atoi(m.Rank)
	params, err7 := strconv.Atoi(m.Params)
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	j.FormatVersion, j.Version, j.Round, j.KindCode, j.Items, j.Rank, j.Params = fv, v, r, uint8(k), items, rank, params
	return j, nil
}

const digestOf = "sha256(uint32be(kind_code) || uint32be(items) || uint32be(rank) || data)"

const modelUsage = `usage: fedrec model export --admin HOST:PORT --out FILE [--version N] [--token T] [--json]
       fedrec model verify --in FILE [--json]

export  writes a committed model (the newest, or version N if the node still
        keeps it) to FILE as a safetensors file a serving system can load:
        tensors "items" F64 [items, rank+1] and "global_mean" F64 [1], and the
        model's manifest (version, round, kind, shape, SHA-256 digest) in its
        metadata. The digest is checked before FILE is renamed into place.
verify  checks a model file's structure and digest and prints its manifest.

docs/model-format.md describes the format and how to check the digest.

Exit status: 0 done, 1 failed (unreachable, no such version, digest mismatch), 2 usage error.

flags:`

func runModel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("admin", "", "admin address of a node (export; required)")
	out := fs.String("out", "", "file to write (export; required; replaced atomically)")
	in := fs.String("in", "", "model file to check (verify; required)")
	version := fs.Uint64("version", 0, "model version to export (default: the newest)")
	token := fs.String("token", "", "operator token (default: $FEDREC_ADMIN_TOKEN)")
	certs := fs.String("certs", "certs", "directory with the cluster CA (ca.pem), as made by 'fedrec cert'")
	asJSON := fs.Bool("json", false, "print the manifest as JSON instead of text")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, modelUsage)
		fs.PrintDefaults()
	}
	usageErr := func(msg string) error {
		fmt.Fprintf(stderr, "fedrec model: %s\n\n", msg)
		fs.Usage()
		return errUsage
	}
	if len(args) == 0 {
		return usageErr("a subcommand is required")
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fs.Usage()
		return flag.ErrHelp
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	show := func(man *modelManifest, file string) error {
		if *asJSON {
			j, err := man.json()
			if err != nil {
				return err
			}
			return printJSON(stdout, j)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "file\t%s (safetensors, %s v%s)\n", file, man.Format, man.FormatVersion)
		fmt.Fprintf(tw, "model\tversion %s (round %s), %s, %s items, rank %s, %s params\n", man.Version, man.Round, man.Kind, man.Items, man.Rank, man.Params)
		fmt.Fprintf(tw, "sha256\t%s (verified)\n", man.Digest)
		return tw.Flush()
	}
	switch sub {
	case "verify":
		if *in == "" {
			return usageErr("verify: --in is required")
		}
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("model verify: %w", err)
		}
		defer f.Close()
		man, _, err := readModelFile(bufio.NewReader(f))
		if err != nil {
			return fmt.Errorf("model verify %s: %w", *in, err)
		}
		return show(man, *in)
	case "export":
	default:
		return usageErr(fmt.Sprintf("unknown subcommand %q", sub))
	}
	switch {
	case *addr == "":
		return usageErr("export: --admin is required")
	case *out == "":
		return usageErr("export: --out is required")
	}
	if *token = adminToken(*token); *token == "" {
		return usageErr("--token or FEDREC_ADMIN_TOKEN is required")
	}
	c, err := adminClient(*certs)
	if err != nil {
		return fmt.Errorf("model export: %w", err)
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	path := wire.PathModel
	if *version > 0 {
		path += "?version=" + strconv.FormatUint(*version, 10)
	}
	body, err := adminGet(ctx, c, *addr, path, *token)
	if err != nil {
		return fmt.Errorf("model export: %w", err)
	}
	m, err := wire.DecodeAdmin[wire.ModelManifest](body)
	if err != nil {
		return fmt.Errorf("model export: %s answered: %w", *addr, err)
	}
	// Ask for the raw parameters of exactly that version: the newest may
	// move on between the two calls.
	res, err := adminStream(ctx, c, *addr, fmt.Sprintf("%s?version=%d&format=raw", wire.PathModel, m.Version), *token)
	if err != nil {
		return fmt.Errorf("model export: %w", err)
	}
	defer res.Body.Close()
	man := manifestOf(m, *addr)
	if _, err := writeAtomic(*out, func(f *os.File) error {
		w := bufio.NewWriterSize(f, 1<<20)
		if err := writeModelFile(w, man, m, res.Body); err != nil {
			return err
		}
		return w.Flush()
	}); err != nil {
		return fmt.Errorf("model export: %w", err)
	}
	return show(man, *out)
}

func manifestOf(m *wire.ModelManifest, source string) *modelManifest {
	return &modelManifest{
		Format: modelFormat, FormatVersion: modelFormatVersion,
		Version: strconv.FormatUint(m.Version, 10), Round: strconv.FormatUint(m.Round, 10),
		Kind: m.Kind, KindCode: strconv.Itoa(int(m.KindCode)), Items: strconv.Itoa(m.Items), Rank: strconv.Itoa(m.Rank),
		Params: strconv.Itoa(m.Params), Digest: m.Digest, DigestOf: digestOf, Layout: m.Layout,
		Exported: time.Now().UTC().Format(time.RFC3339), Source: source,
	}
}

func modelHeader(man *modelManifest, items, rank int) ([]byte, error) {
	itemBytes := int64(items) * int64(rank+1) * 8
	hdr := map[string]any{
		"__metadata__": man,
		"items":        stTensor{DType: "F64", Shape: []int{items, rank + 1}, Offsets: [2]int64{0, itemBytes}},
		"global_mean":  stTensor{DType: "F64", Shape: []int{1}, Offsets: [2]int64{itemBytes, itemBytes + 8}},
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	// safetensors aligns the data to 8 bytes by padding the header with
	// spaces.
	if r := len(js) % 8; r != 0 {
		js = append(js, strings.Repeat(" ", 8-r)...)
	}
	return js, nil
}

// writeModelFile writes a model file whose data is read from raw (the
// node's ?format=raw answer), and fails if raw is not exactly the
// manifest's params or does not hash to its digest.
func writeModelFile(w io.Writer, man *modelManifest, m *wire.ModelManifest, raw io.Reader) error {
	if m.Params != m.Items*(m.Rank+1)+1 {
		return fmt.Errorf("manifest of %d params for %d items at rank %d", m.Params, m.Items, m.Rank)
	}
	js, err := modelHeader(man, m.Items, m.Rank)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(js)))
	w.Write(n[:])
	if _, err := w.Write(js); err != nil {
		return err
	}
	h := wire.NewDigest(m.KindCode, m.Items, m.Rank, false)
	want := int64(8 * m.Params)
	k, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(raw, want+1))
	switch {
	case err != nil:
		return fmt.Errorf("parameters: %w", err)
	case k != want:
		return fmt.Errorf("parameters: got %d bytes, want %d", k, want)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.Digest {
		return fmt.Errorf("digest of the parameters %s, the manifest says %s", got, m.Digest)
	}
	return nil
}

// readModelFile reads and checks a model file: the safetensors structure,
// the manifest's shape, finite parameters and the digest. It returns the
// parameters in the order of GET /v1/model?format=raw.
func readModelFile(r io.Reader) (*modelManifest, []float64, error) {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, fmt.Errorf("header length: %w", err)
	}
	hl := binary.LittleEndian.Uint64(n[:])
	if hl == 0 || hl > maxModelHeader {
		return nil, nil, fmt.Errorf("header of %d bytes: not a fedrec model file", hl)
	}
	js := make([]byte, hl)
	if _, err := io.ReadFull(r, js); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	var hdr struct {
		Meta  modelManifest `json:"__metadata__"`
		Items stTensor      `json:"items"`
		Mean  stTensor      `json:"global_mean"`
	}
	if err := json.Unmarshal(js, &hdr); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	man := &hdr.Meta
	if man.Format != modelFormat || man.FormatVersion != modelFormatVersion {
		return nil, nil, fmt.Errorf("format %q version %q, want %s version %s", man.Format, man.FormatVersion, modelFormat, modelFormatVersion)
	}
	kind, err1 := strconv.ParseUint(man.KindCode, 10, 8)
	items, err2 := strconv.Atoi(man.Items)
	rank, err3 := strconv.Atoi(man.Rank)
	params, err4 := strconv.Atoi(man.Params)
	if err := errors.Join(err1, err2, err3, err4); err != nil || items <= 0 || rank <= 0 || params != items*(rank+1)+1 || params > wire.DefaultMaxParams {
		return nil, nil, fmt.Errorf("manifest: shape %s items, rank %s, %s params: %v", man.Items, man.Rank, man.Params, err)
	}
	itemBytes := int64(items) * int64(rank+1) * 8
	if hdr.Items.DType != "F64" || hdr.Items.Offsets != [2]int64{0, itemBytes} ||
		hdr.Mean.DType != "F64" || hdr.Mean.Offsets != [2]int64{itemBytes, itemBytes + 8} {
		return nil, nil, errors.New("tensors do not match the manifest's shape")
	}
	h := wire.NewDigest(uint8(kind), items, rank, false)
	// Grow with the bytes that arrive, not with what the header claims.
	data, err := io.ReadAll(io.LimitReader(r, int64(8*params)+1))
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("data: %w", err)
	case len(data) < 8*params:
		return nil, nil, fmt.Errorf("data: %d bytes, the manifest says %d (truncated?)", len(data), 8*params)
	case len(data) > 8*params:
		return nil, nil, errors.New("bytes after the data")
	}
	h.Write(data)
	if got := hex.EncodeToString(h.Sum(nil)); got != man.Digest {
		return nil, nil, fmt.Errorf("digest %s, the manifest says %s", got, man.Digest)
	}
	out := make([]float64, params)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))
		if math.IsNaN(out[i]) || math.IsInf(out[i], 0) {
			return nil, nil, fmt.Errorf("parameter %d is %v", i, out[i])
		}
	}
	return man, out, nil
}
