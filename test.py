"""Translate a phase with a trained generator: python test.py --dataroot ./datasets/facades --name facades."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import torch

from data import EpochSampler, create_dataloader, create_dataset
from data.image_io import data_error
from engine import cli
from engine.inference import ImageTranslator
from metrics import HIGHER_IS_BETTER, MetricSuite
from options.options import TestOptions, given_flags, parse, save_options
from reporting.html import HTML
from util.util import (
    NAME_MAX,
    WriteFailed,
    atomic_write,
    is_inside,
    make_dirs_below,
    save_image,
    setup_logging,
    tensor2im,
    unique_names,
)

log = logging.getLogger("test")
# A result image is <stem>_<label>.png: the stem is cut so that the name fits NAME_MAX (255 bytes).
MAX_STEM_BYTES = NAME_MAX - len("_real_A.png")
OUTPUTS = "outputs"  # full-precision outputs (16-bit, float, many channels) beside images/


def fail(msg: str) -> NoReturn:
    cli.fail("test", msg)


@dataclass
class Row:
    name: str
    images: dict[str, str]  # label -> file name under images/
    scores: dict[str, float]
    baseline: dict[str, float]  # real_A scored as if it were the output (with --score_input)


@dataclass
class Scoring:
    """The model's scores (fake_B vs real_B) and, when asked, the no-op baseline's (real_A vs real_B)."""

    metrics: MetricSuite
    baseline: MetricSuite | None


def translate_all(
    opt: TestOptions, translate: ImageTranslator, loader, names: list[str], img_dir: str, scoring: Scoring | None
) -> tuple[list[Row], bool]:
    """Translate every batch (of one image) under its own name; (rows, whether Ctrl-C stopped it early)."""
    rows: list[Row] = []
    on_stop = "finishing this image, then the page for the images done"
    with cli.ImageLoop(len(names), opt.basic.progress_every, "test", on_stop, log) as loop:
        for stem, batch in loop.each(zip(names, loader, strict=False)):
            rows.append(translate_one(opt, translate, batch, stem, img_dir, scoring))
    return rows, loop.stopped


def translate_one(
    opt: TestOptions, translate: ImageTranslator, batch: dict, stem: str, img_dir: str, scoring: Scoring | None
) -> Row:
    """real_A -> fake_B for one batch of one image; saves the images under stem and scores fake_B."""
    fake_B = translate.translate(batch["A"])
    visuals = {"real_A": batch["A"], "fake_B": fake_B}
    if "B" in batch:
        visuals["real_B"] = batch["B"].to(fake_B.device)
    images = {}
    chans = opt.values.preview_channels
    for label, t in visuals.items():
        images[label] = f"{stem}_{label}.png"  # an 8-bit preview for the page, unless the data is 8-bit
        save_image(tensor2im(t, chans), os.path.join(img_dir, images[label]), opt.testing.aspect_ratio, new=True)
    if translate.full_output:  # the output itself, in the data's kind and units
        data = translate.encode(fake_B)
        out = os.path.join(os.path.dirname(img_dir), OUTPUTS, f"{stem}_fake_B{translate.output_extension}")
        atomic_write(out, lambda f: f.write(data), new=True)
    scores = scoring.metrics.update(fake_B, visuals["real_B"])[0] if scoring else {}
    baseline = {}
    if scoring and scoring.baseline:
        baseline = scoring.baseline.update(visuals["real_A"].to(fake_B.device), visuals["real_B"])[0]
    return Row(stem, images, scores, baseline)


def is_real_dir(path: str) -> bool:
    """A folder itself, not a link to one."""
    return stat.S_ISDIR(os.lstat(path).st_mode)


def prepare_results(opt: TestOptions, tag: str, argv: list[str], full: bool = False) -> tuple[str, str]:
    """results_dir/name/<phase>_<tag> and its images/ folder, proven writable, with test_opt.* in it. test.py never
    writes over a file it did not write in this run: when that folder holds anything (an earlier run's results),
    the results go to <phase>_<tag>_2 (_3, ...), said in a warning; a results folder inside --dataroot, where a
    later run would read the results as data, is refused."""
    base = os.path.join(opt.testing.results_dir, opt.basic.name, f"{opt.data.phase}_{tag}")
    if opt.data.dataroot and is_inside(base, opt.data.dataroot):
        fail(
            f"--results_dir {opt.testing.results_dir}: {base} is inside --dataroot {opt.data.dataroot}; "
            "choose a folder outside"
        )
    web_dir, k = base, 1
    while os.path.lexists(web_dir) and not (is_real_dir(web_dir) and not os.listdir(web_dir)):
        k += 1  # an earlier run's results, or a link (never filled through): the next free name
        web_dir = f"{base}_{k}"
    if web_dir != base:
        log.warning("%s holds an earlier run's results, kept as they are; these go to %s", base, web_dir)
    img_dir = os.path.join(web_dir, "images")
    root = opt.testing.results_dir
    try:
        make_dirs_below(root, img_dir)  # results_dir may be a link; nothing below it is followed
        if full:  # full-precision outputs (translate.full_output) beside the previews
            make_dirs_below(root, os.path.join(web_dir, OUTPUTS))
        with tempfile.TemporaryFile(dir=img_dir):  # a real write: os.access says yes to root on a read-only disk
            pass
        save_options(opt, web_dir, "test", argv)
    except WriteFailed as e:
        fail(f"--results_dir {root}: {e}")
    except OSError as e:
        fail(f"--results_dir {opt.testing.results_dir}: cannot write in {img_dir}: {e.strerror or e}")
    return web_dir, img_dir


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given = given_flags(argv)
    opt = parse(False, argv)
    setup_logging(opt.basic.verbose)
    device = cli.inference_device(opt.basic.gpu_ids)
    # Default: train mode, as in pix2pix (dropout on, batch statistics of the test image); --eval switches.
    opt, ckpt, tag, translate = cli.load_translator_for(opt, given, device)
    try:
        dataset = create_dataset(opt.data, opt.preprocess, opt.generator, None, opt.source.seed, False, opt.values)
        dataset.check(opt.data.skip_bad_images, opt.data.max_bad_fraction, workers=max(1, opt.data.num_threads))
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        fail(str(e))
    n = len(dataset) if opt.testing.num_test is None else min(opt.testing.num_test, len(dataset))
    torch.manual_seed(opt.source.seed)  # dropout is on by default, so results depend on the seed; it is saved
    web_dir, img_dir = prepare_results(opt, tag, argv, translate.full_output)
    scoring = make_scoring(opt, given, device)
    sampler = EpochSampler(n, seed=0, shuffle=False)  # the first n images, in order
    # Batch 1 as in the reference: test images may differ in size, and batch norm sees one image.
    loader = create_dataloader(dataset, 1, opt.data.num_threads, sampler, device)
    log.info("translating %d images from %s/%s with %s on %s", n, opt.data.dataroot, opt.data.phase, ckpt.path, device)
    t0 = time.perf_counter()
    try:
        # One result per input, never shared, each name short enough for the file system.
        names = unique_names([dataset.input_path(i) for i in range(n)], MAX_STEM_BYTES)
        rows, interrupted = translate_all(opt, translate, loader, names, img_dir, scoring)
    except WriteFailed as e:  # a full disk, say; no half-written image is left
        log.error("%s", e)
        return 1
    except (RuntimeError, ValueError) as e:
        msg = data_error(e)
        if msg is None:
            raise
        log.error("%s", msg)
        return 1
    elapsed = time.perf_counter() - t0
    try:
        page_path = write_results(web_dir, opt, tag, rows, scoring, translate)
    except WriteFailed as e:  # a full disk, say: one line, as for the images
        log.error("%s", e)
        return 1
    log.info("%d images in %.1f s; open %s", len(rows), elapsed, page_path)
    if interrupted:
        log.warning("interrupted: the page and metrics.json hold the %d of %d images done", len(rows), n)
        return 130
    return 0


def write_results(
    web_dir: str, opt: TestOptions, tag: str, rows: list[Row], scoring: Scoring | None, translate: ImageTranslator
) -> str:
    """metrics.json and the page (rows sorted as --sort_by asks); returns the page's path."""
    units = value_units(translate)
    summary, baseline = write_metrics(web_dir, rows, scoring, units)
    if opt.metrics.sort_by is not None and scoring is not None:
        rows.sort(key=lambda r: r.scores[opt.metrics.sort_by], reverse=not HIGHER_IS_BETTER[opt.metrics.sort_by])
    return write_test_page(web_dir, opt, tag, rows, summary, baseline, units["note"])


def value_units(translate: ImageTranslator) -> dict:
    """What the scores and previews are in: real_B's range (PSNR's and SSIM's data range is its width), and, for
    data that is not plain 8-bit, a note for the page saying so and where the full-precision outputs are."""
    rng = translate.output_range
    note = ""  # plain 8-bit images: the page is as it always was
    if translate.full_output:
        note = (
            f"real_B values {rng.lo:g}..{rng.hi:g} ({translate.output_dtype}); previews show that window as "
            f"0..255; PSNR and SSIM are computed before any rounding, with data range {rng.hi - rng.lo:g} in "
            f"these units; the outputs themselves ({translate.output_extension}) are in {OUTPUTS}/"
        )
    units = {"range_B": [rng.lo, rng.hi], "data_range": rng.hi - rng.lo, "output_dtype": translate.output_dtype}
    return {**units, "note": note}


def make_scoring(opt: TestOptions, given: set[str], device: torch.device) -> Scoring | None:
    if not opt.metrics.metrics:  # --metrics "": nothing to score
        return None
    if opt.data.dataset_mode != "aligned":
        if "metrics" in given:
            log.warning("--metrics ignored: --dataset_mode single has no real_B to compare with")
        return None

    def suite() -> MetricSuite:
        return MetricSuite(
            opt.metrics.metrics, device, opt.metrics.fid_weights, opt.metrics.lpips_weights, seed=opt.source.seed
        )

    score_input = (
        opt.metrics.score_input or opt.generator.residual
    ) and opt.generator.input_nc == opt.generator.output_nc
    if opt.metrics.score_input and not score_input:
        log.warning(
            "--score_input ignored: real_A has %d channels, real_B %d", opt.generator.input_nc, opt.generator.output_nc
        )
    return Scoring(suite(), suite() if score_input else None)


def write_metrics(
    web_dir: str, rows: list[Row], scoring: Scoring | None, units: dict
) -> tuple[dict[str, float], dict[str, float]]:
    """metrics.json (the summary and every image's scores, the no-op baseline's, and the units: value_units);
    returns both summaries."""
    if scoring is None:
        return {}, {}
    summary = scoring.metrics.compute()
    record = {"summary": summary, "per_image": {r.name: r.scores for r in rows}, "metrics": scoring.metrics.names}
    record["units"] = units
    baseline = {}
    if scoring.baseline is not None:
        baseline = scoring.baseline.compute()
        record["baseline"] = {"summary": baseline, "per_image": {r.name: r.baseline for r in rows}}
    text = json.dumps(record, indent=2)  # ASCII: a name that is not UTF-8 is escaped, as any other character
    atomic_write(os.path.join(web_dir, "metrics.json"), lambda f: f.write(text.encode()), new=True)
    log.info("metrics over %d images: %s", len(rows), format_scores(summary))
    if baseline:
        log.info("no-op baseline (real_A scored as the output): %s", format_scores(baseline))
    return summary, baseline


def format_scores(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items())


def write_test_page(
    web_dir: str,
    opt: TestOptions,
    tag: str,
    rows: list[Row],
    summary: dict[str, float],
    baseline: dict[str, float],
    units: str = "",
) -> str:
    """index.html: a summary at the top, a per-image table of metrics that sorts on a click on a column header,
    then per row the name, real_A, fake_B, real_B, a slider comparing fake_B with real_B, and its metrics."""
    page = HTML(web_dir, f"Experiment = {opt.basic.name}, Phase = {opt.data.phase}, Epoch = {tag}")
    page.add_header(f"{opt.basic.name}: {opt.data.phase}, checkpoint {tag}, {len(rows)} images")
    if units:
        page.add_text(units)
    if summary:
        page.add_table(
            summary,
            caption="summary over all images, fake_B against real_B (docs/metrics.md says how each is computed)",
        )
    if baseline:
        page.add_table(baseline, caption="no-op baseline: real_A itself against real_B, what the model must beat")
    if opt.metrics.sort_by:
        page.add_text(f"rows sorted by {opt.metrics.sort_by}, worst first")
    ids = [f"row{i}" for i in range(len(rows))]  # plain ids: the names themselves may hold any character
    columns = list(dict.fromkeys(k for r in rows for k in r.scores))
    if columns:
        # Worst first is ascending for a metric where higher is better.
        order = (
            (opt.metrics.sort_by, "ascending" if HIGHER_IS_BETTER[opt.metrics.sort_by] else "descending")
            if opt.metrics.sort_by
            else None
        )
        page.add_sortable_table(
            columns,
            [(i, r.name, r.scores) for i, r in zip(ids, rows, strict=True)],
            "per image: click a column header to sort (the rows below follow), a name to go to its row",
            sorted_by=order,
        )
    for i, r in zip(ids, rows, strict=True):
        labels = list(r.images)
        captions = [f"{lb}  ({format_scores(r.scores)})" if lb == "fake_B" and r.scores else lb for lb in labels]
        files = [r.images[lb] for lb in labels]
        page.add_item(i, r.name, files, captions, files, width=opt.testing.display_winsize)
    return page.save(new=True)


def command() -> NoReturn:
    """test.py's entry, and the console command pix2pix-test that pip install gives."""
    cli.run("test", main, "interrupted: stopped at once")  # a second Ctrl-C, or one before translating started


if __name__ == "__main__":
    command()
