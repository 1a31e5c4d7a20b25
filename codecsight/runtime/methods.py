"""Methods: how a pipeline chooses what the ViT encodes and what the LLM recomputes.

Every method runs on the same code path (one StreamPipeline), so comparisons differ only in these choices:
- token selection before the ViT: `select` = "all" (full compute), "codec" (change map + token plan),
  "pixel" (RLT: pixel change against the previous sample only, no codec signal), "uniform" (whole temporal
  patches dropped at a fixed rate), "stc" (STC's ViT cacher: a reference patch encoded in full every
  `stc_every` temporal patches, in between the `retention` share of tokens least similar to it);
- after the ViT: `post` = None or "evs" (drop the tokens most similar to the same token of the previous patch);
- what the LLM sees of tokens not encoded: `grid` = "cached" (their last embedding stands in) or "dropped"
  (left out; with `linger` = k, still shown by their last embedding for k patches after they last changed, so
  that an object that stops is seen to stay; a token a full encoding refreshed without change does not linger);
- the KV refresh policy and budget across windows (codecsight.prefill).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from codecsight.errors import ConfigError
from codecsight.plan import PlanConfig
from codecsight.prefill.engine import DEFAULT_BUDGET, DEFAULT_POLICY, POLICIES
from codecsight.signals import ChangeRule

SELECT = ("all", "codec", "pixel", "uniform", "stc")


@dataclass(frozen=True)
class Method:
    name: str
    select: str = "all"
    rule: ChangeRule = field(default_factory=ChangeRule)
    plan: PlanConfig = field(default_factory=PlanConfig)
    vit_mode: str = "isolated"
    grid: str = "cached"
    linger: int = 0  # dropped grid: patches a token stays in the LLM input (by its last embedding) after it changed
    post: str | None = None
    retention: float = 1.0  # uniform / evs / stc: fraction of tokens kept
    stc_every: int = 2
    kv_policy: str = "full"
    kv_budget: float = 0.0
    full_every: int = 8

    def __post_init__(self):
        if self.select not in SELECT:
            raise ConfigError(f"{self.name}: token selection {self.select!r} is not one of {SELECT}")
        if self.grid not in ("cached", "dropped"):
            raise ConfigError(f"{self.name}: grid must be 'cached' or 'dropped', got {self.grid!r}")
        if self.kv_policy not in POLICIES:
            raise ConfigError(f"{self.name}: KV policy {self.kv_policy!r} is not one of {POLICIES}")
        if self.linger and (self.grid != "dropped" or not 0 < self.linger <= 64):
            raise ConfigError(f"{self.name}: linger is a number of temporal patches (1-64) for grid 'dropped', "
                              f"got {self.linger} with grid {self.grid!r}")
        if not 0 < self.retention <= 1:
            raise ConfigError(f"{self.name}: retention must be in (0, 1], got {self.retention}")


# CodecSight's default: codec-guided pruning before the ViT, the changed tokens encoded in the context of the
# cached keys of their whole frame, unchanged tokens left out of the LLM's window (each window still holds a
# full encoding: the plan's refresh), KV reuse with codec-guided refresh. With the session-5 reference model,
# context encoding lost 0.8 F1 points less than isolated encoding at 1.07x its FLOPs on the seed-1 held-out
# split, and dropping costs 0.62 of the FLOPs of substituting cached embeddings (`codecsight-cached`) at
# equal F1 there. A token that stops changing stays in view one patch more (linger=1): dropped at once, an object
# that stops or falls vanished just when asked about; lingering gained 1.1-1.5 F1 points on three held-out splits
# (session-8 weights; seed 1 chose it) for 0.04-0.06 more of full's FLOPs with a model of real proportions
# (docs/reference-model.md).
CODECSIGHT = Method("codecsight", select="codec", vit_mode="context", grid="dropped", linger=1,
                    kv_policy=DEFAULT_POLICY, kv_budget=DEFAULT_BUDGET)

METHODS = {
    "full": Method("full"),
    "codecsight": CODECSIGHT,
    # its ablations: the same choices but those named, so a change to the default reaches them
    "codecsight-cached": replace(CODECSIGHT, name="codecsight-cached", grid="cached", linger=0),
    "codecsight-vit": replace(CODECSIGHT, name="codecsight-vit", kv_policy="full", kv_budget=0.0),  # no KV reuse
    "codecsight-kv": Method("codecsight-kv", kv_policy=DEFAULT_POLICY, kv_budget=DEFAULT_BUDGET),  # KV reuse only
    "pixel": Method("pixel", select="pixel"),
    "uniform": Method("uniform", select="uniform", retention=0.5, grid="dropped"),
    "evs": Method("evs", post="evs", retention=0.5, grid="dropped"),
    "stc": Method("stc", select="stc", retention=0.25),
    "reuse-none": Method("reuse-none", kv_policy="none"),
    "cacheblend": Method("cacheblend", kv_policy="deviation", kv_budget=0.15),
    "vlcache": Method("vlcache", kv_policy="vlcache", kv_budget=0.05),
}


def method(spec: str) -> Method:
    """A method by name, with optional knobs: "codecsight:kv_budget=0.2,vit_mode=context". A knob names a field of
    the Method, of its change rule (e.g. pixel_tau=4) or of its token plan (e.g. refresh_every=4, budget=none)."""
    name, _, knobs = spec.partition(":")
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (one of {', '.join(METHODS)})")
    m = METHODS[name]
    for knob in filter(None, knobs.split(",")):
        key, _, value = knob.partition("=")
        for part in (None, "rule", "plan"):
            owner = getattr(m, part) if part else m
            if key in owner.__dataclass_fields__ and key not in ("name", "rule", "plan"):
                break
        else:
            raise ConfigError(f"{name}: unknown knob {key!r}")
        value = _parse(name, key, value, owner.__dataclass_fields__[key].type)
        changed = replace(owner, **{key: value})  # the owner's own checks run here
        m = replace(m, **({part: changed} if part else {key: value}), name=spec)
    return m


def _parse(name: str, key: str, value: str, kind: str):
    """A knob's text as its field's type; `kind` is the field's annotation, e.g. "float | None"."""
    if value.lower() == "none" and "None" in kind:
        return None
    kind = kind.split("|")[0].strip()
    if kind == "bool":
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"{name}: {key} must be true or false, got {value!r}")
        return value.lower() == "true"
    try:
        return {"int": int, "float": float}.get(kind, str)(value)
    except ValueError as e:
        raise ConfigError(f"{name}: bad value for {key}: {value!r}") from e
