"""`gpufleet stack generate`: a Prometheus (or VictoriaMetrics), Alertmanager and Grafana set-up
that watches a gpufleet fleet through the hub's http_sd.

One module per output (prometheus.py, victoriametrics.py, rules.py, alertmanager.py, grafana.py,
compose.py), each a `files(opts) -> {relative path: text}` registered in generate.OUTPUTS;
files.py writes them all at once (temp folder, then rename), so a failure leaves nothing half-written.
Hub-side only: the agent never imports this package.
"""
