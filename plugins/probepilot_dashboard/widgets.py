"""Widgets the built-in panels are made of: a half-block picture, a strip of thumbnails, and a
view of the last lines of a list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget
from textual_plotext import PlotextPlot

from probepilot_dashboard.render import halfblock_lines, picture


class ImageView(Widget):
    """One image drawn with half blocks, centred, fitted to the widget (whole-factor
    enlargement). Set it with :meth:`show`; it recomputes only when the key, colours or size
    change."""

    DEFAULT_CSS = """
    ImageView { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, upscale: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.upscale = upscale
        self._image: np.ndarray | None = None
        self._key: object = None
        self._cmap = "afmhot"
        self._lines: list[list[Segment]] | None = None
        self._for_size: tuple[int, int] = (0, 0)
        #: Pictures computed (a test checks that drawing is coalesced).
        self.renders = 0

    def show(self, image: np.ndarray | None, key: object, cmap: str) -> None:
        if key == self._key and cmap == self._cmap and image is self._image:
            return
        self._image, self._key, self._cmap = image, key, cmap
        self._lines = None
        self.refresh()

    def _compute(self) -> list[list[Segment]]:
        width, height = self.size.width, self.size.height
        self._for_size = (width, height)
        if self._image is None or width <= 0 or height <= 0:
            return []
        self.renders += 1
        rgb = picture(self._image, width, height, self._cmap, upscale=self.upscale)
        lines = halfblock_lines(rgb)
        pad = (width - rgb.shape[1]) // 2 if rgb.size else 0
        if pad > 0:
            lines = [[Segment(" " * pad), *line] for line in lines]
        return lines

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._lines is None or self._for_size != (width, self.size.height):
            self._lines = self._compute()
        if y < len(self._lines):
            return Strip(self._lines[y]).adjust_cell_length(width).apply_style(self.rich_style)
        return Strip.blank(width, self.rich_style)


class Thumbnails(Widget):
    """Small pictures side by side, newest on the right, each with a one-line label below.

    ``items`` are (key, image, label) with the label as Rich Text; ``cmap`` the colour map.
    """

    DEFAULT_CSS = """
    Thumbnails { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._items: list[tuple[object, np.ndarray, Text]] = []
        self._cmap = "afmhot"
        self._cache: dict[tuple[object, str, int, int], list[list[Segment]]] = {}
        self._lines: list[list[Segment]] | None = None
        self._for_size = (0, 0)

    def show(self, items: Sequence[tuple[object, np.ndarray, Text]], cmap: str) -> None:
        self._items = list(items)
        self._cmap = cmap
        self._lines = None
        self.refresh()

    def _thumb(self, key: object, image: np.ndarray, w: int, h: int) -> list[list[Segment]]:
        ck = (key, self._cmap, w, h)
        if ck not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[ck] = halfblock_lines(picture(image, w, h, self._cmap, upscale=False))
        return self._cache[ck]

    def _compute(self) -> list[list[Segment]]:
        width, height = self.size.width, self.size.height
        self._for_size = (width, height)
        th = max(1, height - 1)  # one line for the labels
        tw = 2 * th  # square frames: two pixels per cell vertically
        count = max(1, (width + 1) // (tw + 1))
        items = self._items[-count:]
        rows: list[list[Segment]] = [[] for _ in range(th + 1)]
        for i, (key, image, label) in enumerate(items):
            lines = self._thumb(key, image, tw, th)
            for y in range(th):
                line = lines[y] if y < len(lines) else []
                used = sum(s.cell_length for s in line)
                rows[y].extend(line)
                rows[y].append(Segment(" " * (tw - used + (1 if i < len(items) - 1 else 0))))
            text = label.copy()
            text.truncate(tw, overflow="ellipsis", pad=True)
            rows[th].extend(_text_segments(text))
            if i < len(items) - 1:
                rows[th].append(Segment(" "))
        return rows

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._lines is None or self._for_size != (width, self.size.height):
            self._lines = self._compute()
        if y < len(self._lines):
            return Strip(self._lines[y]).adjust_cell_length(width).apply_style(self.rich_style)
        return Strip.blank(width, self.rich_style)


def _text_segments(text: Text) -> list[Segment]:
    """A one-line Text as segments (no console needed)."""
    out: list[Segment] = []
    plain = text.plain
    spans = sorted(text.spans, key=lambda s: s.start)
    base = text.style if isinstance(text.style, Style) else Style.parse(text.style or "none")
    pos = 0
    for span in spans:
        if span.start > pos:
            out.append(Segment(plain[pos : span.start], base))
        style = span.style if isinstance(span.style, Style) else Style.parse(span.style)
        out.append(Segment(plain[span.start : span.end], base + style))
        pos = max(pos, span.end)
    if pos < len(plain):
        out.append(Segment(plain[pos:], base))
    return out


class LinesView(Widget):
    """The last lines of a list that grows at the bottom (a log), clipped to the widget; each
    line is produced by ``line(item)`` when drawn."""

    DEFAULT_CSS = """
    LinesView { width: 1fr; height: 1fr; }
    """

    def __init__(self, line: Callable[[Any], Text], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._items: Sequence[Any] = ()
        self._line = line
        self.empty = Text("nothing yet", style="dim italic")

    def show(self, items: Sequence[Any]) -> None:
        self._items = items
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width, height = self.size.width, self.size.height
        items = list(self._items)[-height:] if height > 0 else []
        if not items:
            text = self.empty if y == 0 else Text("")
        elif y < len(items):
            text = self._line(items[y])
        else:
            return Strip.blank(width, self.rich_style)
        text = text.copy()
        text.truncate(width, overflow="ellipsis")
        return Strip(_text_segments(text)).adjust_cell_length(width).apply_style(self.rich_style)


class TextView(Widget):
    """Text produced by ``text()`` when the widget is drawn, not when the data changes: a panel
    calls :meth:`refresh` as often as it likes and Textual draws at most once per frame. Lines
    too long for the widget end in an ellipsis."""

    DEFAULT_CSS = """
    TextView { width: 1fr; height: 1fr; }
    """

    def __init__(self, text: Callable[[], Text], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = text

    def render(self) -> Text:
        text = self._text().copy()
        text.no_wrap = True  # one line stays one line: cut with an ellipsis, never wrapped
        text.overflow = "ellipsis"
        return text


class LivePlot(PlotextPlot):
    """A plotext plot drawn by ``draw(plt)`` when the widget is drawn, not when the data
    changes (coalesced like :class:`TextView`)."""

    def __init__(self, draw: Callable[[Any], None], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._draw = draw

    def render(self) -> Any:
        plt = self.plt
        plt.clear_figure()
        self._draw(plt)
        return super().render()
