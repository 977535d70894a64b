"""Make images/synthetic_samples.png: identities A and B rendered with the same nuisances.

Rows: A, B, A's eye mask (exact, from the renderer); one column per nuisance (the first is the
neutral pose). Optional measurements for the report:

    python scripts/make_synthetic_samples.py                 # writes the grid
    python scripts/make_synthetic_samples.py --bench         # render ms/image at 64/128/256
    python scripts/make_synthetic_samples.py --detect 100    # real MTCNN detection rate
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

from ganlib.synthetic import TEMPLATE, Nuisance, render, sample_nuisance

ROOT = Path(__file__).resolve().parents[1]


def make_grid_image(out: Path, size: int = 160, n: int = 8, seed: int = 7) -> None:
    nzs = [Nuisance()] + sample_nuisance(n - 1, seed)
    rows = {0: [], 1: [], "eyes": []}
    for nz in nzs:
        a, b = render(0, nz, size), render(1, nz, size)
        rows[0].append(torch.from_numpy(a.image).permute(2, 0, 1))
        rows[1].append(torch.from_numpy(b.image).permute(2, 0, 1))
        rows["eyes"].append(torch.from_numpy(a.eye_mask)[None].expand(3, -1, -1))
    tiles = torch.stack(rows[0] + rows[1] + rows["eyes"]).float() / 255.0
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=len(nzs), padding=4, pad_value=1.0), out)
    print(f"wrote {out}")


def bench(n: int = 50) -> None:
    """CPU time per image (process time, so other load on the machine does not count)."""
    nzs = sample_nuisance(n, 1)
    for size in (64, 128, 256):
        render(0, nzs[0], size)
        t = time.process_time()
        for i, nz in enumerate(nzs):
            render(i % 2, nz, size)
        print(f"{size:4d} px: {(time.process_time() - t) / n * 1000:.1f} ms/image (one core)")


def detect(n: int, seed: int = 123) -> None:
    """Detection rate of the real facenet_pytorch MTCNN on n random nuisances per identity, on the
    256 px crop itself and pasted into a 480x640 scene; mean eye error against TEMPLATE."""
    from facenet_pytorch import MTCNN

    torch.set_num_threads(1)
    mtcnn = MTCNN(keep_all=True, device="cpu")
    size = 256
    for ident in (0, 1):
        hits = {"crop": 0, "scene": 0}
        eye_err = []
        for nz in sample_nuisance(n, seed):
            img = render(ident, nz, size).image
            scene = np.empty((480, 640, 3), np.uint8)
            scene[:] = (96, 118, 104)
            scene[120:120 + size, 200:200 + size] = img
            for key, frame in (("crop", img), ("scene", scene)):
                boxes, probs, lms = mtcnn.detect(frame, landmarks=True)
                if boxes is not None and len(boxes) == 1:
                    hits[key] += 1
                    if key == "crop":
                        lm = lms.astype(float)[0] / size
                        eye_err.append(np.abs(lm[:2] - TEMPLATE[:2, ::-1]).max())
        print(f"identity {ident}: exactly one face in {hits['crop']}/{n} crops, {hits['scene']}/{n} scenes; "
              f"eye offset from template mean {np.mean(eye_err):.3f}, max {np.max(eye_err):.3f} (crop fractions)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "images" / "synthetic_samples.png")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--bench", action="store_true", help="print render time per image")
    ap.add_argument("--detect", type=int, default=0, metavar="N", help="MTCNN detection rate over N nuisances")
    args = ap.parse_args()
    if args.bench:
        bench()
    if args.detect:
        detect(args.detect)
    if not (args.bench or args.detect):
        make_grid_image(args.out, args.size)


if __name__ == "__main__":
    main()
