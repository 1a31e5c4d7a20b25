"""Uniform weight average of reference models trained from one init ("model soup", Wortsman et al. 2022).

Models fine-tuned from the same weights sit in one basin, where the mean of their weights can generalise better
than each of them (session 29 shipped the mean of two such arms). The mean is taken in float32 and stored in the
first model's dtype; the config, tokenizer and every other file come from the first model.

    python -m codecsight.reference.average OUT MODEL_DIR MODEL_DIR [...]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"


def average_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensor-wise mean of state dicts with the same names and shapes."""
    if not states:
        raise ValueError("nothing to average")
    names = states[0].keys()
    for i, s in enumerate(states[1:], 2):
        if s.keys() != names:
            raise ValueError(f"model {i} has other weights than model 1: {sorted(set(s) ^ set(names))[:3]}")
        bad = [n for n in names if s[n].shape != states[0][n].shape]
        if bad:
            raise ValueError(f"model {i} differs in shape from model 1 at {bad[0]}")
    return {n: (sum(s[n].float() for s in states) / len(states)).to(states[0][n].dtype) for n in names}


def average_models(out: str, folders: list[str]) -> None:
    """Write to OUT the average of the saved models in FOLDERS (same architecture, checked by their configs)."""
    configs = []
    for f in folders:
        if not os.path.isfile(os.path.join(f, WEIGHTS)) or not os.path.isfile(os.path.join(f, "config.json")):
            raise ValueError(f"{f}: not a saved model (no {WEIGHTS} and config.json)")
        with open(os.path.join(f, "config.json")) as fh:
            configs.append(json.load(fh))
    for f, c in zip(folders[1:], configs[1:]):
        if c != configs[0]:
            raise ValueError(f"{f}: its config differs from {folders[0]}'s (another architecture or input size)")
    if os.path.abspath(out) in {os.path.abspath(f) for f in folders}:
        raise ValueError("OUT must not be one of the models averaged")
    mean = average_state([load_file(os.path.join(f, WEIGHTS)) for f in folders])
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(folders[0]):
        if name != WEIGHTS and os.path.isfile(os.path.join(folders[0], name)):
            shutil.copy(os.path.join(folders[0], name), out)
    save_file(mean, os.path.join(out, WEIGHTS), metadata={"format": "pt"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m codecsight.reference.average", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder to write the averaged model to")
    p.add_argument("models", nargs="+", help="saved models of one architecture (at least two)")
    args = p.parse_args(argv)
    if len(args.models) < 2:
        p.error("an average needs at least two models")
    try:
        average_models(args.out, args.models)
    except ValueError as e:
        p.error(str(e))
    print(f"saved {args.out}: the mean of {len(args.models)} models", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
