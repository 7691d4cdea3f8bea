package serve

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/report"
)

// Server serves the page of the runs under its roots.
type Server struct {
	roots []string
	mux   *http.ServeMux
}

// New returns a server of the runs under roots: each a run directory (it
// has a config.yaml) or a directory whose subdirectories are runs (a
// sweep's output). Roots are listed again on every request, so runs that
// start later appear.
func New(roots []string) (*Server, error) {
	for _, r := range roots {
		st, err := os.Stat(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %s does not exist", report.ErrNotRun, r)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%w: %s is a file, not a run or sweep directory", report.ErrNotRun, r)
		}
	}
	s := &Server{roots: roots, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("GET /run", s.run)
	s.mux.HandleFunc("GET /fig", s.fig)
	s.mux.HandleFunc("GET /version", s.version)
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// entry is a run directory found under the roots.
type entry struct {
	Dir  string
	Name string
}

// RunDirs lists the run directories under the roots, in the order given
// (a sweep's runs sorted), each with a unique name.
func (s *Server) RunDirs() []entry {
	var out []entry
	isRun := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "config.yaml"))
		return err == nil
	}
	for _, root := range s.roots {
		if isRun(root) {
			out = append(out, entry{Dir: root})
			continue
		}
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if d := filepath.Join(root, e.Name()); e.IsDir() && isRun(d) {
				out = append(out, entry{Dir: d})
			}
		}
	}
	count := map[string]int{}
	for _, e := range out {
		count[filepath.Base(filepath.Clean(e.Dir))]++
	}
	for i := range out {
		out[i].Name = filepath.Base(filepath.Clean(out[i].Dir))
		if count[out[i].Name] > 1 {
			out[i].Name = filepath.Clean(out[i].Dir)
		}
	}
	return out
}

// version is a token that changes whenever a run's metrics change: the
// pages poll it and reload themselves when it moves.
func (s *Server) versionOf(name string) string {
	var b strings.Builder
	for _, e := range s.RunDirs() {
		if name != "" && e.Name != name {
			continue
		}
		if st, err := os.Stat(filepath.Join(e.Dir, "metrics.jsonl")); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", e.Name, st.Size(), st.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:-;", e.Name)
		}
	}
	return strconv.FormatUint(fnv(b.String()), 36)
}

func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, s.versionOf(r.URL.Query().Get("r")))
}

// load reads one run; a run that has not written metrics yet is shown
// with an empty history.
func (s *Server) load(e entry) (*report.Run, error) {
	run, err := report.ReadRun(e.Dir)
	if err != nil && errors.Is(err, report.ErrNotRun) {
		if _, serr := os.Stat(filepath.Join(e.Dir, "metrics.jsonl")); errors.Is(serr, os.ErrNotExist) {
			return nil, errNoMetrics
		}
	}
	if err != nil {
		return nil, err
	}
	run.Name = e.Name
	return run, nil
}

var errNoMetrics = errors.New("no metrics yet")

func (s *Server) find(name string) (entry, bool) {
	for _, e := range s.RunDirs() {
		if e.Name == name {
			return e, true
		}
	}
	return entry{}, false
}

// row is a run's line in the index.
type row struct {
	Name, Variant, Status, Err        string
	Tokens, Budget                    int64
	TrainLoss, HeldOut, TokensPerS    float64
	HasTrain, HasHeldOut, HasThroughp bool
	Updated                           string
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	var rows []row
	var evaluated []*report.Run
	for _, e := range s.RunDirs() {
		rw := row{Name: e.Name}
		run, err := s.load(e)
		if err != nil {
			rw.Err = err.Error()
			rows = append(rows, rw)
			continue
		}
		rw.Variant, rw.Budget, rw.Tokens = report.Variant(run.Config.Model), run.Config.Train.Tokens, run.TokensTrained()
		if tr := run.TrainSeries(); len(tr) > 0 {
			rw.TrainLoss, rw.HasTrain = tr[len(tr)-1].Value, true
		}
		if v, ok := run.Last(report.HeldOut, "loss"); ok {
			rw.HeldOut, rw.HasHeldOut = v, true
			evaluated = append(evaluated, run)
		}
		for i := len(run.Metrics) - 1; i >= 0; i-- {
			if m := run.Metrics[i]; m.Kind == "train" && m.TokensPerS > 0 {
				rw.TokensPerS, rw.HasThroughp = m.TokensPerS, true
				break
			}
		}
		rw.Status, rw.Updated = status(e.Dir, rw.Tokens, rw.Budget)
		rows = append(rows, rw)
	}
	var cmp *compareTable
	if len(evaluated) > 0 {
		cmp = newCompare(report.Compare(evaluated))
	}
	s.render(w, indexTmpl, map[string]any{"Rows": rows, "Compare": cmp, "Version": s.versionOf(""), "Roots": strings.Join(s.roots, ", ")})
}

// status says whether a run is training: finished at its budget, training
// when its metrics changed in the last two minutes, else stopped.
func status(dir string, tokens, budget int64) (string, string) {
	st, err := os.Stat(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return "not started", ""
	}
	ago := time.Since(st.ModTime()).Round(time.Second)
	updated := ago.String() + " ago"
	switch {
	case tokens >= budget:
		return "finished", updated
	case ago < 2*time.Minute:
		return "training", updated
	}
	return "stopped", updated
}

