package serve

import "html/template"

// head is shared by the pages: the style and the poller. The poller asks
// /version every two seconds and, when the runs' metrics changed, fetches
// the page again and swaps its body in (no reload flash, no library).
const head = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{block "title" .}}moetrain{{end}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img.chart { width: 100%; max-width: 1100px; display: block; margin: 0.5rem 0; }
.status-training { color: #2ca02c; font-weight: bold; } .status-stopped { color: #d62728; }
.muted { color: #777; font-size: 0.85rem; }
details { margin: 0.5rem 0; }
</style>
<script>
(function () {
  async function poll() {
    try {
      const run = document.body.dataset.run || "";
      const r = await fetch("/version" + (run ? "?r=" + encodeURIComponent(run) : ""), { cache: "no-store" });
      const v = (await r.text()).trim();
      if (r.ok && v !== document.body.dataset.version) {
        const page = await fetch(location.href, { cache: "no-store" });
        const doc = new DOMParser().parseFromString(await page.text(), "text/html");
        document.body.innerHTML = doc.body.innerHTML;
        document.body.dataset.version = doc.body.dataset.version;
      }
    } catch (e) { /* the server is gone or restarting: keep trying */ }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
})();
</script>
</head>`

var indexTmpl = template.Must(template.New("index").Funcs(funcs).Parse(head + `
<body data-version="{{.Version}}">
<h1>moetrain runs</h1>
<p class="muted">Runs under {{.Roots}}; the page updates while they train. Held-out loss: the in-training evaluation on the validation split (eval.tokens tokens), as in metrics.jsonl.</p>
<table id="runs">
<tr><th>run</th><th>model</th><th>status</th><th>tokens</th><th>train loss</th><th>held-out loss</th><th>tokens/s</th><th>updated</th></tr>
{{range .Rows}}<tr data-run="{{.Name}}" data-tokens="{{.Tokens}}"{{if .HasTrain}} data-train-loss="{{g .TrainLoss}}"{{end}}{{if .HasHeldOut}} data-heldout-loss="{{g .HeldOut}}"{{end}}>
<td><a href="/run?r={{.Name}}">{{.Name}}</a></td>
{{if .Err}}<td colspan="7" class="muted">{{.Err}}</td>{{else}}
<td>{{.Variant}}</td><td class="status-{{.Status}}">{{.Status}}</td>
<td>{{commas .Tokens}} / {{commas .Budget}} ({{pct .Tokens .Budget}}%)</td>
<td>{{if .HasTrain}}{{f4 .TrainLoss}}{{end}}</td><td>{{if .HasHeldOut}}{{f4 .HeldOut}}{{end}}</td>
<td>{{if .HasThroughp}}{{f0 .TokensPerS}}{{end}}</td><td class="muted">{{.Updated}}</td>{{end}}
</tr>
{{end}}</table>
{{with .Compare}}
<h2>Compare (the table of <code>moetrain compare</code>, runs with evaluations)</h2>
<table id="compare">
<tr><th>metric</th>{{range .Names}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr data-metric="{{.Label}}"><td>{{.Label}}</td>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{end}}
</body></html>`))

var runTmpl = template.Must(template.New("run").Funcs(funcs).Parse(head + `
<body data-version="{{.Version}}" data-run="{{.Name}}">
<p><a href="/">all runs</a></p>
<h1>{{.Name}}</h1>
{{if .Err}}<p class="muted">{{.Dir}}: {{.Err}}</p>{{else}}
<p>{{.Variant}} · <span class="status-{{.Status}}">{{.Status}}</span> · {{commas .Tokens}} of {{commas .Budget}} tokens · updated {{.Updated}} · <span class="muted">{{.Dir}}</span></p>

<h2>Loss</h2>
<img class="chart" id="chart-loss" alt="training and held-out loss" src="/fig?r={{.Name}}&f=loss&v={{.Version}}">
<p class="muted">Held-out loss: the in-training evaluation on the validation split ({{commas .EvalTokens}} tokens, eval.tokens).</p>
<details><summary>held-out loss ({{len .HeldOut}} points)</summary>
<table id="heldout"><tr><th>tokens</th><th>held-out loss</th></tr>
{{range .HeldOut}}<tr data-tokens="{{.Tokens}}" data-loss="{{g .Value}}"><td>{{commas .Tokens}}</td><td>{{f4 .Value}}</td></tr>
{{end}}</table></details>

<h2>Learning rate, gradient norm, throughput, balance losses</h2>
<img class="chart" id="chart-dynamics" alt="learning rate, gradient norm, tokens per second and balance losses" src="/fig?r={{.Name}}&f=dynamics&v={{.Version}}">
<details><summary>train lines ({{len .Train}})</summary>
<table id="train"><tr><th>tokens</th><th>step</th><th>loss</th><th>lr</th><th>grad norm</th><th>tokens/s</th><th>balance losses</th></tr>
{{range .Train}}<tr data-tokens="{{.Tokens}}" data-loss="{{g .Loss}}" data-lr="{{g .LR}}" data-grad-norm="{{g .GradNorm}}" data-tokens-per-s="{{g .TPS}}" data-balance="{{.Balance}}">
<td>{{commas .Tokens}}</td><td>{{.Step}}</td><td>{{f4 .Loss}}</td><td>{{g3 .LR}}</td><td>{{g3 .GradNorm}}</td><td>{{f0 .TPS}}</td><td class="muted">{{.Balance}}</td></tr>
{{end}}</table></details>

<h2>Expert load</h2>
{{if .HasLoad}}<img class="chart" id="chart-load" alt="per-layer expert load over training" src="/fig?r={{.Name}}&f=load&v={{.Version}}">
<table id="load"><tr><th>layer</th><th>at tokens</th><th>dead experts</th><th>busiest / even share</th></tr>
{{range .Loads}}<tr data-layer="{{.Layer}}" data-tokens="{{.Tokens}}" data-load="{{.Load}}"><td>{{.Layer}}</td><td>{{commas .Tokens}}</td><td>{{.Dead}}</td><td>{{g3 .Max}}</td></tr>
{{end}}</table>
{{else}}<p class="muted">No per-expert load logged yet (a dense run, or fewer than two train lines).</p>{{end}}
{{end}}
</body></html>`))
