"""Training loop for one network: AdamW, one-cycle LR, early stopping on a grouped validation split, seeded.

Also the grouped splits themselves (duplicated sites never straddle train/validation) and device selection.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from geesoil.errors import ModelError

log = logging.getLogger(__name__)

#: CPU threads while training: the nets are tiny, so intra-op threading mostly adds synchronisation (measured 5x
#: slower with 2 threads on a busy 2-core machine); the caller's setting is restored afterwards
TRAIN_THREADS = 1
#: locations closer than this (degrees, ≈1 km) count as one site when splitting: compilations share profiles
GROUP_ROUNDING_DEG = 0.01


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_epochs: int = 200
    batch_size: int = 512
    patience: int = 20
    #: share of the LR schedule spent warming up (one-cycle)
    pct_start: float = 0.1
    #: probability that a categorical input is replaced by the unknown slot during training (trains that slot)
    cat_dropout: float = 0.05


@dataclass
class TrainResult:
    best_epoch: int
    best_val_loss: float
    epochs: int
    seconds: float
    history: list[tuple[float, float]] = field(default_factory=list)
    #: the weights after every epoch (only with ``keep_snapshots``)
    snapshots: list[dict[str, torch.Tensor]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 3),
        }


def select_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; anything else is passed to :class:`torch.device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device={device!r} requested but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def default_groups(X: pd.DataFrame, groups: Sequence | np.ndarray | None = None) -> np.ndarray:
    """Integer group labels for splitting: ``groups`` if given, else ``profile_id``, else rounded lon/lat."""
    if groups is not None:
        g = pd.Series(np.asarray(groups))
    elif "lon" in X.columns and "lat" in X.columns:
        r = GROUP_ROUNDING_DEG
        lon = np.round(pd.to_numeric(X["lon"], errors="coerce").to_numpy(float) / r)
        lat = np.round(pd.to_numeric(X["lat"], errors="coerce").to_numpy(float) / r)
        keys = [f"{a}:{b}" for a, b in zip(lon, lat, strict=True)]
        g = pd.Series([k if "nan" not in k else f"row{i}" for i, k in enumerate(keys)])
    elif "profile_id" in X.columns:
        g = X["profile_id"].astype(str).reset_index(drop=True)
    else:
        g = pd.Series(np.arange(len(X)))
    if len(g) != len(X):
        raise ModelError(f"groups has {len(g)} entries but the table has {len(X)} rows")
    return pd.factorize(g)[0]


def member_splits(
    groups: np.ndarray, n_members: int, *, val_fraction: float, rng: np.random.Generator, mode: str = "random"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/validation row indices for each ensemble member, never splitting a group.

    ``mode="random"``: each member draws its own validation groups (≈ ``val_fraction`` of rows).
    ``mode="folds"``: groups are dealt into ``max(n_members, round(1/val_fraction))`` folds and member *m*
    validates on fold *m*, so with enough members every row gets an out-of-validation prediction (cross-conformal).
    """
    uniq = np.unique(groups)
    if uniq.size < 2:
        raise ModelError("all samples fall in one group (same location); a validation split needs ≥2 sites")
    n = groups.size
    counts = np.bincount(groups)
    splits = []
    if mode == "random":
        target = max(1, int(round(val_fraction * n)))
        for _ in range(n_members):
            order = rng.permutation(uniq)
            take = np.searchsorted(np.cumsum(counts[order]), target) + 1
            take = min(take, uniq.size - 1)
            is_val = np.isin(groups, order[:take])
            splits.append((np.flatnonzero(~is_val), np.flatnonzero(is_val)))
    elif mode == "folds":
        k = max(n_members, int(round(1 / max(val_fraction, 1e-6))), 2)
        k = min(k, uniq.size)
        order = rng.permutation(uniq)
        fold_of = np.zeros(counts.size, dtype=np.int64)
        load = np.zeros(k)
        for g in order[
            np.argsort(-counts[order], kind="stable")
        ]:  # biggest groups first, to the lightest fold
            f = int(np.argmin(load))
            fold_of[g] = f
            load[f] += counts[g]
        fold = fold_of[groups]
        for m in range(n_members):
            is_val = fold == (m % k)
            splits.append((np.flatnonzero(~is_val), np.flatnonzero(is_val)))
    else:
        raise ValueError(f"unknown split mode {mode!r}")
    return splits


Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Penalty = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def to_tensors(cont: np.ndarray, cat: np.ndarray, z: np.ndarray | None, device: torch.device) -> Tensors:
    zt = torch.as_tensor(np.zeros(len(cont)) if z is None else z, dtype=torch.float32)
    return (
        torch.as_tensor(cont, dtype=torch.float32).to(device),
        torch.as_tensor(cat, dtype=torch.int64).to(device),
        zt.to(device),
    )


