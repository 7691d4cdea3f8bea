package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/model"
)

// Column is one run's column of the comparison table.
type Column struct {
	Name       string
	Variant    string
	Total      int64   // parameters (model.Count)
	Activated  int64   // activated parameters per token
	FLOPsPer2K float64 // model.FLOPsPerToken × 2048
	Tokens     int64   // training tokens reached
	Loss       float64 // last held-out loss; NaN when the run has none
	EvalTokens int64   // eval.tokens: the held-out tokens that loss is over
	// Scores maps task → the last value of its main metric (a fraction);
	// Metric maps task → that metric's name. Tasks the run lacks are absent.
	Scores  map[string]float64
	Metric  map[string]string
	Average float64 // mean score over Table.Common; NaN when Common is empty
}

// Table compares runs, one column each.
type Table struct {
	Columns []Column
	Tasks   []string // every task any run has, sorted
	Common  []string // the tasks every run has: the ones averaged
}

// Compare builds the table of runs.
func Compare(runs []*Run) Table {
	t := Table{Tasks: AllTasks(runs), Common: CommonTasks(runs)}
	for _, r := range runs {
		m := r.Config.Model
		c := model.Count(m)
		col := Column{
			Name: r.Name, Variant: Variant(m), Total: c.Total, Activated: c.Activated,
			FLOPsPer2K: r.FLOPsPerToken() * 2048, Tokens: r.TokensTrained(), EvalTokens: r.Config.Eval.Tokens,
			Scores: map[string]float64{}, Metric: map[string]string{},
		}
		col.Loss, _ = r.Last(HeldOut, "loss")
		for _, task := range r.Tasks() {
			metric := MainMetric(r, task)
			v, _ := r.Last(task, metric)
			col.Scores[task], col.Metric[task] = v, metric
		}
		col.Average = average(col.Scores, t.Common)
		t.Columns = append(t.Columns, col)
	}
	return t
}

func average(scores map[string]float64, tasks []string) float64 {
	if len(tasks) == 0 {
		return math.NaN()
	}
	var s float64
	for _, task := range tasks {
		s += scores[task]
	}
	return s / float64(len(tasks))
}

// metricLabel is the metric a task row is labelled with: the columns' metric
// names, joined with "/" when runs disagree.
func (t Table) metricLabel(task string) string {
	var names []string
	seen := map[string]bool{}
	for _, c := range t.Columns {
		if m, ok := c.Metric[task]; ok && !seen[m] {
			seen[m] = true
			names = append(names, m)
		}
	}
	return strings.Join(names, "/")
}

// row is one row of the table: a label and a cell per column.
type row struct {
	label string
	cells []string
}

// rows lays the table out; human selects markdown formatting (SI suffixes,
// scores in percent) over exact CSV numbers.
func (t Table) rows(human bool) []row {
	var rs []row
	add := func(label string, cell func(c Column) string) {
		r := row{label: label}
		for _, c := range t.Columns {
			r.cells = append(r.cells, cell(c))
		}
		rs = append(rs, r)
	}
	num := func(v float64, prec int) string {
		if math.IsNaN(v) {
			return ""
		}
		if human {
			return strconv.FormatFloat(v, 'f', prec, 64)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	count := func(n int64) string {
		if human {
			return SI(float64(n))
		}
		return strconv.FormatInt(n, 10)
	}
	score := func(v float64) string {
		if human && !math.IsNaN(v) {
			v *= 100
		}
		return num(v, 1)
	}
	labels := map[bool][]string{
		true:  {"Variant", "Total params", "Activated params", "FLOPs per 2K tokens", "Training tokens", "Held-out loss (nats/token)"},
		false: {"variant", "total_params", "activated_params", "flops_per_2k_tokens", "tokens", "heldout_loss"},
	}[human]
	add(labels[0], func(c Column) string { return c.Variant })
	add(labels[1], func(c Column) string { return count(c.Total) })
	add(labels[2], func(c Column) string { return count(c.Activated) })
	add(labels[3], func(c Column) string {
		if human {
			return SI(c.FLOPsPer2K)
		}
		return num(c.FLOPsPer2K, 0)
	})
	add(labels[4], func(c Column) string { return count(c.Tokens) })
	add(labels[5], func(c Column) string { return num(c.Loss, 3) })
	for _, task := range t.Tasks {
		label := task + "." + t.metricLabel(task)
		if human {
			label = fmt.Sprintf("%s (%s, %%)", task, t.metricLabel(task))
		}
		add(label, func(c Column) string {
			v, ok := c.Scores[task]
			if !ok {
				if human {
					return "–"
				}
				return ""
			}
			return score(v)
		})
	}
	avgLabel := "average"
	if human {
		avgLabel = fmt.Sprintf("Average score (%d common tasks, %%)", len(t.Common))
	}
	add(avgLabel, func(c Column) string { return score(c.Average) })
	return rs
}

// Markdown writes the table as GitHub markdown: a row per metric, a column
// per run, scores in percent.
func (t Table) Markdown(w io.Writer) error {
	var b strings.Builder
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	b.WriteString("| Metric |")
	for _, c := range t.Columns {
		b.WriteString(" " + esc(c.Name) + " |")
	}
	b.WriteString("\n|---|")
	for range t.Columns {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.rows(true) {
		b.WriteString("| " + esc(r.label) + " |")
		for _, c := range r.cells {
			b.WriteString(" " + esc(c) + " |")
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// HeldOutNote says what the held-out loss is: the one definition compare,
// eval, plot and serve share.
func (t Table) HeldOutNote() string {
	seen := map[int64]bool{}
	var ns []string
	for _, c := range t.Columns {
		if !seen[c.EvalTokens] {
			seen[c.EvalTokens] = true
			if c.EvalTokens == 0 {
				ns = append(ns, "all")
			} else {
				ns = append(ns, units.Commas(c.EvalTokens))
			}
		}
	}
	return "Held-out loss: the run's last evaluation, mean cross-entropy over the first eval.tokens (" + strings.Join(ns, ", ") +
		") tokens of the validation split; `moetrain eval RUN` reports the same number by default."
}

// CSV writes the table with exact values: counts as integers, losses and
// scores (fractions in [0, 1]) with full precision, missing values empty.
func (t Table) CSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := []string{"metric"}
	for _, c := range t.Columns {
		head = append(head, c.Name)
	}
	cw.Write(head)
	for _, r := range t.rows(false) {
		cw.Write(append([]string{r.label}, r.cells...))
	}
	cw.Flush()
	return cw.Error()
}

// SI formats x with three significant digits and an SI suffix: 22.4M, 1.05T.
func SI(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	neg := x < 0
	x = math.Abs(x)
	suffix := []string{"", "K", "M", "G", "T", "P", "E"}
	i := 0
	for x >= 999.5 && i < len(suffix)-1 {
		x /= 1000
		i++
	}
	var s string
	switch {
	case i == 0 && x == math.Trunc(x):
		s = strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 99.95:
		s = strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 9.995:
		s = strconv.FormatFloat(x, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(x, 'f', 2, 64)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if neg {
		s = "-" + s
	}
	return s + suffix[i]
}
