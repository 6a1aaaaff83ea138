"""The report's HTML: one self-contained page (inline CSS, inline JS, data and JPEGs embedded).

Nothing is fetched: no network, no external scripts, fonts or images, so the file opens the
same after ``scp`` to a laptop. The records travel as one JSON blob; a little script renders
one page of them at a time (so 10,000 records stay responsive) and applies the filters. All
record text is inserted with ``textContent``, never as HTML.

The filter state lives in the URL fragment (``#status=error&flag=truncated&q=dog&page=2``),
so a filtered view can be bookmarked or opened directly.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

import orjson

PAGE_SIZE = 50

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
 background:#fafafa}
header.top{padding:16px 24px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 6px}
.muted{color:#777}
.notes-top li{color:#8a5a00}
table.summary{border-collapse:collapse;margin:8px 0}
table.summary td,table.summary th{border:1px solid #ddd;padding:3px 8px;text-align:right}
table.summary th{background:#f3f3f3}
table.summary td:first-child,table.summary th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:24px}
figure.chart{margin:8px 0}
figure.chart figcaption{font-weight:600;margin-bottom:4px}
figure.chart svg text{font-size:11px;fill:#333}
.controls{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd;padding:8px 24px;
 display:flex;flex-wrap:wrap;gap:12px;align-items:center}
.controls input[type=search]{width:260px}
main{padding:8px 24px 40px}
article.rec{background:#fff;border:1px solid #ddd;border-left:5px solid #2e7d32;border-radius:4px;
 margin:10px 0;padding:8px 12px}
article.rec.s-error{border-left-color:#c62828}
article.rec.s-skipped{border-left-color:#757575}
.rec header{display:flex;flex-wrap:wrap;gap:8px;align-items:baseline}
.rid{font-weight:600}
.where{color:#888;font-size:12px}
.badge{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;background:#1565c0;font-size:12px}
.badge.s-ok{background:#2e7d32}.badge.s-error{background:#c62828}.badge.s-skipped{background:#757575}
.badge.flag{background:#ef6c00}
.strip{margin:6px 0}
.vlabel{font-size:12px;color:#555}
.frames{display:flex;flex-wrap:wrap;gap:4px}
.frames figure{margin:0;text-align:center}
.frames img{display:block;border:1px solid #ccc}
.frames figcaption{font-size:11px;color:#555}
.missing{color:#c62828;font-size:13px}
.caption{white-space:pre-wrap;margin:6px 0}
.clabel{font-size:12px;color:#555;margin-top:6px}
.clabel .prompt{white-space:pre-wrap;font-style:italic}
.error{color:#c62828;white-space:pre-wrap}
ul.rnotes{margin:4px 0;padding-left:18px;color:#8a5a00;font-size:13px}
.info{font-size:12px;color:#444}
.window{display:flex;gap:12px;border-top:1px dashed #ddd;padding-top:6px;margin-top:6px}
.window .wtime{min-width:110px;font-size:12px}
.shot{font-size:13px;color:#333;margin:4px 0}
.pager button{margin:0 4px}
"""