def train_net(
    net: nn.Module,
    train: Tensors,
    val: Tensors,
    cfg: TrainConfig,
    *,
    seed: int,
    progress: bool = True,
    desc: str = "train",
    param_groups: Sequence[tuple[Sequence[nn.Parameter], float]] | None = None,
    penalty: Penalty | None = None,
    keep_snapshots: bool = False,
) -> TrainResult:
    """Train ``net`` in place on ``train`` (cont, cat, z) with MSE, keep the weights with the best validation loss.

    ``param_groups``: (parameters, LR multiplier) pairs; multiplier 0 freezes. ``penalty(net, cont, cat)`` is
    added to the batch loss (e.g. feature alignment). The global torch RNG is forked, so callers' state is kept.
    ``keep_snapshots``: also keep every epoch's weights (CPU copies) so the caller can pick one epoch across
    several members (pooled cross-validated early stopping); use a generous patience then.
    """
    t0 = time.perf_counter()
    xc = train[0]
    n = xc.shape[0]
    if param_groups is None:
        param_groups = [(list(net.parameters()), 1.0)]
    groups = []
    for params, mult in param_groups:
        params = [p for p in params if p.requires_grad]
        if mult > 0 and params:
            groups.append({"params": params, "lr": cfg.lr * mult, "max_lr": cfg.lr * mult})
    batch = max(1, min(cfg.batch_size, n))
    devices = [xc.device] if xc.device.type == "cuda" else []
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, TRAIN_THREADS))
    try:
        return _train_loop(
            net, train, val, cfg, seed, progress, desc, groups, batch, penalty, keep_snapshots, devices, t0
        )
    finally:
        torch.set_num_threads(threads)


def _one_cycle(
    opt: torch.optim.Optimizer, max_lr: list[float], total_steps: int, pct_start: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule whose warm-up and decay phases each last at least two steps.

    torch's OneCycleLR divides by zero when a phase is shorter than that (few samples x few epochs, e.g. 10 epochs
    of one batch); with fewer than 5 steps in all the learning rate simply stays at its maximum.
    """
    if total_steps < 5:
        for g, lr in zip(opt.param_groups, max_lr, strict=True):
            g["lr"] = lr
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    pct = min(max(pct_start, 3.0 / total_steps), 1.0 - 3.0 / total_steps)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps, pct_start=pct)


def _train_loop(
    net: nn.Module,
    train: Tensors,
    val: Tensors,
    cfg: TrainConfig,
    seed: int,
    progress: bool,
    desc: str,
    groups: list[dict[str, Any]],
    batch: int,
    penalty: Penalty | None,
    keep_snapshots: bool,
    devices: list[torch.device],
    t0: float,
) -> TrainResult:
    xc, xk, z = train
    n = xc.shape[0]
    steps_per_epoch = int(np.ceil(n / batch))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = _one_cycle(
            opt, [g["max_lr"] for g in groups], cfg.max_epochs * steps_per_epoch, cfg.pct_start
        )
        best = (np.inf, 0, copy.deepcopy(net.state_dict()))
        history: list[tuple[float, float]] = []
        snapshots: list[dict[str, torch.Tensor]] = []
        bar = tqdm(range(cfg.max_epochs), desc=desc, disable=not progress, leave=False, unit="ep")
        epoch = 0
        for epoch in bar:
            net.train()
            perm = torch.randperm(n, generator=gen).to(xc.device)
            total = 0.0
            for s in range(steps_per_epoch):
                idx = perm[s * batch : (s + 1) * batch]
                bc, bk, bz = xc[idx], xk[idx], z[idx]
                if cfg.cat_dropout > 0 and bk.numel():
                    drop = torch.rand(bk.shape, generator=gen).to(bk.device) < cfg.cat_dropout
                    bk = bk.masked_fill(drop, 0)
                loss = torch.mean((net(bc, bk) - bz) ** 2)
                if penalty is not None:
                    loss = loss + penalty(net, bc, bk)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * idx.numel()
            val_loss = evaluate_loss(net, val)
            history.append((total / n, val_loss))
            if keep_snapshots:
                snapshots.append({k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
            if val_loss < best[0] - 1e-6:
                best = (val_loss, epoch, copy.deepcopy(net.state_dict()))
            bar.set_postfix(loss=f"{total / n:.4f}", val=f"{val_loss:.4f}")
            if epoch - best[1] >= cfg.patience:
                break
        bar.close()
    net.load_state_dict(best[2])
    net.eval()
    res = TrainResult(best[1], float(best[0]), epoch + 1, time.perf_counter() - t0, history, snapshots)
    log.debug(
        "%s: best epoch %d of %d, val %.4f, %.1fs",
        desc,
        res.best_epoch,
        res.epochs,
        res.best_val_loss,
        res.seconds,
    )
    return res


@torch.no_grad()
def evaluate_loss(net: nn.Module, data: Tensors) -> float:
    xc, xk, z = data
    if xc.shape[0] == 0:
        return float("nan")
    net.eval()
    return float(torch.mean((predict_raw(net, xc, xk) - z) ** 2))


@torch.no_grad()
def predict_raw(net: nn.Module, xc: torch.Tensor, xk: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    net.eval()
    outs = [net(xc[i : i + chunk], xk[i : i + chunk]) for i in range(0, xc.shape[0], chunk)]
    return torch.cat(outs) if outs else torch.zeros(0, device=xc.device)
