"""A minimal HTML page of image rows, written with dominate."""

from __future__ import annotations

import os
from urllib.parse import quote

import dominate
from dominate.tags import a, br, details, h3, img, meta, p, pre, summary, table, td, tr

from util.util import atomic_write


class HTML:
    """Collects headers and rows of (image, caption, link) and writes web_dir/index.html."""

    def __init__(self, web_dir: str, title: str, refresh: int = 0) -> None:
        self.web_dir = web_dir
        self.img_dir = os.path.join(web_dir, "images")
        os.makedirs(self.img_dir, exist_ok=True)
        self.doc = dominate.document(title=title)
        with self.doc.head:
            meta(charset="utf-8")  # http.server sends no charset; file names may not be ASCII
        if refresh > 0:
            with self.doc.head:
                meta(http_equiv="refresh", content=str(refresh))

    def add_header(self, text: str) -> None:
        with self.doc:
            h3(text)

    def add_text(self, text: str) -> None:
        with self.doc:
            p(text)

    def add_table(self, values: dict[str, float], caption: str = "") -> None:
        """A two-column table of names and numbers."""
        t = table(border=1, style="border-collapse: collapse; margin: 8px 0;")
        self.doc.add(t)
        with t:
            if caption:
                with tr():
                    td(caption, colspan=2)
            for k, v in values.items():
                with tr():
                    td(k)
                    td(f"{v:.4g}" if isinstance(v, float) else str(v), style="text-align: right;")

    def add_pre(self, text: str, summary_text: str | None = None) -> None:
        """Preformatted text; with summary_text, folded away behind that line."""
        with self.doc:
            if summary_text is None:
                pre(text)
            else:
                with details():
                    summary(summary_text)
                    pre(text)

    def add_image(self, src: str, alt: str, width: int | None = None, version: str = "") -> None:
        """A single image (for example a plot) given relative to web_dir; a new `version` defeats caches."""
        url = quote(src) + (f"?v={quote(version)}" if version else "")
        with self.doc:
            img(src=url, alt=alt, style=f"max-width:{width}px" if width else "max-width:100%")

    def add_images(self, ims: list[str], txts: list[str], links: list[str], width: int = 256) -> None:
        """One row; ims and links are paths relative to web_dir/images."""
        t = table(border=1, style="table-layout: fixed;")
        self.doc.add(t)
        with t:
            with tr():
                for im, txt, link in zip(ims, txts, links, strict=False):
                    with td(style="word-wrap: break-word;", halign="center", valign="top"):
                        with p():
                            # File names are percent-encoded in URLs; dominate escapes text and attributes.
                            with a(href="images/" + quote(link)):
                                img(style=f"width:{width}px", src="images/" + quote(im))
                            br()
                            p(txt)

    def save(self) -> str:
        path = os.path.join(self.web_dir, "index.html")
        atomic_write(path, lambda f: f.write(self.doc.render().encode("utf-8")))
        return path
