package analysis

import (
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moetrain/moetrain/internal/stats"
)

// seedKeys lists, per analysis that OverSeeds can summarise, the columns of
// its CSV that identify a row across seeds; every other column is a number
// averaged over the seeds.
var seedKeys = map[string][]string{
	"tokens": {"layer", "routed experts", "active"},
	"churn":  {"training tokens", "layer"},
}

// SeedAnalyses are the analyses OverSeeds accepts.
func SeedAnalyses() []string {
	var out []string
	for k := range seedKeys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

var seedDir = regexp.MustCompile(`^(.+)_seed-\d+$`)

// ErrNotSummarisable wraps OverSeeds' errors that are the caller's mistake
// (an analysis it cannot summarise, a directory without its outputs), as
// opposed to files that cannot be read.
var ErrNotSummarisable = errors.New("nothing to summarise")

// OverSeeds reads DIR/NAME_seed-N/analysis-WHAT.csv, the outputs of one
// analysis of several runs (each written with --out DIR/NAME_seed-N), and
// returns one row per NAME and key (seedKeys) with every other column as
// the mean ± sample standard deviation over the seeds that have the row.
// Runs are grouped by NAME, in name order; rows keep the first file's order.
func OverSeeds(dir, what string) (Table, error) {
	keys, ok := seedKeys[what]
	if !ok {
		return Table{}, fmt.Errorf("over seeds: analysis %q cannot be summarised (want one of %s): %w", what, strings.Join(SeedAnalyses(), ", "), ErrNotSummarisable)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*_seed-*", "analysis-"+what+".csv"))
	if err != nil {
		return Table{}, err
	}
	if len(paths) == 0 {
		return Table{}, fmt.Errorf("over seeds: no %s/NAME_seed-N/analysis-%s.csv (write each run's analysis with --out %s/NAME_seed-N): %w", dir, what, dir, ErrNotSummarisable)
	}
	slices.Sort(paths)
	type row struct {
		name string
		key  []string
		vals [][]float64 // per value column, one per seed
	}
	var header []string // the value columns, from the first file
	var rows []*row
	index := map[string]*row{}
	for _, p := range paths {
		m := seedDir.FindStringSubmatch(filepath.Base(filepath.Dir(p)))
		if m == nil {
			continue
		}
		name := m[1]
		recs, err := readCSV(p)
		if err != nil {
			return Table{}, err
		}
		cols := recs[0]
		var keyAt, valAt []int
		var vals []string
		for _, k := range keys {
			i := slices.Index(cols, k)
			if i < 0 {
				return Table{}, fmt.Errorf("over seeds: %s has no column %q", p, k)
			}
			keyAt = append(keyAt, i)
		}
		for i, c := range cols {
			if !slices.Contains(keys, c) {
				valAt, vals = append(valAt, i), append(vals, c)
			}
		}
		if header == nil {
			header = vals
		} else if !slices.Equal(header, vals) {
			return Table{}, fmt.Errorf("over seeds: %s has columns %v, the first file %v", p, vals, header)
		}
		for _, rec := range recs[1:] {
			k := []string{}
			for _, i := range keyAt {
				k = append(k, rec[i])
			}
			id := name + "\x00" + strings.Join(k, "\x00")
			r := index[id]
			if r == nil {
				r = &row{name: name, key: k, vals: make([][]float64, len(valAt))}
				index[id] = r
				rows = append(rows, r)
			}
			for j, i := range valAt {
				v, err := strconv.ParseFloat(rec[i], 64)
				if err != nil {
					v = math.NaN() // "–": not defined for this row
				}
				r.vals[j] = append(r.vals[j], v)
			}
		}
	}
	slices.SortStableFunc(rows, func(a, b *row) int { return strings.Compare(a.name, b.name) })
	t := Table{Title: fmt.Sprintf("The %s analysis over seeds", what),
		Columns: append(append(append([]string{"model"}, keys...), "seeds"), header...)}
	t.Notes = fmt.Sprintf("From %s/NAME_seed-N/analysis-%s.csv: mean ± sample standard deviation over the seeds.", dir, what)
	for _, r := range rows {
		cells := append(append([]string{r.name}, r.key...), strconv.Itoa(len(r.vals[0])))
		for _, v := range r.vals {
			mean, sd := stats.MeanStd(v)
			if math.IsNaN(mean) {
				cells = append(cells, ff(mean)) // undefined in some seed: "–", not "– ± –"
				continue
			}
			cells = append(cells, ff(mean)+" ± "+ff(sd))
		}
		t.Rows = append(t.Rows, cells)
	}
	return t, nil
}

func readCSV(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return recs, nil
}
