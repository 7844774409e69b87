"""The Gradio page: pick a run and a snapshot, give it a file or a drawing, see input | output | target and keep
the output; the run's curves beside. Every handler turns the service's AppError into the status line."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from urllib.parse import quote

import gradio as gr
import numpy as np
import pandas as pd

from reporting.plots import plotted_metrics
from webapp import runs
from webapp.service import AppError, Translation, TranslationService, Window

log = logging.getLogger("app")
NONE = "(none)"
# The previews: lossless, and without Gradio's share button (it would post to the network).
PREVIEW = {"format": "png", "interactive": False, "height": 320, "buttons": ["download", "fullscreen"]}
KEPT_RESULTS = 16  # result files kept for the downloads in the app's own folder
CANVAS_MAX = 1024  # the drawing canvas's largest side, in pixels
# System fonts only: the default theme's web font would be fetched from the network.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "Consolas", "monospace"]
)


class Page:
    """The page's state beside the service: the palettes found per run, and the folder the downloads are
    written to (created by the app, removed with close())."""

    def __init__(self, service: TranslationService) -> None:
        self.service = service
        self.palettes: dict[str, list[tuple[int, int, int]] | None] = {}
        self.out_dir = tempfile.mkdtemp(prefix="pix2pix-app-")

    def close(self) -> None:
        shutil.rmtree(self.out_dir, ignore_errors=True)

    def palette(self, run: runs.Run) -> list[tuple[int, int, int]] | None:
        if run.name not in self.palettes:
            self.palettes[run.name] = runs.label_palette(run.options)
        return self.palettes[run.name]

    def save(self, result: Translation) -> str:
        """The result file, under its own new folder (two results may share a name), for the download. Gradio
        copies it into its cache when the response is sent; only the newest KEPT_RESULTS are kept here."""
        folders = sorted((e for e in os.scandir(self.out_dir) if e.is_dir()), key=lambda e: e.stat().st_mtime)
        for old in folders[: max(0, len(folders) - KEPT_RESULTS)]:
            shutil.rmtree(old.path, ignore_errors=True)
        path = os.path.join(tempfile.mkdtemp(dir=self.out_dir), result.file_name)
        with open(path, "xb") as f:
            f.write(result.data)
        return path


def run_choices(service: TranslationService) -> list[tuple[str, str]]:
    """(label, name) for the run list: name, generator, size, epoch, best validation score."""
    return [(f"{r.name}: {r.describe()}", r.name) for r in runs.list_runs(service.checkpoints_dir)]


def run_info(run: runs.Run) -> str:
    o = run.options
    lines = [f"**{run.name}**: {run.describe()}"]
    if o:
        lines.append(
            f"direction {o.get('direction')}, {o.get('input_nc')} -> {o.get('output_nc')} channels, "
            f"range_A {o.get('range_A') or 'auto'}, range_B {o.get('range_B') or 'auto'}, "
            f"output type {o.get('output_dtype')}"
        )
    if os.path.exists(os.path.join(run.path, "web", "index.html")):
        lines.append(f"[the run's training page](/pages/{quote(run.name)}/index.html)")
    return "  \n".join(lines)


def curve_frames(run: runs.Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(losses: iteration, value, loss), (validation: epoch, value, metric) for the run's plots."""
    losses, val = runs.curves(run.path)
    rows = [(i, v, name) for name, (steps, values) in losses.items() for i, v in zip(steps, values, strict=True)]
    metrics = [
        (r["epoch"], float(r["metrics"][k]), k)
        for r in val
        if "epoch" in r and isinstance(r.get("metrics"), dict)
        for k in plotted_metrics(r["metrics"])  # the training page's: not the image count, not swd's parts
        if isinstance(r["metrics"][k], int | float)
    ]
    return (
        pd.DataFrame(rows, columns=["iteration", "value", "loss"]),
        pd.DataFrame(metrics, columns=["epoch", "value", "metric"]),
    )


def message(e: Exception | str) -> str:
    return f"**Cannot translate:** {e}"


