"""Copies among a dataset's images: identical pixels by hash, and near-copies (the same photo
shifted, rescaled, recoloured, mirrored or recompressed) as nearest neighbours in a trained
network's embedding or among the images' thumbnails, each candidate then confirmed on its
pixels.

The pixel check compares 16x16 grey thumbnails, each standardised (mean 0, std 1, so that
brightness and contrast drop out), as their best correlation over shifts of up to one
thumbnail pixel (two image pixels at 32 px), a mirror, and either image's centre enlarged.
The thresholds (below) are set on planted copies and on the CIFAR-10 audit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Candidates: neighbours at a (centred) cosine of at least EMBEDDING_THRESHOLD in the
# network's embedding, or THUMB_CANDIDATE among the plain thumbnails; kept at a best thumbnail
# correlation of PIXEL_THRESHOLD and of their details of DETAIL_THRESHOLD. On CIFAR-10, planted
# copies (shifted, rescaled by 1.15, JPEG at quality 60, recoloured) score 0.95 or more (99%
# of the rescaled ones, all others) and 0.89 or more in detail; distinct photos that pass the
# first check are mostly ships on a plain sea, with details at 0.45-0.65 (docs/guide/audit.md).
EMBEDDING_THRESHOLD = 0.85
THUMB_CANDIDATE = 0.80
# A network's embedding is crowded (an image's nearest other image sits at a cosine of 0.95):
# of planted shifted copies, 74% are among their original's 5 nearest, 86% among 20.
EMBEDDING_NEIGHBOURS = 10
PIXEL_THRESHOLD = 0.95
DETAIL_THRESHOLD = 0.80
NEIGHBOURS = 5  # candidates per image among the thumbnails
THUMB = 16
ZOOMS = (1.1, 1.2)  # centre enlargements tried on either image of a pair


@dataclass
class Pair:
    """Two images (indices into the concatenated splits), the later one `b`."""

    a: int
    b: int
    embedding: float  # cosine similarity; 1.0 for identical pixels
    pixels: float  # best thumbnail correlation; 1.0 for identical pixels


def identical_pairs(images: torch.Tensor) -> list[Pair]:
    """Pairs of images with identical pixels (each later copy paired with the first)."""
    first: dict[bytes, int] = {}
    pairs = []
    flat = images.reshape(len(images), -1).numpy()
    for i, row in enumerate(flat):
        key = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
        if key in first:
            pairs.append(Pair(first[key], i, 1.0, 1.0))
        else:
            first[key] = i
    return pairs


def thumbnails(images: torch.Tensor, zoom: float = 1.0, detail: bool = False,
               chunk: int = 4096) -> torch.Tensor:
    """(N, 16, 16) grey thumbnails of uint8 images, each standardised; `zoom` > 1 enlarges
    the centre first (the same photo cropped closer); `detail` keeps only what differs from
    a 5x5 blur of the thumbnail (the objects' shapes, without the horizon and sky)."""
    out = []
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for start in range(0, len(images), chunk):
        grey = (images[start:start + chunk].float() * weights).sum(1, keepdim=True)
        if zoom != 1.0:
            size = grey.shape[-1]
            big = F.interpolate(grey, scale_factor=zoom, mode="bilinear", align_corners=False)
            edge = (big.shape[-1] - size) // 2
            grey = big[:, :, edge:edge + size, edge:edge + size]
        small = F.interpolate(grey, size=(THUMB, THUMB), mode="area")
        if detail:
            small = small - F.avg_pool2d(F.pad(small, (2,) * 4, mode="replicate"), 5, 1)
        small = small[:, 0]
        centred = small - small.mean((1, 2), keepdim=True)
        out.append(centred / centred.pow(2).mean((1, 2), keepdim=True).sqrt().clamp(min=1e-3))
    return torch.cat(out) if out else torch.empty(0, THUMB, THUMB)


def shifted_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Best correlation of thumbnails x[i] and y[i] over shifts of -1..1 and a mirror of y."""
    best = torch.full((len(x),), -1.0)
    for other in (y, y.flip(2)):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                xs = x[:, max(dy, 0):THUMB + min(dy, 0), max(dx, 0):THUMB + min(dx, 0)]
                ys = other[:, max(-dy, 0):THUMB + min(-dy, 0), max(-dx, 0):THUMB + min(-dx, 0)]
                xs = xs - xs.mean((1, 2), keepdim=True)
                ys = ys - ys.mean((1, 2), keepdim=True)
                corr = (xs * ys).sum((1, 2)) / (xs.pow(2).sum((1, 2)) * ys.pow(2).sum((1, 2))
                                                ).sqrt().clamp(min=1e-6)
                best = torch.maximum(best, corr)
    return best


def thumbnail_set(images: torch.Tensor, detail: bool = False) -> dict[float, torch.Tensor]:
    """Every image's thumbnail, plain and with its centre enlarged by each of ZOOMS."""
    return {zoom: thumbnails(images, zoom, detail) for zoom in (1.0, *ZOOMS)}


def pixel_similarity(thumbs: dict[float, torch.Tensor], a: torch.Tensor, b: torch.Tensor
                     ) -> torch.Tensor:
    """Best correlation of the thumbnails of images a[i] and b[i] (`thumbnail_set`), over
    shifts, a mirror, and either one's centre enlarged (a photo cropped closer or rescaled)."""
    plain = thumbs[1.0]
    best = shifted_correlation(plain[a], plain[b])
    for zoom in ZOOMS:
        best = torch.maximum(best, shifted_correlation(thumbs[zoom][a], plain[b]))
        best = torch.maximum(best, shifted_correlation(plain[a], thumbs[zoom][b]))
    return best


def confirmed(images: torch.Tensor, thumbs: dict[float, torch.Tensor], a: torch.Tensor,
              b: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(which pairs are copies, their thumbnail similarity): the thumbnails agree (at
    `threshold`), and so do their details (at DETAIL_THRESHOLD), so that two ships on the same
    sea are not taken for one photo."""
    pix = torch.cat([pixel_similarity(thumbs, a[i:i + 8192], b[i:i + 8192])
                     for i in range(0, len(a), 8192)])
    keep = pix >= threshold
    if keep.any():
        pa = a[keep]
        pb = b[keep]
        members = torch.unique(torch.cat([pa, pb]))
        where = torch.full((len(images),), -1, dtype=torch.long)
        where[members] = torch.arange(len(members))
        detail = thumbnail_set(images[members], detail=True)
        keep[keep.clone()] = pixel_similarity(detail, where[pa], where[pb]) >= DETAIL_THRESHOLD
    return keep, pix


def neighbour_candidates(embeddings: torch.Tensor, threshold: float = EMBEDDING_THRESHOLD,
                         k: int = NEIGHBOURS, chunk: int = 2048
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, cosine) of each image's k nearest neighbours above `threshold`, a < b, once.
    The embeddings are centred first: a network's features after its last activation are
    mostly positive, and uncentred every image's neighbour is at a cosine of about 0.98."""
    z = embeddings.float()
    z = F.normalize(z - z.mean(0, keepdim=True), dim=1)
    found_a = []
    found_b = []
    found_s = []
    for start in range(0, len(z), chunk):
        sims = z[start:start + chunk] @ z.T
        rows = torch.arange(start, start + len(sims))
        sims[torch.arange(len(sims)), rows] = -2.0  # not itself
        top, idx = sims.topk(min(k, len(z) - 1), dim=1)
        keep = top >= threshold
        a = rows[:, None].expand_as(idx)[keep]
        b = idx[keep]
        found_a.append(torch.minimum(a, b))
        found_b.append(torch.maximum(a, b))
        found_s.append(top[keep])
    if not found_a:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), torch.empty(0)
    a = torch.cat(found_a)
    b = torch.cat(found_b)
    s = torch.cat(found_s)
    _, first = np.unique((a * len(z) + b).numpy(), return_index=True)
    first = torch.from_numpy(first)
    return a[first], b[first], s[first]


def near_pairs(images: torch.Tensor, embeddings: torch.Tensor, *,
               embedding_threshold: float = EMBEDDING_THRESHOLD,
               pixel_threshold: float = PIXEL_THRESHOLD) -> list[Pair]:
    """Near-copies: neighbours in the network's embedding (which tolerates shifts and
    mirrors) or among the thumbnails (which tolerate recompression and recolouring), kept
    when their thumbnails agree; pairs of identical pixels are left to `identical_pairs`."""
    thumbs = thumbnail_set(images)
    found = [neighbour_candidates(embeddings, embedding_threshold, k=EMBEDDING_NEIGHBOURS),
             neighbour_candidates(thumbs[1.0].flatten(1), THUMB_CANDIDATE)]
    a = torch.cat([f[0] for f in found])
    b = torch.cat([f[1] for f in found])
    if not len(a):
        return []
    _, first = np.unique((a * len(images) + b).numpy(), return_index=True)
    a = a[torch.from_numpy(first)]
    b = b[torch.from_numpy(first)]
    cos = (F.normalize(embeddings[a].float(), dim=1) * F.normalize(embeddings[b].float(), dim=1)
           ).sum(1)
    keep, pix = confirmed(images, thumbs, a, b, pixel_threshold)
    keep &= ~(images[a] == images[b]).reshape(len(a), -1).all(1)
    return [Pair(int(i), int(j), round(float(c), 4), round(float(p), 4))
            for i, j, c, p in zip(a[keep], b[keep], cos[keep], pix[keep], strict=True)]
