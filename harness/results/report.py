"""``harness report``: one self-contained static HTML page of a results folder (no server, no network: the
styles, the scripts and the charts are inline).

It shows the leaderboard (one tab per metric; columns sortable; the average says what it averages over;
significance marks against a chosen baseline), each cell's provenance on click (settings, fingerprint, model
and dataset checksums, commit, versions), every score beside the published one (the reproduction status),
a bar chart per dataset, what each record cost beside its score (the table of ``harness leaderboard
--efficiency``, device named, and its plot: nDCG@10 against query time and index size, the Pareto front
marked), the per-query comparison of two retrievers, and the training curves of the checkpoints found in the
records. It reads well in light and dark mode and on a laptop screen. Everything is
rendered here in Python; the page's script only switches tabs, sorts and shows provenance, so a reader
without scripts still sees every number.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results.records import ResultRecord

STYLE = """
:root { --bg: #ffffff; --fg: #1d2330; --muted: #5c6677; --line: #d9dee7; --accent: #2a62c9; --good: #1d7f46;
  --bad: #b3261e; --bar: #6f95dd; --panel: #f4f6fa; }
@media (prefers-color-scheme: dark) { :root { --bg: #14171d; --fg: #e6e9ef; --muted: #9aa3b2; --line: #2d333d;
  --accent: #7ea6f5; --good: #5cc98a; --bad: #f08b84; --bar: #5d7fc4; --panel: #1c2028; } }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1240px; padding: 24px; background: var(--bg); color: var(--fg);
  font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: var(--muted); } .good { color: var(--good); } .bad { color: var(--bad); }
nav.tabs { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0; }
nav.tabs button { background: var(--panel); color: var(--fg); border: 1px solid var(--line); border-radius: 6px;
  padding: 5px 12px; cursor: pointer; font: inherit; }
nav.tabs button.active { border-color: var(--accent); color: var(--accent); font-weight: 600; }
.tab { display: none; } .tab.active { display: block; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 14px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, th.t, td.t { text-align: left; } td.wrap { white-space: normal; min-width: 260px; }
th { cursor: pointer; user-select: none; color: var(--muted); font-weight: 600; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
td.cell { cursor: pointer; } td.cell:hover { background: var(--panel); }
#provenance { position: fixed; right: 16px; bottom: 16px; max-width: 520px; max-height: 60vh; overflow: auto;
  background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; display: none;
  font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap; }
#provenance.open { display: block; }
svg text { fill: var(--fg); font-size: 11px; } svg .bar { fill: var(--bar); } svg .axis { stroke: var(--line); }
svg .line { fill: none; stroke: var(--accent); stroke-width: 2; } svg .dot { fill: var(--accent); }
.charts { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 8px 0 14px; } figure img { max-width: 100%; height: auto; background: #ffffff; border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; }
"""

SCRIPT = """
function showTab(group, name) {
  document.querySelectorAll('[data-tab-group="' + group + '"]').forEach(function (el) {
    el.classList.toggle('active', el.dataset.tab === name);
  });
}
function sortTable(th) {
  var table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
  var dir = th.classList.contains('sorted-desc') ? 1 : -1;
  table.querySelectorAll('th').forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
  th.classList.add(dir === 1 ? 'sorted-asc' : 'sorted-desc');
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[col].dataset.sort || a.cells[col].textContent;
    var y = b.cells[col].dataset.sort || b.cells[col].textContent;
    var nx = parseFloat(x), ny = parseFloat(y);
    if (!isNaN(nx) && !isNaN(ny)) { return dir * (nx - ny); }
    if (isNaN(nx) !== isNaN(ny)) { return isNaN(nx) ? 1 : -1; }
    return dir * x.localeCompare(y);
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
function showProvenance(td) {
  var panel = document.getElementById('provenance');
  panel.textContent = td.dataset.provenance;
  panel.classList.add('open');
}
document.addEventListener('click', function (e) {
  var t = e.target, button = t.closest('nav.tabs button'), th = t.closest('th'), cell = t.closest('td.cell');
  if (button) { showTab(button.dataset.tabGroup, button.dataset.tab); }
  else if (th) { sortTable(th); }
  else if (cell) { showProvenance(cell); }
  else if (!t.closest('#provenance')) { document.getElementById('provenance').classList.remove('open'); }
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x:.4f}"


def _provenance(rec: ResultRecord) -> str:
    prov = rec.retriever_provenance
    parts = {"retriever": rec.label, "dataset": f"{rec.dataset}/{rec.split}", "settings": rec.settings or "reference",
             "fingerprint": rec.fingerprint[:16], "model": prov.get("model"), "revision": prov.get("revision"),
             "model files sha256": prov.get("model_files_sha256"), "compute": prov.get("compute"),
             "dataset files": rec.dataset_provenance.get("sha256"), "documents": rec.corpus.get("documents"),
             "protocol": rec.protocol, "harness": rec.harness_version,
             "git commit": rec.environment.get("git_commit"), "created": rec.environment.get("created"),
             "packages": rec.environment.get("packages"), "run file": rec.run_file}
    return json.dumps({k: v for k, v in parts.items() if v is not None}, indent=1, ensure_ascii=False)


def _tabs(group: str, names: Sequence[str]) -> str:
    buttons = "".join(f'<button data-tab-group="{_e(group)}" data-tab="{_e(n)}" class="{"active" if i == 0 else ""}">'
                      f"{_e(n)}</button>" for i, n in enumerate(names))
    return f'<nav class="tabs">{buttons}</nav>'


def leaderboard_section(records: Sequence[ResultRecord], baseline: str | None) -> str:
    from harness.results.leaderboard import fold, significance_marks, table

    df = fold(records)
    metrics = [c for c in df.columns if c not in ("retriever", "settings", "dataset", "split")]
    by_cell = {(r.label, r.dataset): r for r in records}
    out = ["<h2>Leaderboard</h2>", _tabs("metric", metrics)]
    for i, metric in enumerate(metrics):
        pivot, averaged, notes = table(df, metric)
        marks: dict[tuple[str, str], str] = {}
        if baseline and not pivot.empty:
            try:
                marks, _, extra = significance_marks(records, pivot, metric, baseline)
                notes = notes + extra
            except Exception as e:  # a baseline missing from this metric's table: say so, keep the table
                notes = [*notes, f"no significance marks: {e}"]
        head = "".join(f"<th>{_e(c)}</th>" for c in ["retriever", *pivot.columns])
        rows = []
        for name, row in pivot.iterrows():
            cells = [f"<td>{_e(name)}</td>"]
            for col, value in row.items():
                rec = by_cell.get((str(name), str(col)))
                mark = marks.get((name, col), "")
                cls = ' class="good"' if mark == "▲" else ' class="bad"' if mark == "▼" else ""
                prov = f' class="cell" data-provenance="{_e(_provenance(rec))}"' if rec else ""
                sort = "" if value != value else f' data-sort="{value:.6f}"'
                cells.append(f"<td{prov}{sort}><span{cls}>{_fmt(value)}{(' ' + mark) if mark else ''}</span></td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        avg = f"avg = mean of {metric} over {len(averaged)} datasets: {', '.join(averaged)}"
        notes_html = "".join(f'<div class="muted">{_e(n)}</div>' for n in [avg, *notes])
        out.append(f'<section class="tab{" active" if i == 0 else ""}" data-tab-group="metric" data-tab="{_e(metric)}">'
                   f'<div class="scroll"><table class="leaderboard" data-metric="{_e(metric)}"><thead><tr>{head}</tr>'
                   f'</thead><tbody>{"".join(rows)}</tbody></table></div>{notes_html}'
                   f'{_charts(pivot, metric)}</section>')
    return "\n".join(out)


def _charts(pivot: Any, metric: str) -> str:
    """One horizontal bar chart per dataset (inline SVG)."""
    charts = []
    for col in [c for c in pivot.columns if not str(c).startswith("avg (")]:
        values = [(str(n), float(v)) for n, v in pivot[col].items() if v == v]
        if not values:
            continue
        labels = [_short_label(name) for name, _ in values]
        left = 12 + 7 * max(len(label) for label in labels)  # room for the longest label (about 7 px a character)
        w, bar = left + 230, 18
        h = bar * len(values) + 24
        items = []
        for j, ((name, v), label) in enumerate(zip(values, labels, strict=True)):
            y = 18 + j * bar
            items.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{_e(label)}</text>'
                         f'<rect class="bar" x="{left}" y="{y + 2}" width="{max(1.0, v * (w - left - 50)):.1f}" '
                         f'height="{bar - 5}"><title>{_e(name)}: {v:.4f}</title></rect>'
                         f'<text x="{left + v * (w - left - 50) + 4:.1f}" y="{y + 12}">{v:.4f}</text>')
        charts.append(f'<svg width="{w}" height="{h}" role="img" aria-label="{_e(metric)} on {_e(col)}">'
                      f'<text x="0" y="12">{_e(col)} · {_e(metric)}</text>{"".join(items)}</svg>')
    return f'<div class="charts">{"".join(charts)}</div>' if charts else ""


def _short_label(name: str, most: int = 36) -> str:
    """A bar's label: the name, or its start and end around an ellipsis (the whole name is the bar's title)."""
    return name if len(name) <= most else name[: most // 2 - 1] + "…" + name[-(most // 2):]


def efficiency_section(records: Sequence[ResultRecord], metric: str = "ndcg@10") -> str:
    """What each record cost beside its score (``metric``, else the first metric the records hold): the table
    of ``harness leaderboard --efficiency`` with its notes (what each figure is, how latency was measured, the
    devices), and the same plot as its ``--plot`` (``plots.efficiency_chart``), inline as a PNG."""
    import base64
    import tempfile

    from harness.results.efficiency import COLUMNS, devices_of, efficiency_frame, efficiency_notes, format_cell
    from harness.results.plots import efficiency_chart

    held = [m for r in records for m in r.metrics]
    if metric not in held:
        if not held:
            return ""
        metric = held[0]
    frame, problems = efficiency_frame(list(records), metric)
    costs = [k for k, _, _ in COLUMNS if k != "device"]
    if not any(isinstance(v, int | float) and not isinstance(v, bool) for k in costs for v in frame[k]):
        return ""  # records from before efficiency was measured: nothing to show but dashes
    head = "".join(f'<th{cls}>{_e(h)}</th>' for h, cls in [("retriever", ""), ("dataset", ' class="t"'),
                                                            (metric, ""), ("device", ' class="t"'),
                                                            *((h, "") for k, h, _ in COLUMNS if k != "device")])
    rows = []
    for row in frame.to_dict("records"):
        cells = [f"<td>{_e(row['retriever'])}</td>", f'<td class="t">{_e(row["dataset"])}</td>',
                 f'<td data-sort="{row[metric]:.6f}">{row[metric]:.4f}</td>',
                 f'<td class="t">{_e(format_cell(row, "device"))}</td>']
        for key, _, _ in COLUMNS:
            if key != "device":
                value = row[key]
                number = isinstance(value, int | float) and not isinstance(value, bool)
                sort = f' data-sort="{float(value):.6f}"' if number else ""
                cells.append(f"<td{sort}>{_e(format_cell(row, key))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f'<div class="muted">{_e(n)}</div>' for n in [*efficiency_notes(frame), *problems])
    devices = devices_of(frame)
    where = (f"measured on {devices[0]}" if len(devices) == 1 else "device unknown" if not devices else
             f"measured on {len(devices)} devices ({', '.join(devices)}): a marker and a Pareto front per device; "
             "compare times only within one device")
    plotted = any(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for key in
                  ("search_ms_per_query", "search_ms_p50", "index_bytes") for v in frame[key])
    figure = '<p class="muted">no plot: no record here measured its query time or index size</p>'
    if plotted:
        with tempfile.TemporaryDirectory() as tmp:
            png = efficiency_chart(frame, metric, Path(tmp) / "efficiency.png", dpi=100).read_bytes()
        alt = f"{metric} against query time and index size, Pareto front marked; {where}"
        figure = (f'<figure class="efficiency"><img alt="{_e(alt)}" title="{_e(alt)}" '
                  f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
                  f"<figcaption>{_e(metric)} against search ms/query (batch mean), query latency p50 where "
                  "measured, and index size (log scales); the ringed points and their line are the Pareto front "
                  f"of each dataset on each device (nothing cheaper scores higher); {_e(where)}</figcaption>"
                  "</figure>")
    return (f"<h2>Efficiency: {_e(metric)} beside what it cost</h2>"
            f'<div class="scroll"><table class="efficiency" data-metric="{_e(metric)}"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div>{notes}{figure}')


def published_section(records: Sequence[ResultRecord]) -> str:
    """Every score beside its published counterpart, with OK/FAIL at half a unit of the published figure."""
    from harness.results.baselines import load_published
    from harness.results.leaderboard import against_published, fold

    try:
        published, systems = load_published()
    except Exception as e:  # no baselines folder beside this installation
        return f'<h2>Reproduction</h2><p class="muted">no published scores ({_e(e)})</p>'
    df = fold(records)
    rows = []
    for metric in [c for c in df.columns if c not in ("retriever", "settings", "dataset", "split")]:
        side = against_published(df, metric, published, systems)
        for r in side.itertuples():
            if r.published != r.published:
                continue
            ok = abs(r.delta) <= r.tolerance + 1e-9
            status = '<span class="good">OK</span>' if ok else '<span class="bad">FAIL</span>'
            delta = round(r.delta, 4) + 0.0  # no "-0.0000" for a float-rounding difference
            rows.append(f'<tr><td>{_e(r.retriever)}</td><td class="t">{_e(r.dataset)}</td><td class="t">{_e(metric)}'
                        f"</td><td>{r.ours:.4f}</td><td>{r.published:.4f}</td><td>{delta:+.4f}</td><td>{status}</td>"
                        f'<td class="t">{_e(r.system)}</td><td class="t wrap">{_e(r.source)}'
                        f"{(' · ' + _e(r.note)) if r.note else ''}</td></tr>")
    if not rows:
        return '<h2>Reproduction</h2><p class="muted">no result here has a published counterpart</p>'
    head = "".join(f'<th{cls}>{h}</th>' for h, cls in (("retriever", ""), ("dataset", ' class="t"'),
                                                       ("metric", ' class="t"'), ("ours", ""), ("published", ""),
                                                       ("delta", ""), ("status", ""), ("published as", ' class="t"'),
                                                       ("source", ' class="t"')))
    return (f'<h2>Reproduction</h2><div class="scroll"><table class="reproduction"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>'
            '<div class="muted">OK: within half a unit of the published figure\'s last decimal '
            "(<code>harness reproduce</code> runs the whole matrix)</div>")


def pair_section(records: Sequence[ResultRecord], pair: Sequence[str] | None, baseline: str | None = None) -> str:
    """The per-query comparison of two retrievers on every dataset both ran (by default the baseline against
    the first other retriever, or the first two)."""
    from harness.results.baselines import same_retriever
    from harness.results.stats import compare_records
    from harness.settings import RESAMPLES, SEED

    labels = list(dict.fromkeys(r.label for r in records))
    unknown = [n for n in (pair or []) if n not in labels]
    if unknown:
        raise HarnessError(f"--pair {unknown[0]!r}: no record of that name in these results; names: "
                           f"{', '.join(labels)}")
    if baseline and not pair:
        first = next((n for n in labels if same_retriever(n, baseline)), None)
        if first is not None:
            labels = [first, *[n for n in labels if n != first]]
    a, b = (pair[0], pair[1]) if pair and len(pair) == 2 else (labels + [None, None])[:2]
    if not a or not b:
        return ""
    out = [f"<h2>Per query: {_e(b)} against {_e(a)}</h2>"]
    for ds in sorted({r.dataset for r in records}):
        ra = next((r for r in records if r.label == a and r.dataset == ds), None)
        rb = next((r for r in records if r.label == b and r.dataset == ds), None)
        if ra is None or rb is None:
            continue
        metric = next((m for m in ra.per_query if m in rb.per_query), None)
        if metric is None:
            continue
        try:
            c = compare_records(ra, rb, metric)  # the same statistics as `harness compare`: RESAMPLES, SEED
        except Exception as e:  # different query sets: say so
            out.append(f'<p class="muted">{_e(ds)}: {_e(e)}</p>')
            continue
        diffs = sorted(c.diffs)
        w, h = 520, 120
        n = len(diffs)
        lo, hi = min(min(diffs), -1e-9), max(max(diffs), 1e-9)
        zero = h - 16 - (0 - lo) / (hi - lo) * (h - 28)
        pts = " ".join(f"{8 + i * (w - 16) / max(1, n - 1):.1f},{h - 16 - (d - lo) / (hi - lo) * (h - 28):.1f}"
                       for i, d in enumerate(diffs))
        out.append(f'<p>{_e(ds)} · {_e(metric)}: mean {c.mean_b:.4f} against {c.mean_a:.4f}, difference '
                   f'{c.mean_diff:+.4f} (95% percentile bootstrap CI {c.ci_low:+.4f} to {c.ci_high:+.4f}, '
                   f'{RESAMPLES:,} resamples, seed {SEED}), wins/ties/losses '
                   f'{c.wins}/{c.ties}/{c.losses}, paired t p={c.t.pvalue:.3g}, randomization p='
                   f'{c.randomization.pvalue:.3g}; detectable with 80% power over these {c.queries} queries: '
                   f'{c.detectable:.4f}</p>'
                   f'<svg width="{w}" height="{h}" role="img" aria-label="sorted per-query differences">'
                   f'<line class="axis" x1="8" x2="{w - 8}" y1="{zero:.1f}" y2="{zero:.1f}"/>'
                   f'<polyline class="line" points="{pts}"/><text x="8" y="12">sorted per-query differences '
                   f'({_e(b)} − {_e(a)})</text></svg>')
    return "\n".join(out) if len(out) > 1 else ""


_CHECKPOINT = re.compile(r"^(?P<run>.*?)[/\\]checkpoint-(?P<step>\d+)(#[0-9a-f]{8})?$")


def training_section(records: Sequence[ResultRecord]) -> str:
    """Training curves: the records of checkpoints of one run (``.../checkpoint-<step>``), metric by step."""
    runs: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for r in records:
        m = _CHECKPOINT.match(r.retriever)
        if not m:
            continue
        for metric, value in r.metrics.items():
            runs.setdefault((m["run"], r.dataset, metric), []).append((int(m["step"]), value))
    charts = []
    for (run, ds, metric), points in sorted(runs.items()):
        points.sort()
        if len(points) < 2:
            continue
        w, h = 360, 150
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1, y0 = min(xs), max(xs), min(ys)
        y1 = max(ys) if max(ys) > y0 else y0 + 1e-6
        scaled = [(x, y, 30 + (x - x0) / max(1, x1 - x0) * (w - 50), h - 20 - (y - y0) / (y1 - y0) * (h - 44))
                  for x, y in points]
        pts = " ".join(f"{px:.1f},{py:.1f}" for _, _, px, py in scaled)
        dots = "".join(f'<circle class="dot" cx="{px:.1f}" cy="{py:.1f}" r="3"><title>step {x}: {y:.4f}'
                       f"</title></circle>" for x, y, px, py in scaled)
        charts.append(f'<svg width="{w}" height="{h}" role="img" aria-label="training curve">'
                      f'<text x="0" y="12">{_e(Path(run).name)} · {_e(ds)} · {_e(metric)}</text>'
                      f'<polyline class="line" points="{pts}"/>{dots}'
                      f'<text x="30" y="{h - 4}">step {x0}</text><text x="{w - 70}" y="{h - 4}">step {x1}</text></svg>')
    return f'<h2>Training curves</h2><div class="charts">{"".join(charts)}</div>' if charts else ""


def report(output_dir: Path, *, baseline: str | None = None, pair: Sequence[str] | None = None,
           title: str = "harness report", warn: Callable[[str], None] | None = None) -> str:
    """The whole page as a string; ``warn`` is told each record left out (two records for one row)."""
    from harness.results.records import load_records, unique_records

    found, problems = load_records(output_dir)
    records, conflicts = unique_records(found)
    if warn is not None:
        for line in conflicts:
            warn(line)
    if baseline:  # a name no record has is a typo: refused as leaderboard --baseline refuses it
        from harness.results.baselines import same_retriever

        labels = sorted({r.label for r in records})
        if not any(same_retriever(label, baseline) for label in labels):
            raise HarnessError(f"--baseline {baseline!r} is not a retriever of {output_dir}; retrievers: "
                               f"{', '.join(labels) or 'none'}")
    body = [f"<h1>{_e(title)}</h1>",
            f'<div class="muted">{len(records)} result records in {_e(output_dir)}'
            f"{'; ' + str(len(problems)) + ' files skipped (not valid records)' if problems else ''}"
            f"{'; ' + '; '.join(_e(c) for c in conflicts) if conflicts else ''}. "
            "Click a score for its provenance; click a column to sort.</div>"]
    if records:
        body += [leaderboard_section(records, baseline), efficiency_section(records), published_section(records),
                 pair_section(records, pair, baseline), training_section(records)]
    else:
        body.append("<p>no results yet: <code>harness run</code> writes them</p>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(b for b in body if b)
            + f'<div id="provenance" role="dialog" aria-label="provenance"></div><script>{SCRIPT}</script>'
            "</body></html>\n")


def write_report(output_dir: Path, path: Path, **kwargs: Any) -> Path:
    from harness.io import atomic_write

    atomic_write(path, report(output_dir, **kwargs))
    return path
