"""Small inline SVG charts for the report's header: labelled bars and a histogram (no libraries)."""

from __future__ import annotations

from html import escape

COLOURS = {"ok": "#2e7d32", "error": "#c62828", "skipped": "#757575"}
DEFAULT_COLOUR = "#1565c0"


def _empty(title: str, text: str) -> str:
    caption = f"<figcaption>{escape(title)}</figcaption>"
    return f'<figure class="chart">{caption}<p class="muted">{text}</p></figure>'


def bar_chart(title: str, counts: dict[str, int], *, width: int = 300) -> str:
    """Horizontal bars, one per label, with the count at the end; an SVG element as text."""
    if not counts:
        return _empty(title, "none")
    row, label_w, top = 22, 110, 4
    most = max(counts.values()) or 1
    bar_space = width - label_w - 60
    parts = []
    for i, (label, count) in enumerate(counts.items()):
        y = top + i * row
        length = max(1.0, bar_space * count / most) if count else 0.0
        colour = COLOURS.get(label, DEFAULT_COLOUR)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="16" fill="{colour}"/>'
            f'<text x="{label_w + length + 5:.1f}" y="{y + 15}">{count:,}</text>'
        )
    height = top * 2 + row * len(counts)
    return (
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg></figure>'
    )


def histogram(title: str, values: list[int], *, unit: str, bins: int = 20, width: int = 300) -> str:
    """A histogram of ``values`` in at most ``bins`` equal-width bins, axis labelled in ``unit``."""
    if not values:
        return _empty(title, "no captions")
    low, high = min(values), max(values)
    step = max(1, -(-(high - low + 1) // bins))  # integer bin width, ceil
    nbins = -(-(high - low + 1) // step)
    counts = [0] * nbins
    for value in values:
        counts[(value - low) // step] += 1
    plot_h, left, bottom = 110, 40, 30
    height = plot_h + bottom + 10
    bar_w = (width - left - 10) / nbins
    most = max(counts)
    parts = [
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="18" text-anchor="end">{most:,}</text>',
        f'<text x="{left - 4}" y="{10 + plot_h}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{plot_h + 26}">{low:,}</text>',
        f'<text x="{width - 10}" y="{plot_h + 26}" text-anchor="end">{low + nbins * step - 1:,}</text>',
        f'<text x="{(left + width) / 2:.0f}" y="{plot_h + 38}" text-anchor="middle">{escape(unit)}</text>',
    ]
    for i, count in enumerate(counts):
        h = plot_h * count / most
        first = low + i * step
        label = f"{first}" if step == 1 else f"{first}-{first + step - 1}"
        parts.append(
            f'<rect x="{left + i * bar_w + 1:.1f}" y="{10 + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{DEFAULT_COLOUR}">'
            f"<title>{label} {escape(unit)}: {count:,}</title></rect>"
        )
    return (
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg></figure>'
    )
