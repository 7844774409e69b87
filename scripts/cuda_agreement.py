"""CPU and CUDA agree: the same weights and input give the same G and D outputs in fp32 with TF32 off.

    python scripts/cuda_agreement.py --json agreement.json

G and D are built as train.py builds them (ngf = ndf = 64, batch norm), in eval mode (running statistics, no
dropout: the RNG streams of the two devices differ), on one random input per size. Exit status 1 when a
maximum absolute difference is 1e-3 or more.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import define_D, define_G  # noqa: E402
from options.options import parse  # noqa: E402

TOLERANCE = 1e-3


def compare(netG: str, size: int, device: torch.device) -> dict:
    opt = parse(True, ["--netG", netG, "--crop_size", str(size), "--load_size", str(size), "--display_id", "0"])
    g = opt.generator
    torch.manual_seed(0)
    G = define_G(g, "normal", 0.02, False).eval()
    D = define_D(opt.discriminator, g, "normal", 0.02, False).eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        g_cpu = G(x)
        d_cpu = D(torch.cat([x, g_cpu], 1))
        G, D = G.to(device), D.to(device)
        g_dev = G(x.to(device)).cpu()
        d_dev = D(torch.cat([x, g_cpu], 1).to(device)).cpu()
    row = {"netG": netG, "size": size, "G_max_abs": float((g_cpu - g_dev).abs().max())}
    row["D_max_abs"] = float((d_cpu - d_dev).abs().max())
    row["ok"] = row["G_max_abs"] < TOLERANCE and row["D_max_abs"] < TOLERANCE
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", default=None)
    p.add_argument("--sizes", nargs="*", default=["unet_256:256", "unet_512:512"], help="netG:size pairs")
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 as the CPU does it
    rows = [compare(n, int(s), torch.device(args.device)) for n, s in (item.split(":") for item in args.sizes)]
    for r in rows:
        verdict = "agree" if r["ok"] else "DIFFER"
        print(
            f"{r['netG']} at {r['size']}: max |cpu - {args.device}| G {r['G_max_abs']:.2e}, "
            f"D {r['D_max_abs']:.2e}: {verdict}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "tolerance": TOLERANCE, "rows": rows}, f, indent=2)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