_JS = r"""
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const RECS = DATA.records;
  const PAGE = DATA.page_size;
  for (const r of RECS) {
    const texts = [r.caption || ""].concat((r.windows || []).map(w => w.caption || ""));
    r.search = texts.join("\n").toLowerCase();
  }
  const st = {status: "", flag: "", q: "", page: 1};
  const $ = id => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function secs(t) { return (Math.round(t * 100) / 100).toFixed(2) + " s"; }

  // A shot record of `vidcap clips`: where it lies in the source video.
  function shotLine(s) {
    const span = (s.start === null ? "0.00 s" : secs(s.start)) + " – " +
                 (s.end === null ? "the end" : secs(s.end));
    const length = s.start !== null && s.end !== null ? " (" + secs(s.end - s.start) + ")" : "";
    const kind = s.kind ? ", starts at a " + s.kind : "";
    return el("div", "shot", "shot " + s.id + ": " + span + " of the source video" + length + kind);
  }

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    st.status = p.get("status") || "";
    st.flag = p.get("flag") || "";
    st.q = p.get("q") || "";
    st.page = Math.max(1, parseInt(p.get("page") || "1", 10) || 1);
    $("f-status").value = st.status;
    $("f-flag").value = st.flag;
    $("f-q").value = st.q;
  }
  function writeHash() {
    const p = new URLSearchParams();
    if (st.status) p.set("status", st.status);
    if (st.flag) p.set("flag", st.flag);
    if (st.q) p.set("q", st.q);
    if (st.page > 1) p.set("page", String(st.page));
    history.replaceState(null, "", "#" + p.toString());
  }
  function matches(r) {
    if (st.status && r.status !== st.status) return false;
    if (st.flag === "(any)" && !r.all_flags.length) return false;
    if (st.flag === "(none)" && r.all_flags.length) return false;
    if (st.flag && st.flag[0] !== "(" && !r.all_flags.includes(st.flag)) return false;
    if (st.q && !r.search.includes(st.q.toLowerCase())) return false;
    return true;
  }

  function badges(parent, status, flags) {
    if (status) parent.appendChild(el("span", "badge s-" + status, status));
    for (const f of flags || []) parent.appendChild(el("span", "badge flag", f));
  }
  function info(parent, obj) {
    const keys = Object.keys(obj || {});
    if (!keys.length) return;
    parent.appendChild(el("div", "info", keys.map(k => k + ": " + JSON.stringify(obj[k])).join(" · ")));
  }
  function strip(s) {
    const box = el("div", "strip");
    let label = s.label;
    if (s.planned !== null && s.planned !== undefined) {
      label += " · " + s.frames.length + " of " + s.planned + " planned frames";
    }
    box.appendChild(el("div", "vlabel", label));
    if (s.error) {
      box.appendChild(el("div", "missing", "video not shown: " + s.error));
    } else {
      const frames = el("div", "frames");
      for (const [t, src] of s.frames) {
        const fig = el("figure");
        const img = el("img");
        img.src = src;
        img.width = s.width;
        img.height = s.height;
        img.alt = s.label + " at " + secs(t);
        fig.appendChild(img);
        fig.appendChild(el("figcaption", null, secs(t)));
        frames.appendChild(fig);
      }
      box.appendChild(frames);
    }
    if (s.notes && s.notes.length) {
      const ul = el("ul", "rnotes");
      for (const n of s.notes) ul.appendChild(el("li", null, n));
      box.appendChild(ul);
    }
    return box;
  }
  // A windowed record's caption is its summary (with the prompt that made it) or its windows'
  // captions joined: say which, so a summary is not read as a caption of the frames above it.
  function captionLabel(r) {
    if (r.caption_kind === "timed") {
      return el("div", "clabel", "caption: the windows' captions below, one line each");
    }
    const box = el("div", "clabel", "summary of the windows' captions · prompt: ");
    box.appendChild(el("span", "prompt", r.summary_prompt === null
      ? "(not in the run summary)" : r.summary_prompt));
    return box;
  }
  function card(r) {
    const a = el("article", "rec s-" + r.status);
    a.dataset.id = r.id;
    a.dataset.status = r.status;
    const h = el("header");
    h.appendChild(el("span", "rid", r.id));
    badges(h, r.status, r.flags);
    h.appendChild(el("span", "where", r.where));
    a.appendChild(h);
    if (r.shot) a.appendChild(shotLine(r.shot));
    for (const s of r.strips) a.appendChild(strip(s));
    if (r.caption !== null && r.caption_kind !== "caption") a.appendChild(captionLabel(r));
    if (r.caption !== null) a.appendChild(el("div", "caption", r.caption));
    if (r.error !== null) a.appendChild(el("div", "error", "error: " + r.error));
    info(a, r.info);
    if (r.notes.length || r.problems.length) {
      const ul = el("ul", "rnotes");
      for (const n of r.notes) ul.appendChild(el("li", null, n));
      for (const n of r.problems) ul.appendChild(el("li", null, "report: " + n));
      a.appendChild(ul);
    }
    for (const w of r.windows) {
      const row = el("div", "window");
      const t = el("div", "wtime");
      t.appendChild(el("div", null, (w.start === null ? "?" : secs(w.start)) + " – " +
                                    (w.end === null ? "?" : secs(w.end))));
      badges(t, w.status, w.flags);
      row.appendChild(t);
      const body = el("div", "wbody");
      for (const s of w.strips) body.appendChild(strip(s));
      if (w.caption !== null) body.appendChild(el("div", "caption", w.caption));
      info(body, w.info);
      row.appendChild(body);
      a.appendChild(row);
    }
    return a;
  }

  function render() {
    const hits = RECS.filter(matches);
    const pages = Math.max(1, Math.ceil(hits.length / PAGE));
    st.page = Math.min(st.page, pages);
    const first = (st.page - 1) * PAGE;
    const list = $("records");
    list.replaceChildren(...hits.slice(first, first + PAGE).map(card));
    $("count").textContent = hits.length
      ? (first + 1) + "–" + Math.min(first + PAGE, hits.length) + " of " + hits.length +
        " matching records (page " + st.page + " of " + pages + ")"
      : "no record matches these filters";
    $("prev").disabled = st.page <= 1;
    $("next").disabled = st.page >= pages;
  }
  function changed() { st.page = 1; writeHash(); render(); }

  $("f-status").addEventListener("change", e => { st.status = e.target.value; changed(); });
  $("f-flag").addEventListener("change", e => { st.flag = e.target.value; changed(); });
  let timer = null;
  $("f-q").addEventListener("input", e => {
    clearTimeout(timer);
    timer = setTimeout(() => { st.q = e.target.value; changed(); }, 120);
  });
  $("prev").addEventListener("click", () => { st.page -= 1; writeHash(); render(); scrollTo(0, 0); });
  $("next").addEventListener("click", () => { st.page += 1; writeHash(); render(); scrollTo(0, 0); });
  window.addEventListener("hashchange", () => { readHash(); render(); });
  readHash();
  render();
})();
"""


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def page_json(data: Any) -> bytes:
    """Strict JSON for the page's ``JSON.parse``: NaN and infinities (which an output may hold,
    and which vidcap's faithful writer keeps) become null; integers beyond 64 bits stay exact."""
    try:
        return orjson.dumps(data)  # writes NaN and infinities as null
    except TypeError:  # an integer beyond 64 bits, a non-string key: the stdlib takes those
        return json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, default=str).encode()


