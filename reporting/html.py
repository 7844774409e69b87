"""A page of image rows written with dominate; its stylesheet and script are copied beside it (no network)."""

from __future__ import annotations

import functools
import hashlib
import math
import os
from urllib.parse import quote

import dominate
from dominate.tags import (
    a,
    button,
    details,
    div,
    figcaption,
    figure,
    h3,
    img,
    input_,
    link,
    meta,
    p,
    pre,
    script,
    section,
    summary,
    table,
    tbody,
    td,
    th,
    thead,
    tr,
)

from util.util import atomic_write, printable

ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page_assets")
ASSETS = ("page.css", "page.js")  # copied into web_dir by save(); the page refers to them by relative URL


@functools.lru_cache
def _asset_version(name: str) -> str:
    """A short hash of an asset: a page saved by newer code asks for the newer file, not the cached one."""
    with open(os.path.join(ASSET_DIR, name), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:10]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def shown(text: str) -> str:
    """Text as the page shows it: a file name's bytes that are not UTF-8 (os.fsdecode keeps them as surrogates,
    which no page can hold) written as \\xNN escapes."""
    return printable(text)


def url(path: str) -> str:
    """A relative URL of a file: its name's bytes percent-encoded, so a name that is not UTF-8 still loads."""
    return quote(os.fsencode(path))


def _sort_key(v: float) -> str:
    """A number as JavaScript's parseFloat reads it (Python writes inf, JavaScript wants Infinity)."""
    return "NaN" if math.isnan(v) else repr(float(v)).replace("inf", "Infinity")


class HTML:
    """Collects headers and rows of (image, caption, link) and writes web_dir/index.html beside page.css/page.js."""

    def __init__(self, web_dir: str, title: str, refresh: int = 0) -> None:
        self.web_dir = web_dir
        self.img_dir = os.path.join(web_dir, "images")
        os.makedirs(self.img_dir, exist_ok=True)
        self.doc = dominate.document(title=shown(title))
        with self.doc.head:
            meta(charset="utf-8")  # http.server sends no charset; file names may not be ASCII
            meta(name="viewport", content="width=device-width, initial-scale=1")
            if refresh > 0:
                meta(http_equiv="refresh", content=str(refresh))
            link(rel="stylesheet", href=f"page.css?v={_asset_version('page.css')}")
            script(src=f"page.js?v={_asset_version('page.js')}", defer=True)

    def add_header(self, text: str) -> None:
        with self.doc:
            h3(shown(text))

    def add_text(self, text: str) -> None:
        with self.doc:
            p(shown(text))

    def add_table(self, values: dict[str, float], caption: str = "") -> None:
        """A two-column table of names and numbers."""
        if caption:  # a paragraph: a <caption> would wrap to the width of the narrow table
            self.doc.add(p(caption, cls="caption"))
        t = table(cls="values")
        self.doc.add(t)
        with t:
            for k, v in values.items():
                with tr():
                    td(shown(k))
                    td(_fmt(v), cls="num")

    def add_sortable_table(
        self,
        columns: list[str],
        rows: list[tuple[str, str, dict[str, float]]],
        caption_text: str = "",
        sorted_by: tuple[str, str] | None = None,
    ) -> None:
        """A table of (row id, name, {column: number}) whose headers sort it on click; each row links to, and
        reorders with, the image row added by add_item under that id. sorted_by: (column, "ascending" or
        "descending"), the order the rows are already in, shown on that header."""
        marked = dict([sorted_by]) if sorted_by else {}
        if caption_text:
            self.doc.add(p(caption_text, cls="caption"))
        t = table(cls="metrics")
        self.doc.add(div(t, cls="scroll"))
        with t:
            with thead(), tr():
                with th(cls="name", aria_sort=marked.get("name")):
                    button("name", type="button")
                for c in columns:
                    with th(cls="num", aria_sort=marked.get(c)):
                        button(c, type="button")
            with tbody():
                for row_id, name, values in rows:
                    with tr(data_row=row_id):
                        td(a(shown(name), href=f"#{quote(row_id)}"), data_v=shown(name))
                        for c in columns:
                            v = values.get(c, math.nan)
                            td(_fmt(v), cls="num", data_v=_sort_key(v))

    def add_pre(self, text: str, summary_text: str | None = None) -> None:
        """Preformatted text; with summary_text, folded away behind that line."""
        with self.doc:
            if summary_text is None:
                pre(shown(text))
            else:
                with details():
                    summary(shown(summary_text))
                    pre(shown(text))

    def add_image(self, src: str, alt: str, width: int | None = None, version: str = "") -> None:
        """A single image (for example a plot) given relative to web_dir; a new `version` defeats caches."""
        link_to = url(src) + (f"?v={quote(version)}" if version else "")
        with self.doc, div(cls="plot"), a(href=link_to, cls="full"):
            img(src=link_to, alt=shown(alt), style=f"max-width:{width}px" if width else None)

    def add_images(self, ims: list[str], txts: list[str], links: list[str], width: int = 256) -> None:
        """One row; ims and links are paths relative to web_dir/images. A row with captions fake_B and real_B (the
        caption's first word) gets a fourth picture that compares the two under a slider."""
        self.doc.add(_row(ims, txts, links, width))

    def add_item(self, item_id: str, header: str, ims: list[str], txts: list[str], links: list[str], width=256):
        """A header and its row of images, in a section add_sortable_table's rows can link to and reorder."""
        self.doc.add(section(h3(shown(header)), _row(ims, txts, links, width), id=item_id, cls="item"))

    def save(self, new: bool = False) -> str:
        """index.html, page.css and page.js written; new: none of them may exist yet (util.util.atomic_write)."""
        for name in ASSETS:
            _copy_if_changed(os.path.join(ASSET_DIR, name), os.path.join(self.web_dir, name), new)
        path = os.path.join(self.web_dir, "index.html")
        # "replace": a surrogate that escaped shown() becomes "?", never an exception that loses the page.
        atomic_write(path, lambda f: f.write(self.doc.render().encode("utf-8", "replace")), new=new)
        return path


def _row(ims: list[str], txts: list[str], links: list[str], width: int) -> div:
    # File names are percent-encoded in URLs (their bytes: url()); dominate escapes text and attributes.
    urls = {txt.split()[0]: "images/" + url(im) for im, txt in zip(ims, txts, strict=False) if txt.strip()}
    compare = "fake_B" in urls and "real_B" in urls
    row = div(cls="row", style=f"--n:{len(ims) + compare};--w:{width}px")
    with row:
        for im, txt, lk in zip(ims, txts, links, strict=False):
            with figure():
                with a(href="images/" + url(lk), cls="full"):
                    img(src="images/" + url(im), alt=shown(txt))
                figcaption(shown(txt))
        if compare:
            with figure():
                with div(cls="compare", style="--pos:50%"):
                    img(src=urls["real_B"], alt="real_B", cls="under", draggable="false")
                    img(src=urls["fake_B"], alt="fake_B", cls="over", draggable="false")
                input_(type="range", min="0", max="100", value="50", aria_label="split between fake_B and real_B")
                figcaption("fake_B \u25c0 | \u25b6 real_B (drag or slide)")
    return row


def _copy_if_changed(src: str, dst: str, new: bool = False) -> None:
    """Copy src to dst unless dst already holds the same bytes (the training page is saved again and again)."""
    with open(src, "rb") as f:
        data = f.read()
    try:
        with open(dst, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    atomic_write(dst, lambda f: f.write(data), new=new)