def build(service: TranslationService) -> tuple[gr.Blocks, Page]:
    """The page and its state; the caller serves the Blocks and calls Page.close() at the end."""
    page = Page(service)
    # delete_cache: Gradio's copies of uploads and results older than an hour go, hourly (an app left running).
    with gr.Blocks(title="pix2pix", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## pix2pix: translate images with a trained run")
        with gr.Tab("Translate"):
            c = translate_tab(page)
        with gr.Tab("Run"):
            r = run_tab()
        lists = [c["run"], c["compare_run"]]
        demo.load(lambda: refresh_runs(service, None, None), outputs=lists)
        # Refresh: new runs listed, the chosen one kept, its snapshots and curves read again (a run in training).
        c["refresh"].click(lambda *chosen: refresh_runs(service, *chosen), inputs=lists, outputs=lists).then(
            lambda name, snap: refresh_run(page, name, snap),
            inputs=[c["run"], c["snapshot"]],
            outputs=[c["snapshot"], c["info"], *r.values()],
        )
        run_chosen = c["run"].change(
            lambda name: select_run(page, name),
            inputs=c["run"],
            outputs=[c["snapshot"], c["info"], c["canvas"], c["palette_note"], *r.values()],
        )
        # A run or snapshot chosen: its generator is loaded at once (a run's first snapshot may be the same name
        # as the last run's, which is no change of the snapshot list's value).
        load = {"fn": lambda name, snap: preload(service, name, snap), "inputs": [c["run"], c["snapshot"]]}
        load.update(outputs=c["status"], concurrency_limit=1, concurrency_id="generator")
        c["snapshot"].input(**load)
        run_chosen.then(**load)
        c["compare_run"].change(
            lambda name: compare_snapshots(service, name), inputs=c["compare_run"], outputs=c["compare_snapshot"]
        )
    return demo, page


def refresh_runs(service: TranslationService, run: str | None, compare: str | None) -> tuple[dict, dict]:
    """The run lists read again; the runs chosen stay chosen while they exist (else the first, and none)."""
    choices = run_choices(service)
    names = [name for _, name in choices]
    if not choices:
        return gr.update(choices=[], value=None), gr.update(choices=[NONE], value=NONE)
    run = run if run in names else names[0]
    compare = compare if compare in names else NONE
    return gr.update(choices=choices, value=run), gr.update(choices=[(NONE, NONE), *choices], value=compare)


def refresh_run(page: Page, name: str | None, snapshot: str | None) -> tuple:
    """A chosen run read again: its snapshots (the chosen one kept while it exists), summary and curves."""
    try:
        run = page.service.run(name) if name else None
    except AppError:
        run = None
    if run is None:
        return gr.update(choices=[], value=None), "", *empty_curves(), ""
    losses, val = curve_frames(run)
    snapshot = snapshot if snapshot in run.snapshots else run.snapshots[0]
    summary = run_info(run)
    return (
        gr.update(choices=list(run.snapshots), value=snapshot),
        summary,
        losses,
        val,
        run_summary(summary, losses, val),
    )


def empty_curves() -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.DataFrame(columns=["iteration", "value", "loss"]), pd.DataFrame(columns=["epoch", "value", "metric"])


def run_summary(summary: str, losses: pd.DataFrame, val: pd.DataFrame) -> str:
    logged = (
        f"{losses['iteration'].nunique()} loss records (losses.jsonl), {val['epoch'].nunique()} validations "
        "(val_log.jsonl)"
    )
    return f"{summary}  \n{logged}"


def select_run(page: Page, name: str | None) -> tuple:
    """A run chosen: its snapshots, summary, a canvas in its palette, and its curves."""
    try:
        run = page.service.run(name) if name else None
    except AppError:
        run = None
    if run is None:
        return (
            gr.update(choices=[], value=None),
            f"no runs in {page.service.checkpoints_dir}",
            None,
            "",
            *empty_curves(),
            "",
        )
    losses, val = curve_frames(run)
    palette = page.palette(run)
    colours = [hex_colour(c) for c in palette] if palette else None
    side = min(int(run.options.get("crop_size") or 256), CANVAS_MAX)
    background = palette[0] if palette else (255, 255, 255)
    canvas = gr.update(
        value={"background": np.full((side, side, 3), background, np.uint8), "layers": [], "composite": None},
        brush=gr.Brush(
            default_size=max(1, side // 16),
            colors=colours,
            default_color=colours[min(1, len(colours) - 1)] if colours else None,
            color_mode="fixed" if colours else "defaults",
        ),
    )
    note = (
        f"The colours of this run's training inputs ({len(palette)}), most used first."
        if palette
        else "This run's training inputs are not on this machine (or not RGB): any colour can be drawn."
    )
    summary = run_info(run)
    snapshots = gr.update(choices=list(run.snapshots), value=run.snapshots[0])
    return snapshots, summary, canvas, note, losses, val, run_summary(summary, losses, val)


def preload(service: TranslationService, name: str | None, snapshot: str | None) -> str:
    """The status line after a snapshot is chosen: its generator loaded (or why not), so the first request
    translates at once."""
    if not name or not snapshot:
        return ""
    try:
        seconds = service.load(name, snapshot)
    except AppError as e:
        return message(e)
    except Exception as e:  # not foreseen: logged whole, one line in the page
        log.exception("loading %s @ %s failed", name, snapshot)
        return message(f"loading failed: {type(e).__name__}: {first_line(e)} (the app's log has the details)")
    took = "already loaded" if seconds is None else f"loaded in {seconds:.2f} s"
    return f"{name} @ {snapshot}: {took} on {service.device}"


def first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0]


def compare_snapshots(service: TranslationService, name: str | None) -> dict:
    if not name or name == NONE:
        return gr.update(choices=[], value=None)
    try:
        snaps = list(service.run(name).snapshots)
    except AppError:
        return gr.update(choices=[], value=None)
    return gr.update(choices=snaps, value=snaps[0])


def translate_tab(page: Page) -> dict:
    """The Translate tab's components by name, its two buttons wired."""
    c: dict = {}
    with gr.Row():
        c["run"] = gr.Dropdown(label="Run", choices=[], elem_id="run", scale=3)
        c["snapshot"] = gr.Dropdown(label="Snapshot", choices=[], elem_id="snapshot", scale=1)
        c["refresh"] = gr.Button("Refresh the list", size="sm", scale=0)
    c["info"] = gr.Markdown(elem_id="run-info")
    with gr.Row():
        with gr.Column(scale=1):
            input_column(c)
        with gr.Column(scale=2):
            output_column(c)
    wire_translate(page, c)
    return c


def input_column(c: dict) -> None:
    """A file or a drawing, and the options: eval, the preview window, a run to compare with."""
    with gr.Tab("Upload a file"):
        c["file"] = gr.File(label="Input: PNG, JPEG, TIFF, .npy (8-bit, 16-bit or float)", elem_id="input-file")
        c["pair"] = gr.Checkbox(
            False, label="The file is an A|B pair: translate its input half, show the other as the target"
        )
        c["target"] = gr.File(label="Target (optional), compared with the output", elem_id="target-file")
        c["go"] = gr.Button("Translate", variant="primary", elem_id="translate")
    with gr.Tab("Draw a label map"):
        c["palette_note"] = gr.Markdown()
        c["canvas"] = gr.ImageEditor(
            label="Canvas: draw, or upload a label map to edit",
            type="numpy",
            image_mode="RGB",
            format="png",
            elem_id="canvas",
            layers=False,
            sources=("upload", "clipboard"),
        )
        c["snap"] = gr.Checkbox(True, label="Snap every pixel to the nearest palette colour")
        c["go_draw"] = gr.Button("Translate the drawing", variant="primary", elem_id="translate-drawing")
    with gr.Accordion("Options", open=False):
        c["eval"] = gr.Checkbox(False, label="eval mode: running batch-norm statistics, no dropout (--eval)")
        c["window"] = gr.Radio(
            [("the run's value range", "run"), ("each image's 0.5-99.5 percentiles", "image"), ("custom", "custom")],
            value="run",
            label="Preview window (how data values are shown; downloads are never windowed)",
        )
        with gr.Row():
            c["lo"] = gr.Number(0, label="custom low")
            c["hi"] = gr.Number(255, label="custom high")
        with gr.Row():
            c["compare_run"] = gr.Dropdown(label="Compare with run", choices=[NONE], value=NONE, elem_id="compare-run")
            c["compare_snapshot"] = gr.Dropdown(label="its snapshot", choices=[], elem_id="compare-snapshot")


def output_column(c: dict) -> None:
    """The status line, the slider, input | output | target, the downloads."""
    c["status"] = gr.Markdown(elem_id="status")
    c["slider"] = gr.ImageSlider(label="Drag to compare", format="png", elem_id="slider", type="numpy")
    with gr.Row():
        c["in_img"] = gr.Image(label="input", elem_id="input-preview", **PREVIEW)
        c["out_img"] = gr.Image(label="output", elem_id="output-preview", **PREVIEW)
        c["tgt_img"] = gr.Image(label="target", elem_id="target-preview", **PREVIEW)
    c["download"] = gr.File(label="The output at full precision", elem_id="download", interactive=False)
    with gr.Row():
        c["cmp_img"] = gr.Image(label="compared run's output", elem_id="compare-preview", **PREVIEW)
        c["cmp_download"] = gr.File(label="its file", elem_id="compare-download", interactive=False)


def wire_translate(page: Page, c: dict) -> None:
    """The two buttons: a file, a drawing; both through one queue."""
    shown = ("status", "slider", "in_img", "out_img", "tgt_img", "download", "cmp_img", "cmp_download")
    outputs = [c[k] for k in shown]
    common = [c[k] for k in ("run", "snapshot", "compare_run", "compare_snapshot", "eval", "window", "lo", "hi")]

    def on_file(run, snap, cmp_run, cmp_snap, eval, mode, lo, hi, file, pair, target):
        if not file:
            return failed("upload an image first")

        def translate(name: str, snapshot: str, window: Window) -> Translation:
            return page.service.translate_file(name, snapshot, file, pair=pair, target=target, eval=eval, window=window)

        return respond(page, translate, run, snap, cmp_run, cmp_snap, Window(mode, float(lo or 0), float(hi or 0)))

    def on_drawing(run, snap, cmp_run, cmp_snap, eval, mode, lo, hi, canvas, snap_colours):
        rgb = drawn(canvas)
        if rgb is None:
            return failed("draw on the canvas first")
        try:
            page.service.check_pixels(rgb.shape[1], rgb.shape[0], "the drawing")  # before snapping it
        except AppError as e:
            return failed(str(e))
        palette = page.palettes.get(run) if snap_colours else None
        rgb = snap_to(rgb, palette) if palette else rgb

        def translate(name: str, snapshot: str, window: Window) -> Translation:
            return page.service.translate_drawing(name, snapshot, rgb, eval=eval, window=window)

        return respond(page, translate, run, snap, cmp_run, cmp_snap, Window(mode, float(lo or 0), float(hi or 0)))

    # One queue for every request that runs a generator: concurrent ones wait their turn (concurrency_id).
    # The progress timer on the status line only: one on every output redraws them all the while it runs; on 2 CPU
    # cores that took a 512x512 unet_512 click from 1.36 to 1.76 s (scripts/app_latency.py, docs/app.md).
    queue = {"concurrency_limit": 1, "concurrency_id": "generator", "show_progress_on": c["status"]}
    c["go"].click(on_file, inputs=[*common, c["file"], c["pair"], c["target"]], outputs=outputs, **queue)
    c["go_draw"].click(on_drawing, inputs=[*common, c["canvas"], c["snap"]], outputs=outputs, **queue)


def run_tab() -> dict:
    r: dict = {}
    r["losses"] = gr.LinePlot(x="iteration", y="value", color="loss", label="Losses", elem_id="loss-plot")
    r["val"] = gr.LinePlot(x="epoch", y="value", color="metric", label="Validation metrics", elem_id="val-plot")
    r["summary"] = gr.Markdown(elem_id="run-summary")
    return r


def failed(text: str) -> tuple:
    return (message(text), None, None, None, None, None, None, None)


def respond(
    page: Page,
    translate: Callable[[str, str, Window], Translation],
    run: str | None,
    snap: str | None,
    cmp_run: str | None,
    cmp_snap: str | None,
    window: Window,
) -> tuple:
    """The outputs of one request: the main translation, and the compared run's when one is chosen."""
    if not run or not snap:
        return failed("choose a run and a snapshot")
    if window.mode == "custom" and not window.hi > window.lo:
        return failed(f"the custom window's high ({window.hi:g}) must be above its low ({window.lo:g})")
    try:
        main = translate(run, snap, window)
        other = translate(cmp_run, cmp_snap, window) if cmp_run and cmp_run != NONE and cmp_snap else None
    except AppError as e:
        return failed(str(e))
    except Exception as e:  # not foreseen: logged whole, one line in the page, never a stack trace
        log.exception("translating with %s @ %s failed", run, snap)
        return failed(f"{type(e).__name__}: {first_line(e)} (the app's log has the details)")
    lines = [main.summary(f"{run} @ {snap}")]
    if other is not None:
        lines.append(other.summary(f"{cmp_run} @ {cmp_snap}"))
    same = "as translate.py writes it" if main.exact else "the input half of a pair, read as an array"
    lines.append(f"output file: {main.file_name}, {len(main.data)} bytes, {same}")
    shown = (main.output, main.target) if main.target is not None else (main.input, main.output)
    return (
        "  \n".join(lines),
        shown,
        main.input,
        main.output,
        main.target,
        page.save(main),
        None if other is None else other.output,
        None if other is None else page.save(other),
    )


def drawn(canvas: dict | np.ndarray | None) -> np.ndarray | None:
    """The canvas's picture as (H, W, 3) uint8 (its background until something is drawn), None when there is
    none."""
    if canvas is None:
        return None
    img = canvas
    if isinstance(canvas, dict):
        img = canvas.get("composite") if canvas.get("composite") is not None else canvas.get("background")
    if img is None:
        return None
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{v:02x}" for v in rgb)


def snap_to(rgb: np.ndarray, palette: list[tuple[int, int, int]]) -> np.ndarray:
    """Every pixel set to its nearest palette colour (the brush's anti-aliased edges are no class of the run)."""
    p = np.asarray(palette, dtype=np.int32)  # (K, 3)
    out = np.empty_like(rgb)
    rows = max(1, 2**20 // (rgb.shape[1] * len(p)))  # a few MB of distances at a time, whatever the size
    for top in range(0, rgb.shape[0], rows):
        part = rgb[top : top + rows, :, None, :].astype(np.int32)  # (h, W, 1, 3)
        out[top : top + rows] = p[((part - p) ** 2).sum(axis=3).argmin(axis=2)]  # nearest of (h, W, K)
    return out
