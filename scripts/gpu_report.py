"""The GPU check's results as one markdown page and one JSON file: tables ready for docs/performance.md and the
four targets of issue 15, each met or not with its figure.

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


def targets(results: dict) -> list[dict]:
    """The four targets, each {target, figure, met}; met is None when its measurement is missing."""
    out = []
    for size in ("256", "512"):
        bench = results.get(f"unet{size}")
        shares = [r["share_of_peak"] for r in bench["rows"] if r.get("share_of_peak")] if bench else []
        best = max(shares, default=None)
        out.append(
            {
                "target": f"training at the best batch >= 15% of dense bf16 peak at {size} (aim 25%)",
                "figure": None if best is None else f"{100 * best:.1f}%",
                "met": None if best is None else best >= 0.15,
            }
        )
    bench = results.get("unet512")
    ratios = (
        [r["train_vs_baseline"] for r in bench["rows"] if r["batch_size"] == 1 and r["amp"] == "bf16"] if bench else []
    )
    best = max(ratios, default=None)
    out.append(
        {
            "target": "batch 1 with bf16 + channels_last (+ compile) >= 2x fp32 eager batch 1 (at 512)",
            "figure": None if best is None else f"{best:.2f}x",
            "met": None if best is None else best >= 2,
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
    data = results.get("data512")
    shares = [(r["config"], r["data_share"]) for r in data["rows"] if r["batch_size"] > 1] if data else []
    out.append(
        {
            "target": "data wait < 5% of the step at the best batch with the recommended workers (512)",
            "figure": ", ".join(f"{c}: {100 * s:.1f}%" for c, s in shares) or None,
            "met": None if not shares else all(s < 0.05 for _, s in shares),
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    out = (argv or sys.argv[1:])[0]
    names = ("unet256", "unet512", "maxbatch512", "data512", "agreement", "train_run")
    results = {n: load(out, f"{n}.json") for n in names}
    results = {k: v for k, v in results.items() if v is not None}
    lines = ["# GPU check", ""]
    gpu = os.path.join(out, "gpu.txt")
    if os.path.exists(gpu):
        lines += ["    " + ln for ln in open(gpu).read().strip().splitlines()] + [""]
    for n in ("unet256", "unet512", "data512"):
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
