package sim

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// MetricsHeader is the header of metrics.csv.
var MetricsHeader = []string{"round", "clients", "train_loss", "rmse", "mae",
	"recall_at_10", "ndcg_at_10", "recall_at_20", "ndcg_at_20",
	"user_coverage_at_10", "catalogue_coverage_at_10", "user_coverage_at_20", "catalogue_coverage_at_20",
	"popular_recall_at_10", "popular_ndcg_at_10",
	"epsilon", "bytes_up", "bytes_down", "wall_s"}

// WriteOutputs writes metrics.csv, summary.json and a plot of the main
// metric by round into dir, creating it.
func WriteOutputs(dir string, res *Result, mem Memory) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeCSV(filepath.Join(dir, "metrics.csv"), res.Rows, res.Popular); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "summary.json"), NewSummary(res, mem)); err != nil {
		return err
	}
	return writePlot(dir, res)
}

func fmtFloat(x float64) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'g', 6, 64)
}

// writeCSV writes one row per evaluated round, with the most-popular
// reference repeated on each so that every row says what it must beat.
func writeCSV(path string, rows []Row, popular *Row) error {
	pop := Row{Recall: math.NaN(), NDCG: math.NaN()}
	if popular != nil {
		pop = *popular
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(MetricsHeader)
	for _, r := range rows {
		_ = w.Write([]string{
			strconv.Itoa(r.Round), strconv.Itoa(r.Clients), fmtFloat(r.TrainLoss),
			fmtFloat(r.RMSE), fmtFloat(r.MAE), fmtFloat(r.Recall), fmtFloat(r.NDCG), fmtFloat(r.Recall20), fmtFloat(r.NDCG20),
			fmtFloat(r.UserCov), fmtFloat(r.CatCov), fmtFloat(r.UserCov20), fmtFloat(r.CatCov20),
			fmtFloat(pop.Recall), fmtFloat(pop.NDCG), fmtFloat(r.Epsilon),
			strconv.FormatInt(r.BytesUp, 10), strconv.FormatInt(r.BytesDown, 10), strconv.FormatFloat(r.WallS, 'f', 3, 64),
		})
	}
	w.Flush()
	return errors.Join(w.Error(), f.Close())
}

// Summary is summary.json.
type Summary struct {
	Config    Config      `json:"config"`
	Dataset   DatasetInfo `json:"dataset"`
	Final     jsonRow     `json:"final"`
	Baseline  *jsonRow    `json:"centralized_baseline,omitempty"`
	Popular   *jsonRow    `json:"most_popular,omitempty"`
	EASE      *jsonRow    `json:"ease,omitempty"`
	Abandoned int         `json:"abandoned_rounds"`
	WallS     float64     `json:"wall_s"`
	Memory    Memory      `json:"memory"`
}

// jsonRow is a Row whose NaNs become null (JSON has no NaN).
type jsonRow map[string]any

func toJSONRow(r Row) jsonRow {
	opt := func(x float64) any {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return x
	}
	return jsonRow{
		"round": r.Round, "clients": r.Clients, "train_loss": opt(r.TrainLoss),
		"rmse": opt(r.RMSE), "mae": opt(r.MAE), "recall_at_10": opt(r.Recall), "ndcg_at_10": opt(r.NDCG),
		"recall_at_20": opt(r.Recall20), "ndcg_at_20": opt(r.NDCG20),
		"user_coverage_at_10": opt(r.UserCov), "catalogue_coverage_at_10": opt(r.CatCov),
		"user_coverage_at_20": opt(r.UserCov20), "catalogue_coverage_at_20": opt(r.CatCov20),
		"epsilon": opt(r.Epsilon), "clip": r.Clip, "bytes_up": r.BytesUp, "bytes_down": r.BytesDown, "wall_s": r.WallS,
	}
}

// NewSummary assembles summary.json's content.
func NewSummary(res *Result, mem Memory) Summary {
	s := Summary{Config: res.Config, Dataset: res.Dataset, Final: toJSONRow(res.Final), Abandoned: res.Abandoned, WallS: res.Wall.Seconds(), Memory: mem}
	ref := func(r *Row) *jsonRow {
		if r == nil {
			return nil
		}
		j := toJSONRow(*r)
		return &j
	}
	s.Baseline, s.Popular, s.EASE = ref(res.Baseline), ref(res.Popular), ref(res.EASE)
	return s
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// PlotNames are the plots WriteOutputs draws for res (besides the
// ε plots of a DP run).
func PlotNames(res *Result) []string {
	if res.Dataset.Implicit {
		return []string{"ndcg_at_10.png"}
	}
	return []string{"ndcg_at_10.png", "rmse.png"}
}

// writePlot draws NDCG@10 by round with every reference beside it, and
// RMSE by round for explicit models; a DP run also gets each against ε.
func writePlot(dir string, res *Result) error {
	ndcg := func(r Row) float64 { return r.NDCG }
	refs := []struct {
		name string
		row  *Row
	}{{"centralized", res.Baseline}, {"EASE", res.EASE}, {"most popular", res.Popular}}
	if err := plotByRound(filepath.Join(dir, "ndcg_at_10.png"), res, "NDCG@10", ndcg, refs); err != nil {
		return err
	}
	if err := writeEpsilonPlot(dir, res, "Recall@10", func(r Row) float64 { return r.Recall }); err != nil {
		return err
	}
	if res.Dataset.Implicit {
		return nil
	}
	rmse := func(r Row) float64 { return r.RMSE }
	if err := plotByRound(filepath.Join(dir, "rmse.png"), res, "RMSE", rmse, refs[:1]); err != nil {
		return err
	}
	return writeEpsilonPlot(dir, res, "RMSE", rmse)
}

// referenceColors tell the dashed reference lines apart.
var referenceColors = []color.Color{plotColor, color.RGBA{R: 40, G: 140, B: 60, A: 255}, color.RGBA{R: 120, G: 120, B: 120, A: 255}}

func plotByRound(path string, res *Result, metric string, get func(Row) float64, refs []struct {
	name string
	row  *Row
}) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s on %s", metric, res.Dataset.Name)
	p.X.Label.Text = "round"
	p.Y.Label.Text = "test " + metric
	var pts plotter.XYs
	for _, r := range res.Rows {
		if y := get(r); !math.IsNaN(y) {
			pts = append(pts, plotter.XY{X: float64(r.Round), Y: y})
		}
	}
	if len(pts) > 0 {
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = plotter.DefaultLineStyle.Color
		p.Add(l)
		p.Legend.Add("federated", l)
	}
	for k, ref := range refs {
		if ref.row == nil || len(pts) == 0 || math.IsNaN(get(*ref.row)) {
			continue
		}
		y := get(*ref.row)
		b, err := plotter.NewLine(plotter.XYs{{X: pts[0].X, Y: y}, {X: pts[len(pts)-1].X, Y: y}})
		if err != nil {
			return err
		}
		b.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		b.Color = referenceColors[k%len(referenceColors)]
		p.Add(b)
		p.Legend.Add(ref.name, b)
	}
	// Bottom right: the curves rise to the references at the top.
	p.Legend.Top = false
	p.Legend.YOffs = vg.Points(24)
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

// writeEpsilonPlot draws the metric against the privacy spent so far, the
// trade-off a DP run is about; runs without DP have no such plot.
func writeEpsilonPlot(dir string, res *Result, metric string, get func(Row) float64) error {
	var pts plotter.XYs
	for _, r := range res.Rows {
		if y := get(r); !math.IsNaN(y) && !math.IsNaN(r.Epsilon) && !math.IsInf(r.Epsilon, 0) {
			pts = append(pts, plotter.XY{X: r.Epsilon, Y: y})
		}
	}
	if len(pts) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s against ε (δ = %g) on %s", metric, res.Config.Delta, res.Dataset.Name)
	p.X.Label.Text = "ε spent"
	p.Y.Label.Text = "test " + metric
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	p.Add(l)
	return p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, strings.ToLower(strings.ReplaceAll(metric, "@", "_at_"))+"_vs_epsilon.png"))
}

// Memory is what the run cost in memory.
type Memory struct {
	PeakHeapBytes uint64 `json:"peak_heap_bytes"` // sampled live heap, max
	MaxRSSBytes   uint64 `json:"max_rss_bytes"`   // the process's peak resident set
}

// MemorySampler tracks the peak heap in the background until Stop.
type MemorySampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

// StartMemorySampler samples the heap every interval.
func StartMemorySampler(interval time.Duration) *MemorySampler {
	s := &MemorySampler{stop: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value; v.Kind() == metrics.KindUint64 && v.Uint64() > s.peak {
			s.peak = v.Uint64()
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			read()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and reports the peaks.
func (s *MemorySampler) Stop() Memory {
	close(s.stop)
	s.wg.Wait()
	m := Memory{PeakHeapBytes: s.peak}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		m.MaxRSSBytes = uint64(ru.Maxrss) * 1024 // Linux reports KiB
	}
	return m
}
