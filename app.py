"""A local web page that translates images with any run of a checkpoints folder: python app.py, then open
http://127.0.0.1:7860. Needs the app extra: pip install -e .[app] (or -r requirements-app.txt).

It serves this machine only (127.0.0.1) unless --host says otherwise, and connects to nothing: Gradio's analytics
and its version check are off, the page uses system fonts, and no share link is made.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

# Before Gradio and huggingface_hub are imported: no analytics, no telemetry, no hub requests.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch

from engine import cli
from options.options import AppOptions, parse
from util.util import setup_logging

log = logging.getLogger("app")


def device_of(name: str | None) -> torch.device:
    """--device, checked: CUDA if it is there when none is given."""
    if name is None:
        return cli.inference_device(None)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            cli.fail("app", f"--device {name}: CUDA is not available on this machine; use --device cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            cli.fail("app", f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as translate.py
    return torch.device(name)


def serve(opt: AppOptions) -> int:
    """Serve the page until Ctrl-C; exit status 0."""
    try:
        import gradio as gr
        import uvicorn
        from fastapi import FastAPI
    except ImportError as e:
        cli.fail("app", f"{e.name} is not installed: pip install -e .[app] (or pip install -r requirements-app.txt)")
    from webapp.pages import add_page_routes
    from webapp.service import TranslationService
    from webapp.ui import THEME, build

    a = opt.app
    if not os.path.isdir(a.checkpoints_dir):
        cli.fail("app", f"--checkpoints_dir {a.checkpoints_dir}: no such folder (where train.py saved its runs)")
    service = TranslationService(a.checkpoints_dir, device_of(a.device), a.cache_size, a.tile, a.overlap, a.max_pixels)
    demo, page = build(service)
    demo.queue(default_concurrency_limit=1, max_size=32)
    app = FastAPI()
    add_page_routes(app, a.checkpoints_dir)
    # show_error=False: what the handlers do not turn into the status line is logged, never shown raw; uploads
    # larger than the biggest image allowed (4 float32 channels) are refused before they are stored.
    app = gr.mount_gradio_app(
        app,
        demo,
        path="/",
        theme=THEME,
        ssr_mode=False,
        footer_links=[],
        mcp_server=False,
        show_error=False,
        max_file_size=16 * a.max_pixels + 2**20,
    )
    log.info(
        "serving http://%s:%d (runs in %s, generators on %s; Ctrl-C stops)",
        a.host,
        a.port,
        a.checkpoints_dir,
        service.device,
    )
    try:
        uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    finally:
        page.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    opt = parse(AppOptions, list(sys.argv[1:] if argv is None else argv))
    setup_logging(False)
    return serve(opt)


def command() -> NoReturn:
    """app.py's entry, and the console command pix2pix-app that pip install gives."""
    cli.run("app", main)


if __name__ == "__main__":
    command()