// compareTable is report.Table laid out for HTML.
type compareTable struct {
	Names []string
	Rows  []compareRow
}

type compareRow struct {
	Label string
	Cells []string
}

func newCompare(t report.Table) *compareTable {
	var md bytes.Buffer
	t.Markdown(&md)
	ct := &compareTable{}
	// The markdown table is the one `moetrain compare` prints: the page
	// shows the same cells.
	lines := strings.Split(strings.TrimSpace(md.String()), "\n")
	split := func(l string) []string {
		l = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "|"), "|")
		parts := strings.Split(strings.ReplaceAll(l, `\|`, "\x00"), "|")
		for i := range parts {
			parts[i] = strings.TrimSpace(strings.ReplaceAll(parts[i], "\x00", "|"))
		}
		return parts
	}
	head := split(lines[0])
	ct.Names = head[1:]
	for _, l := range lines[2:] {
		p := split(l)
		ct.Rows = append(ct.Rows, compareRow{Label: p[0], Cells: p[1:]})
	}
	return ct
}

// point is one row of a run page's data tables.
type point struct {
	Tokens                  int64
	Step                    int64
	Loss, LR, GradNorm, TPS float64
	Balance                 string
	HasLR, HasGrad, HasTPS  bool
}

type loadRow struct {
	Layer  int
	Tokens int64
	Load   string // per-expert shares, space-separated
	Dead   int
	Max    float64
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("r")
	e, ok := s.find(name)
	if !ok {
		http.Error(w, "no run "+strconv.Quote(name)+" under "+strings.Join(s.roots, ", "), http.StatusNotFound)
		return
	}
	run, err := s.load(e)
	if err != nil {
		s.render(w, runTmpl, map[string]any{"Name": name, "Dir": e.Dir, "Err": err.Error(), "Version": s.versionOf(name)})
		return
	}
	var train []point
	for _, m := range run.Metrics {
		if m.Kind != "train" {
			continue
		}
		keys := make([]string, 0, len(m.Balance))
		for k := range m.Balance {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var bal []string
		for _, k := range keys {
			bal = append(bal, k+"="+strconv.FormatFloat(m.Balance[k], 'g', 6, 64))
		}
		train = append(train, point{Tokens: m.Tokens, Step: m.Step, Loss: m.Loss, LR: m.LR, GradNorm: m.GradNorm, TPS: m.TokensPerS,
			Balance: strings.Join(bal, " "), HasLR: m.LR != 0, HasGrad: m.GradNorm != 0, HasTPS: m.TokensPerS > 0})
	}
	var loads []loadRow
	layers, heats := run.LoadSeries()
	for i, l := range layers {
		h := heats[i]
		last := h.Load[len(h.Load)-1]
		var parts []string
		dead, mx := 0, 0.0
		for _, v := range last {
			e := float64(len(last))
			parts = append(parts, strconv.FormatFloat(v/e, 'g', 5, 64))
			if v == 0 {
				dead++
			}
			mx = math.Max(mx, v)
		}
		loads = append(loads, loadRow{Layer: l, Tokens: h.Tokens[len(h.Tokens)-1], Load: strings.Join(parts, " "), Dead: dead, Max: mx})
	}
	_, hasLoad := report.LoadFigure(run)
	st, updated := status(e.Dir, run.TokensTrained(), run.Config.Train.Tokens)
	s.render(w, runTmpl, map[string]any{
		"Name": name, "Dir": e.Dir, "Variant": report.Variant(run.Config.Model), "Status": st, "Updated": updated,
		"Tokens": run.TokensTrained(), "Budget": run.Config.Train.Tokens, "Train": train, "HeldOut": run.Series(report.HeldOut, "loss"),
		"Loads": loads, "HasLoad": hasLoad, "Version": s.versionOf(name), "EvalTokens": run.Config.Eval.Tokens,
	})
}

// fig renders one figure of a run as SVG: f is loss, dynamics or load.
func (s *Server) fig(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	e, ok := s.find(q.Get("r"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	run, err := s.load(e)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	var f report.Figure
	switch q.Get("f") {
	case "loss":
		f = report.LossFigure([]*report.Run{run})
	case "dynamics":
		f = report.DynamicsFigure(run)
	case "load":
		if f, ok = report.LoadFigure(run); !ok {
			http.Error(w, "the run has no per-expert load yet", http.StatusNotFound)
			return
		}
	default:
		http.Error(w, "unknown figure "+strconv.Quote(q.Get("f")), http.StatusNotFound)
		return
	}
	var buf bytes.Buffer
	if err := report.Render(f, "svg", &buf); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

func (s *Server) render(w http.ResponseWriter, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

var funcs = template.FuncMap{
	"commas": units.Commas,
	"f4":     func(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) },
	"g":      func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) },
	"g3":     func(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) },
	"f0":     func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) },
	"pct": func(a, b int64) string {
		if b == 0 {
			return "0"
		}
		return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 0, 64)
	},
}
