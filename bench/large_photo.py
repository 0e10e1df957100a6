"""Does photo size decide the cost? Seconds and peak memory of one explanation of a
bundled GroceryStore photo at its own size and upscaled to a phone-camera size.

Not a test. Each case runs in a fresh process (peak RSS is per process):
``load_image`` + ``MultimodalLime(n_samples=N, early_stop=False, quality=False)`` with a
cheap stand-in model that, like a CNN's preprocessing, resizes every image to its
256 px input and scores colour means and one word: what is measured is what prodlens
does around the model (decode, segmentation, masks, fills), which is what grew with the
photo. The normal-size case also prints a digest of its weights, to compare versions.

Usage::

    python bench/large_photo.py                    # 24 MP, 64 perturbations
    python bench/large_photo.py --megapixels 12 --samples 128
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PHOTO = Path(__file__).resolve().parent.parent / "src/prodlens/sample_data/grocery_mini/images/train/Oatly-Oat-Milk_001.jpg"


def _case(path: str, samples: int) -> dict:
    import resource
    import time

    import numpy as np
    from PIL import Image

    from prodlens.data.images import load_image
    from prodlens.data.types import OcrToken
    from prodlens.explain import MultimodalLime

    class Stand_in:  # noqa: N801 - a 256 px "model": resize, then colour means + one word
        classes = ["other", "oatly"]
        input_size = 256

        def predict_proba(self, images, token_lists):
            out = []
            for im, ts in zip(images, token_lists):
                small = np.asarray(Image.fromarray(im).resize((256, 256), Image.BILINEAR), float) / 255
                z = small[:128, :, 1].mean() - small[128:, :, 2].mean() + any(t.text == "OATLY" for t in ts)
                out.append([1 / (1 + np.exp(z)), 1 - 1 / (1 + np.exp(z))])
            return np.array(out)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    image = load_image(path)
    t_load = time.perf_counter() - t0
    h, w = image.shape[:2]
    tokens = (OcrToken("OATLY", (0.1 * w, 0.1 * h, 0.5 * w, 0.2 * h)), OcrToken("1L", (0.6 * w, 0.8 * h, 0.8 * w, 0.9 * h)))
    lime = MultimodalLime(n_samples=samples, early_stop=False, quality=False, seed=0, progress=False)
    t1 = time.perf_counter()
    res = lime.explain(Stand_in(), image=image, tokens=tokens)
    t_explain = time.perf_counter() - t1
    e = res.predicted_explanation
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "photo": f"{w}x{h} ({w * h / 1e6:.1f} MP)", "load_s": round(t_load, 2), "explain_s": round(t_explain, 2),
        "peak_rss_mb": round(peak / 1024), "rss_after_imports_mb": round(base / 1024),
        "segments": list(np.asarray(e.segments).shape), "superpixels": e.n_superpixels,
        "weights_sha1": hashlib.sha1(np.round(e.weights, 10).tobytes()).hexdigest()[:12],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=24.0)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(_case(args.case, args.samples)))
        return
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.jpg"
        with Image.open(PHOTO) as im:
            scale = (args.megapixels * 1e6 / (im.width * im.height)) ** 0.5
            im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC).save(big, quality=90)
        for path in (PHOTO, big):
            out = subprocess.run([sys.executable, __file__, "--case", str(path), "--samples", str(args.samples)],
                                 capture_output=True, text=True, check=True)
            print(out.stdout.strip())


if __name__ == "__main__":
    main()
