"""The GPU check's results as one markdown page and one JSON file: tables ready for docs/performance.md and the
targets of issue 23 (docs/performance.md), each met or not with its figure.

    python scripts/gpu_report.py OUT_DIR      (run by scripts/gpu_check.sh; reads OUT_DIR/*.json)
"""

from __future__ import annotations

import json
import os
import sys


def load(out: str, name: str) -> dict | None:
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def speed_table(bench: dict) -> list[str]:
    lines = [
        f"{bench['netG']} at {bench['crop_size']} px ({bench['torch']})",
        "",
        "| config | train img/s | x fp32 bs1 | infer img/s | TFLOP/s | % of peak | peak MB | data wait % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in bench["rows"]:
        data = "" if r.get("data_share") is None else f"{100 * r['data_share']:.1f}"
        share = "" if r.get("share_of_peak") is None else f"{100 * r['share_of_peak']:.1f}"
        lines.append(
            f"| {r['config']} | {r['train_img_s']:.1f} | {r['train_vs_baseline']:.2f} | {r['infer_img_s']:.1f} | "
            f"{r['train_tflops']:.1f} | {share} | {r['peak_mem_mb']:.0f} | {data} |"
        )
    return lines


SAME_SPEED = 0.97  # "never slower": bf16 + channels_last within the 3% drift between two runs of one config


def _best_share(bench: dict | None) -> tuple[str, float] | None:
    rows = [(r["config"], r["share_of_peak"]) for r in bench["rows"] if r.get("share_of_peak")] if bench else []
    return max(rows, key=lambda r: r[1], default=None)


def _bf16_vs_fp32(bench: dict | None) -> list[tuple[int, float]]:
    """(batch, bf16 + channels_last img/s over fp32's) for each batch measured both ways, eager and uncompiled."""
    if not bench:
        return []
    plain = [r for r in bench["rows"] if not r.get("compile") and not r.get("cuda_graph") and not r["grad_checkpoint"]]
    fp32 = {r["batch_size"]: r["train_img_s"] for r in plain if r["amp"] == "none" and not r["channels_last"]}
    fast = {r["batch_size"]: r["train_img_s"] for r in plain if r["amp"] == "bf16" and r["channels_last"]}
    return [(b, fast[b] / fp32[b]) for b in sorted(set(fp32) & set(fast))]


def targets(results: dict) -> list[dict]:
    """The targets, each {target, figure, met}; met is None when its measurement is missing."""
    out = []
    bench = results.get("unet512")
    ones = [(r["config"], 1000 / r["train_img_s"]) for r in bench["rows"] if r["batch_size"] == 1] if bench else []
    best = min(ones, key=lambda r: r[1], default=None)
    out.append(
        {
            "target": "batch 1 at 512: a training step <= 8 ms (aim 5.5 ms)",
            "figure": None if best is None else f"{best[0]}: {best[1]:.1f} ms",
            "met": None if best is None else best[1] <= 8,
        }
    )
    ratios = [(size, b, x) for size in ("256", "512") for b, x in _bf16_vs_fp32(results.get(f"unet{size}"))]
    out.append(
        {
            "target": f"bf16 + channels_last never slower than fp32 at the same batch (>= {SAME_SPEED}x), 256 and 512",
            "figure": ", ".join(f"{s} bs{b}: {x:.2f}x" for s, b, x in ratios) or None,
            "met": None if not ratios else all(x >= SAME_SPEED for _, _, x in ratios),
        }
    )
    for size in ("256", "512"):
        best = _best_share(results.get(f"unet{size}"))
        out.append(
            {
                "target": f"the best batch at {size}: >= 20% of dense bf16 peak in counted FLOPs (aim 25%)",
                "figure": None if best is None else f"{best[0]}: {100 * best[1]:.1f}%",
                "met": None if best is None else best[1] >= 0.20,
            }
        )
    data = results.get("data512")
    shares = [(r["config"], r["data_share"]) for r in data["rows"] if r["batch_size"] > 1] if data else []
    out.append(
        {
            "target": "data wait < 5% of the step at the best batch at 512 with --device_preprocess",
            "figure": ", ".join(f"{c}: {100 * s:.1f}%" for c, s in shares) or None,
            "met": None if not shares else all(s < 0.05 for _, s in shares),
        }
    )
    mb = results.get("maxbatch512")
    rows = {r["config"]: r["max_batch"] for r in mb["max_batch"]} if mb else {}
    fp32, gc = rows.get("bs1"), rows.get("bf16,gc")
    out.append(
        {
            "target": "largest batch in 24 GB at 512: bf16 + --grad_checkpoint >= 2x fp32",
            "figure": None if not (fp32 and gc) else f"{gc} vs {fp32} ({gc / fp32:.1f}x)",
            "met": None if not (fp32 and gc) else gc >= 2 * fp32,
        }
    )
    return out


def reference_table(ref: dict) -> list[str]:
    """train.py beside the reference implementation, one machine, the same flags (reference512.json)."""
    lines = ["| run (unet_512, 572 -> 512, batch 1) | ms per iteration (median) |", "|---|---|"]
    return lines + [f"| {name} | {ms:.1f} |" for name, ms in ref["ms_per_iter"].items()]


def main(argv: list[str] | None = None) -> int:
    out = (argv or sys.argv[1:])[0]
    names = ("unet256", "unet512", "unet512compile", "maxbatch512", "data512", "agreement", "train_run", "reference512")
    results = {n: load(out, f"{n}.json") for n in names}
    results = {k: v for k, v in results.items() if v is not None}
    if "unet512" in results and "unet512compile" in results:  # the compiled configs count for the targets too
        results["unet512"]["rows"] += results["unet512compile"]["rows"][1:-1]
    lines = ["# GPU check", ""]
    gpu = os.path.join(out, "gpu.txt")
    if os.path.exists(gpu):
        lines += ["    " + ln for ln in open(gpu).read().strip().splitlines()] + [""]
    for n in ("unet256", "unet512", "unet512compile", "data512"):
        if n in results:
            lines += speed_table(results[n]) + [""]
    if "maxbatch512" in results:
        lines += ["| config (unet_512 at 512) | largest batch in 24 GB |", "|---|---|"]
        lines += [f"| {r['config']} | {r['max_batch']} |" for r in results["maxbatch512"]["max_batch"]] + [""]
    if "agreement" in results:
        a = results["agreement"]
        lines += [f"CPU vs {a['device']}, fp32, TF32 off (tolerance {a['tolerance']}):", ""]
        lines += [f"- {r['netG']} at {r['size']}: G {r['G_max_abs']:.2e}, D {r['D_max_abs']:.2e}" for r in a["rows"]]
        lines += [""]
    if "reference512" in results:
        lines += reference_table(results["reference512"]) + [""]
    if "train_run" in results:
        lines += ["Real training run: " + ", ".join(f"{k} {v}" for k, v in results["train_run"].items()), ""]
    checks = targets(results)
    lines += ["| target | figure | met |", "|---|---|---|"]
    for t in checks:
        met = {True: "yes", False: "no", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {t['figure'] or ''} | {met} |")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"results": results, "targets": checks}, f, indent=2)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
