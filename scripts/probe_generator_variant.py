"""Does a change to the synthetic generator help on real photos? A quick, reproducible answer.

Renders N synthetic photos (ρ = 0, classes balanced, families uniform) with the given pack shares (and,
optionally, shares of close-ups, of photos with a circuit board and of photos on a white backdrop), fits the product's linear probe (training/probe.py: frozen ImageNet features,
logistic regression) at three C, and scores it on the real-photo *dev* split: balanced accuracy, per-class
recall and the mean negative log-likelihood of the true class (less noisy than accuracy on 36 photos). Never
point it at the test split. One JSON line per run on stdout and appended to <reports>/probe_variants.jsonl.

    python scripts/probe_generator_variant.py --shares cylindrical=0.03,prismatic=0.2
    python scripts/probe_generator_variant.py --shares cylindrical=0.03,prismatic=0 --close-up 0.35
    python scripts/probe_generator_variant.py --arch efficientnet_lite2 --size 260 --n 3000 --boards 0.5
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from evbattery.cli.synth import parse_shares
from evbattery.core.config import CLASSES
from evbattery.core.imageio import load_rgb
from evbattery.core.io import reports_dir
from evbattery.data.synth import scene
from evbattery.data.synth.backgrounds import FAMILIES
from evbattery.data.synth.generate import image_rng, validate_pack_shares
from evbattery.data.transforms import resize_uint8
from evbattery.evaluation.photo_folder import balanced_accuracy, list_photos
from evbattery.models.backbones import backbone_spec, classifier_head
from evbattery.models.classifier import build_classifier
from evbattery.training.probe import fit_head, pooled_features


def _close_ups(close_up: float) -> None:
    """A share of close-ups (cell area log-uniform in 12-55 % of the frame), patched into this process."""
    if close_up > 0:
        default = scene.sample_area

        def sample_area(rng: np.random.Generator) -> float:
            return float(np.exp(rng.uniform(np.log(0.12), np.log(0.55)))) if rng.random() < close_up else default(rng)

        scene.sample_area = sample_area


def _render(job: tuple[dict[str, float], float, float, float, str, int, int]) -> tuple[np.ndarray, int]:
    shares, close_up, boards, studio, split, i, seed = job
    torch.set_num_threads(1)
    _close_ups(close_up)
    family = FAMILIES[int(np.random.default_rng([seed, i, 7]).integers(len(FAMILIES)))]
    return scene.render_scene(CLASSES[i % 3], family, 256, image_rng(seed, split, i), shares,
                              boards, studio).image, i % 3


def _synth(shares: dict[str, float], close_up: float, boards: float, studio: float, split: str, n: int,
           seed: int) -> tuple[list, np.ndarray]:
    with Pool() as pool:
        out = pool.map(_render, [(shares, close_up, boards, studio, split, i, seed) for i in range(n)], chunksize=16)
    return [o[0] for o in out], np.array([o[1] for o in out])


def run(shares: dict[str, float], close_up: float = 0.0, arch: str = "efficientnet_lite0", size: int = 224,
        n: int = 1500, n_test: int = 300, dev: Path = Path("data/real_photos/dev"), seed: int = 1,
        boards: float = 0.0, studio: float = 0.0) -> dict:
    """Probe at C = 1e-4, 3e-4, 1e-3 on n synthetic photos; its accuracy on n_test synthetic photos and on dev.
    shares: pack shares of the classes named; the others keep packs.PACK_SHARES."""
    shares = validate_pack_shares(shares)
    model, _ = build_classifier(len(CLASSES), "auto", arch=arch)
    head, spec = classifier_head(model, arch), backbone_spec(arch)
    norm = (list(spec.mean), list(spec.std))

    def features(images: list[np.ndarray]) -> np.ndarray:
        x = torch.stack([resize_uint8(im, size) for im in images])
        return pooled_features(model, head, x, norm, batch_size=32, progress=True)

    train, y_train = _synth(shares, close_up, boards, studio, "train", n, seed)
    test, y_test = _synth(shares, close_up, boards, studio, "test", n_test, seed + 100)
    f_train, f_test = features(train), features(test)
    photos = list_photos(dev)
    f_dev = features([load_rgb(p) for p, _ in photos])
    y_dev = np.array([CLASSES.index(c) for _, c in photos])
    result: dict = {"shares": shares, "close_up": close_up, "boards": boards, "studio": studio, "arch": arch, "size": size, "n": n}
    for c in (1e-4, 3e-4, 1e-3):
        w, b = fit_head(f_train, y_train, len(CLASSES), c)
        z = f_dev @ w.T + b
        bal = balanced_accuracy(y_dev, z.argmax(1), len(CLASSES))
        log_p = z - z.max(1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
        result[f"C={c:g}"] = {"synthetic_test": round(float(((f_test @ w.T + b).argmax(1) == y_test).mean()), 3),
                              "dev_balanced": round(bal["value"], 3),
                              "dev_recall": {CLASSES[k]: round(v["recall"], 2) for k, v in bal["per_class"].items()},
                              "dev_nll": round(float(-log_p[np.arange(len(y_dev)), y_dev].mean()), 3)}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shares", default="cylindrical=0.03,prismatic=0.2", help="class=share,... (as data synth --packs)")
    ap.add_argument("--close-up", type=float, default=0.0, help="share of close-up photos (0 = the product's)")
    ap.add_argument("--boards", type=float, default=0.0, help="share of photos with a circuit board (data synth --boards)")
    ap.add_argument("--studio", type=float, default=0.0, help="share of photos on a white backdrop (data synth --studio)")
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=1500, help="synthetic training photos")
    ap.add_argument("--n-test", type=int, default=300, help="synthetic test photos")
    ap.add_argument("--dev", type=Path, default=Path("data/real_photos/dev"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    shares = parse_shares(args.shares)
    result = run(shares, args.close_up, args.arch, args.size, args.n, args.n_test, args.dev, args.seed, args.boards,
                 args.studio)
    line = json.dumps(result)
    print(line)
    out = reports_dir() / "probe_variants.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