def _options(values: list[tuple[str, str]]) -> str:
    return "".join(f'<option value="{escape(v)}">{escape(label)}</option>' for v, label in values)


def render_page(
    *,
    title: str,
    header_html: str,
    records: list[dict[str, Any]],
    statuses: dict[str, int],
    flags: dict[str, int],
) -> bytes:
    """The whole HTML document; ``header_html`` is trusted (built and escaped by the caller).

    ``statuses``/``flags`` are counts among ``records`` (the records on the page), for the filters.
    """
    status_options = [("", f"all ({sum(statuses.values()):,})")] + [
        (s, f"{s} ({n:,})") for s, n in statuses.items()
    ]
    flagged = sum(1 for r in records if r["all_flags"])
    flag_options = [("", "any or none"), ("(any)", f"flagged ({flagged:,})"), ("(none)", "not flagged")]
    flag_options += [(f, f"{f} ({n:,})") for f, n in flags.items()]
    data = page_json({"page_size": PAGE_SIZE, "records": records})
    # JSON inside <script>: "<" only occurs inside strings, where \u003c means the same.
    data = data.replace(b"<", b"\\u003c")
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<header class="top">{header_html}</header>'
        '<div class="controls">'
        f'<label>status <select id="f-status">{_options(status_options)}</select></label>'
        f'<label>flags <select id="f-flag">{_options(flag_options)}</select></label>'
        '<label>search captions <input id="f-q" type="search" placeholder="words in a caption"></label>'
        '<span class="pager"><button id="prev" type="button">&larr; previous</button>'
        '<button id="next" type="button">next &rarr;</button></span>'
        '<span id="count" class="muted"></span></div>'
        '<main id="records"></main>'
        '<script type="application/json" id="report-data">'
    )
    tail = f"</script><script>{_JS}</script></body></html>\n"
    return head.encode() + data + tail.encode()
