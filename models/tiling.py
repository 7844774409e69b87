"""Tiled inference: an image too large for memory translated in overlapping tiles, blended with a smooth window."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Top (or left) offsets of the tiles along one side: a step of tile - overlap, the last tile flush with the
    end. One tile when the side fits in one."""
    if size <= tile:
        return [0]
    n = math.ceil((size - overlap) / (tile - overlap))
    starts = [min(i * (tile - overlap), size - tile) for i in range(n)]
    return sorted(set(starts))


def ramp(length: int, overlap: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
    """A 1-D blending weight: raised-cosine fades over `overlap` samples on the sides that meet another tile, 1
    elsewhere. Never 0, so every pixel has weight."""
    w = torch.ones(length, dtype=torch.float64)
    n = min(overlap, length)
    if n > 0:
        # (i + 0.5) / n keeps the first weight above 0; 0.5 - 0.5 cos goes smoothly from ~0 to ~1.
        fade = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(n, dtype=torch.float64) + 0.5) / n)
        if fade_in:
            w[:n] = torch.minimum(w[:n], fade)
        if fade_out:
            w[-n:] = torch.minimum(w[-n:], fade.flip(0))
    return w


def translate_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, output_nc: int, tile: int, overlap: int
) -> torch.Tensor:
    """fn over x (N, C, H, W) in tiles of tile x tile that overlap by `overlap` pixels; each output pixel is the
    window-weighted mean of the tiles that cover it. fn maps (N, C, h, w) to (N, output_nc, h, w); it sees one tile
    at a time (so batch statistics are the tile's). Returns (N, output_nc, H, W) in fp32 on x's device."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), not {overlap} with tile {tile}")
    n, _, h, w = x.shape
    out = torch.zeros(n, output_nc, h, w, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=x.device)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    for y in ys:
        th = min(tile, h - y)
        wy = ramp(th, overlap, y > 0, y + th < h)
        for x0 in xs:
            tw = min(tile, w - x0)
            wx = ramp(tw, overlap, x0 > 0, x0 + tw < w)
            win = (wy[:, None] * wx[None, :]).to(device=x.device, dtype=torch.float32)
            part = fn(x[..., y : y + th, x0 : x0 + tw]).float()
            out[..., y : y + th, x0 : x0 + tw] += part * win
            weight[..., y : y + th, x0 : x0 + tw] += win
    return out / weight
