package rundir

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/moetrain/moetrain/internal/atomicfile"
)

// Metrics is one line of metrics.jsonl. Train lines carry the loss fields;
// eval lines carry Task, Metric and Value (one line per task metric).
type Metrics struct {
	Kind       string             `json:"kind"` // "train" or "eval"
	Tokens     int64              `json:"tokens"`
	Step       int64              `json:"step"`
	LR         float64            `json:"lr,omitempty"`
	Loss       float64            `json:"loss,omitempty"`
	Balance    map[string]float64 `json:"balance,omitempty"` // "layer<i>.expert" / "layer<i>.device"
	GradNorm   float64            `json:"grad_norm,omitempty"`
	TokensPerS float64            `json:"tokens_per_s,omitempty"` // over the steps since the last train line; evaluations and checkpoints excluded
	MFU        float64            `json:"mfu,omitempty"`
	MoE        []LayerStats       `json:"moe,omitempty"`
	Task       string             `json:"task,omitempty"`
	Metric     string             `json:"metric,omitempty"`
	Value      *float64           `json:"value,omitempty"`
	Elapsed    float64            `json:"elapsed_s,omitempty"`

	// EPLoad is, under expert parallelism, the share of the last
	// micro-batch's routed (token, expert) pairs each expert-parallel rank
	// computed (all MoE layers, all ranks' tokens).
	EPLoad []float64 `json:"ep_load,omitempty"`
}

// LayerStats summarises one MoE layer's routing over the last step.
type LayerStats struct {
	Layer int `json:"layer"`
	// LoadMaxOverMean is the busiest expert's (token, slot) count over the mean.
	LoadMaxOverMean float64 `json:"load_max_over_mean"`
	// DeadShare is the fraction of routed experts that received no token.
	DeadShare float64 `json:"dead_share"`
	// RouterEntropy is the mean entropy (nats) of the router's softmax per
	// token; ln E is uniform. Zero for hash layers (no router).
	RouterEntropy float64 `json:"router_entropy"`
	// Load is each routed expert's share of the layer's (token, slot)
	// pairs in the step's last micro-batch (it sums to 1; 1/E is uniform,
	// 0 a dead expert), rounded to 5 decimals to keep the lines short. The
	// expert-load heatmaps are drawn from it.
	Load []float64 `json:"load,omitempty"`
	// MaxVio is max_e load_e / mean_e load_e − 1 over the whole step's
	// micro-batches on rank 0 (DeepSeek-V3's balance measure; 0 is
	// perfectly balanced). Nil for lines written before it was logged: a
	// missing value must not read as a perfect balance.
	MaxVio *float64 `json:"max_vio,omitempty"`
	// BiasMin and BiasMax are the range of the layer's router selection
	// bias after the step (model.router.bias_rate > 0 only).
	BiasMin *float64 `json:"bias_min,omitempty"`
	BiasMax *float64 `json:"bias_max,omitempty"`
	// Dropped is the fraction of the step's (token, slot) pairs on rank 0
	// that exceeded their expert's capacity and skipped it
	// (model.router.capacity_factor > 0 only).
	Dropped *float64 `json:"dropped,omitempty"`
}

// MetricsWriter appends JSON lines to RUN/metrics.jsonl. A nil
// *MetricsWriter discards them (the ranks other than 0 of a data-parallel
// run).
type MetricsWriter struct {
	f *os.File
}

// OpenMetrics opens the metrics file for appending, first dropping every
// line past the resumed token count: those steps are trained again, and the
// file must read as if the run had never stopped.
func OpenMetrics(path string, keepUpTo int64) (*MetricsWriter, error) {
	raw, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	var kept bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var m struct {
			Tokens int64 `json:"tokens"`
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.Tokens > keepUpTo {
			continue
		}
		kept.Write(sc.Bytes())
		kept.WriteByte('\n')
	}
	if kept.Len() != len(raw) {
		if err := atomicfile.WriteFile(path, kept.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("rewrite metrics: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open metrics: %w", err)
	}
	return &MetricsWriter{f: f}, nil
}

// Write appends one line.
func (m *MetricsWriter) Write(x Metrics) error {
	if m == nil {
		return nil
	}
	raw, err := json.Marshal(x)
	if err != nil {
		return err
	}
	_, err = m.f.Write(append(raw, '\n'))
	return err
}

// Close closes the file.
func (m *MetricsWriter) Close() error {
	if m == nil {
		return nil
	}
	return m.f.Close()
}

// ReadMetrics reads every line of a run's metrics.jsonl. A last line
// without its newline that does not parse is one being written (a live
// run): it is left out, not an error.
func ReadMetrics(path string) ([]Metrics, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	var out []Metrics
	lines := bytes.Split(raw, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m Metrics
		if err := json.Unmarshal(line, &m); err != nil {
			if i == len(lines)-1 {
				break // a partial last line
			}
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}
