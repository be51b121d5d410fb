"""Linear probe (`--train-layers head`): keep a pretrained backbone frozen and fit only the classification head.

Why it exists: models trained only on synthetic photos must work on real ones. Fine-tuning an ImageNet backbone
on the synthetic photos reached 97 % on synthetic test photos but 43 % balanced accuracy on real photos (chance
33 %); fine-tuning moves the features the real photos need (Kumar et al. 2022, "Fine-Tuning can Distort
Pretrained Features and Underperform Out-of-Distribution"). A linear head on the frozen ImageNet features keeps
them: measured in docs/benchmarks.md ("Real photos").

The head is an L2-regularised multinomial logistic regression (scikit-learn) on standardised pooled features, one
pass over the un-augmented training photos, no epochs. The standardisation and a temperature fitted on the
validation split and corrupted copies of it (so the confidence the API reports holds up beyond the synthetic
photos) are folded into the model's own Linear layer, so the checkpoint is an ordinary classifier: Predictor,
ONNX, Grad-CAM and the bias suite use it as is.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from evbattery.core.devices import autocast
from evbattery.data.corruptions import corrupted_copies
from evbattery.data.transforms import normalize
from evbattery.models.backbones import without_head
from evbattery.models.novelty import fit_novelty

DEFAULT_C = 3e-4  # inverse L2 strength on standardised features; chosen on the real-photo dev split
# Corrupted copies of each val photo the temperature is fitted on, with the clean ones (see fit_linear_probe):
# on the real-photo dev split the recipe's probes' mean negative log-likelihood fell from 0.525 to 0.447 (image
# model) and from 1.274 to 1.011 (cutout model, segmenter masks); their synthetic val ECE rose by 0.003-0.005.
DEFAULT_SHIFT_COPIES = 3


@torch.inference_mode()
def pooled_features(model: nn.Module, head: nn.Linear, images: torch.Tensor, norm: tuple[list[float], list[float]],
                    batch_size: int = 64, device: torch.device | None = None, bf16: bool = False,
                    progress: bool = False, desc: str = "features", onnx: bool = True) -> np.ndarray:
    """(N,3,S,S) uint8 -> (N, D) float32: what `head` receives (the backbone's pooled features), model in eval mode.

    onnx: through ONNX Runtime where it is the faster CPU path (inference.cpu_onnx: fp32 on a CPU without bf16, at
    least ORT_MIN_FORWARDS photos; 3-5x torch for the Lite backbones), else torch."""
    device = device or next(model.parameters()).device
    model.eval()
    session = _feature_session(model, head, images, norm, device, bf16) if onnx else None
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].float().cpu()))
    try:
        for i in tqdm(range(0, len(images), batch_size), desc=desc + (" (ONNX Runtime)" if session else ""),
                      unit="batch", disable=not progress, leave=False):
            x = normalize(images[i:i + batch_size].to(device), *norm)
            if session is not None:
                captured.append(torch.from_numpy(session.run(None, {"input": x.numpy()})[0]))
                continue
            with autocast(device, enabled=bf16):
                model(x)
    finally:
        hook.remove()
    return torch.cat(captured).numpy() if captured else np.zeros((0, head.in_features), np.float32)


def _feature_session(model: nn.Module, head: nn.Linear, images: torch.Tensor, norm: tuple[list[float], list[float]],
                     device: torch.device, bf16: bool) -> Any:
    """An ONNX Runtime session for `model` up to `head`'s input, or None where torch is the better path (or the
    export does not match torch: then torch, with a warning)."""
    from evbattery.inference.cpu_onnx import onnx_runtime_fits, onnx_runtime_session

    if onnx_runtime_fits(device, bf16, len(images)) is not None:
        return None
    try:
        return onnx_runtime_session(without_head(model, head), normalize(images[:4], *norm))
    except Exception as e:
        warnings.warn(f"probe features through torch: ONNX Runtime export failed ({type(e).__name__}: {e})",
                      stacklevel=2)
        return None


def fit_head(features: np.ndarray, labels: np.ndarray, n_classes: int, c: float = DEFAULT_C,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on standardised features, folded back to raw features: (W (K, D), b (K,)) such that
    features @ W.T + b are the regression's logits. Classes are weighted to count equally."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError(f"a linear probe needs photos of at least two classes; the training split has only "
                         f"class {present.tolist()}")
    scaler = StandardScaler().fit(features)
    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=seed)
    clf.fit(scaler.transform(features), labels)
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # two classes: sklearn keeps one logit z for class 1; as two logits, [-z/2, z/2]
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    w = np.zeros((n_classes, features.shape[1]))
    b = np.full(n_classes, -1e4)  # a class absent from training is never predicted
    w[clf.classes_] = coef / scaler.scale_
    b[clf.classes_] = intercept - w[clf.classes_] @ scaler.mean_
    return w.astype(np.float32), b.astype(np.float32)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the negative log-likelihood of softmax(logits / T) (Guo et al. 2017), by a
    golden-section search over log T in [1e-2, 1e2]; 1.0 when there is nothing to fit on."""
    if not len(labels):
        return 1.0
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)

    def nll(log_t: float) -> float:
        return float(nn.functional.cross_entropy(z / np.exp(log_t), y))

    lo, hi = np.log(1e-2), np.log(1e2)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(60):
        if nll(a) < nll(b):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    return float(np.exp((lo + hi) / 2))


