"""The runs' own pages (checkpoints/NAME/web/, written by train.py) served by the app under /pages/NAME/: those
folders only, never a checkpoint or a file outside them."""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from util.util import is_inside
from webapp import runs


def page_file(checkpoints_dir: str, name: str, path: str) -> str | None:
    """The file under checkpoints_dir/name/web that path names, or None: name must be a run of the list, and the
    file (links resolved) must lie in that web folder."""
    if runs.read_run(checkpoints_dir, name) is None:  # a run of the list: one plain folder name
        return None
    web = os.path.join(checkpoints_dir, name, "web")
    try:
        full = os.path.realpath(os.path.join(web, path or "index.html"))
    except ValueError:  # a NUL in the path
        return None
    if not is_inside(full, os.path.realpath(web)) or not os.path.isfile(full):
        return None
    return full


def add_page_routes(app: FastAPI, checkpoints_dir: str) -> None:
    """GET /pages/NAME/PATH: checkpoints_dir/NAME/web/PATH (page_file's rules), else 404."""

    @app.get("/pages/{name}/{path:path}")
    def run_page(name: str, path: str) -> FileResponse:
        full = page_file(checkpoints_dir, name, path)
        if full is None:
            raise HTTPException(status_code=404, detail="no such page")
        return FileResponse(full)