def fit_linear_probe(model: nn.Module, head: nn.Linear, train_images: torch.Tensor, train_labels: torch.Tensor,
                     val_images: torch.Tensor, val_labels: torch.Tensor, norm: tuple[list[float], list[float]],
                     c: float = DEFAULT_C, batch_size: int = 64, device: torch.device | None = None,
                     bf16: bool = False, progress: bool = False, seed: int = 0,
                     shift_copies: int = DEFAULT_SHIFT_COPIES) -> dict[str, Any]:
    """Fit `head` (the model's final Linear) in place on frozen features; the rest of the model is untouched.

    The temperature is fitted on the val photos together with shift_copies corrupted copies of each
    (data/corruptions.py), so that the confidence holds up on photos unlike the training ones; 0: on the clean
    val photos only. Returns the training pass's {"loss", "acc", "img_per_s"} (as train_one_epoch does),
    "temperature", "temperature_clean_val" (the one the clean val photos alone would give), "val_logits" (the
    fitted model's logits for val_images, from the features already computed: no second pass over val), and
    "novelty" / "novelty_meta" (models/novelty.py, fitted on the same features).
    """
    t0 = time.perf_counter()
    n_classes = head.out_features
    f_train = pooled_features(model, head, train_images, norm, batch_size, device, bf16, progress, "probe train")
    y_train = train_labels.cpu().numpy()
    w, b = fit_head(f_train, y_train, n_classes, c, seed)
    y_val = val_labels.cpu().numpy()
    shifted, source = corrupted_copies(val_images, shift_copies, seed)
    f_val = pooled_features(model, head, torch.cat([val_images.cpu(), shifted]), norm, batch_size, device, bf16,
                            progress, "probe val")
    z_val = f_val @ w.T + b
    novelty, novelty_meta = fit_novelty(f_train, y_train, f_val[:len(y_val)])
    temperature_clean = fit_temperature(z_val[:len(y_val)], y_val)
    temperature = fit_temperature(z_val, np.concatenate([y_val, y_val[source.numpy()]]))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w / temperature))
        head.bias.copy_(torch.from_numpy(b / temperature))
    logits = torch.from_numpy(f_train @ (w / temperature).T + b / temperature)
    y = torch.from_numpy(y_train).long()
    secs = time.perf_counter() - t0
    return {"loss": float(nn.functional.cross_entropy(logits, y)), "acc": float((logits.argmax(1) == y).float().mean()),
            "img_per_s": (len(train_images) + len(f_val)) / secs, "temperature": temperature,
            "temperature_clean_val": temperature_clean,
            "val_logits": (z_val[:len(y_val)] / temperature).astype(np.float32),
            "novelty": novelty, "novelty_meta": novelty_meta}
