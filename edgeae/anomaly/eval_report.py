"""What an evaluation reports: the paper's tables (AP, random AP, ROC AUC, KS per feature and method), the
targets of issue 12 checked in ``summary.md``, and the run settings the numbers depend on."""

from __future__ import annotations

import math
from typing import Any

from edgeae.anomaly.eval_datasets import VALIDATION_ONLY, Scored
from edgeae.anomaly.eval_methods import BASELINES, DEFAULT
from edgeae.anomaly.labels import HIRISE_CLASSES, bin_name
from edgeae.anomaly.metrics import ranking_summary
from edgeae.anomaly.multiscale import MultiScale
from edgeae.anomaly.score import PatchScorer

ACCEPTANCE: dict[str, dict[str, Any]] = {
    "lroc_nac_craters": {"feature": bin_name(32.0, math.inf), "ap_gain": 1.2},
    "hirise_landmarks": {"feature": f"class 1 {HIRISE_CLASSES[1]}", "ap_gain": 1.2, "auc": 0.80},
    "msl_surface": {"feature": "hardware and targets", "auc": 0.85},
}


MODEL_SCORES = frozenset({"vae a(x)", "cae masked error"})  # the model's own score: a row set of an evaluation run
MIN_COUNT = 10  # fewer positives (or negatives) of a target's feature: its checks are indicative, not met/missed


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def acceptance(
    dataset: str, rows: list[dict[str, Any]], primary: str = DEFAULT, sampled: bool = False
) -> list[dict[str, Any]]:
    """The targets of issue 12 for one dataset: the default scorer's AP at least ``ap_gain`` × every
    baseline's, and its ROC AUC at least ``auc``. One dict per check: what, value, target, passed, the feature's
    positives and negatives, and ``indicative``: measured on a sample (``sampled``: a ``--limit`` left items out)
    or on fewer than :data:`MIN_COUNT` positives or negatives, so not a verdict on the target. A check that
    cannot be computed (no positive or no negative) is kept with ``value`` and ``passed`` None."""
    spec = ACCEPTANCE.get(dataset)
    if not spec:
        return []
    feat = spec["feature"]
    rs = {r["method"]: r for r in rows if r["feature"] == feat}
    if primary not in rs:  # this model has no such scorer (a CAE has no latents)
        return []
    me = rs[primary]
    pos, neg = me.get("positives"), me.get("negatives")
    few = pos is not None and neg is not None and min(pos, neg) < MIN_COUNT
    base = {"dataset": dataset, "scorer": primary, "feature": feat, "positives": pos, "negatives": neg,
            "indicative": bool(sampled or few)}  # fmt: skip
    checks: list[tuple[str, str | None]] = [(f"AP vs {b}", b) for b in BASELINES if b in rs if "ap_gain" in spec]
    checks += [("ROC AUC", None)] if "auc" in spec else []
    # baselines an evaluation run (its rows hold the model's own score) could not run: a CAE has no latents μ
    # for the isolation forest and kNN. One row says so, so that the rows present never read as the target met
    # against every baseline
    evaluated = "ap_gain" in spec and bool(MODEL_SCORES & rs.keys())
    absent = [b for b in BASELINES if b not in rs] if evaluated else []
    reason = "they rank VAE latents (mu); a CAE has none" if "cae masked error" in rs else "not in this run's methods"
    not_run = [{**base, "check": "AP vs " + ", ".join(absent), "value": None, "target": _target(spec, absent[0]),
                "detail": f"not run: {reason}", "passed": None}] if absent else []  # fmt: skip
    if me["ap"] is None:  # 0 positives or 0 negatives: nothing to rank, one row says so for all the checks
        none = "0 positives" if not pos else "0 negatives"
        why = f"not evaluated: {none}" + (" in this sample" if sampled else "")
        what = ", ".join(dict.fromkeys("AP vs each baseline" if b else c for c, b in checks))
        target = ", ".join(dict.fromkeys(_target(spec, b) for _, b in checks))
        return [{**base, "check": what, "value": None, "detail": why, "target": target, "passed": None}, *not_run]
    out = []
    for check, b in checks:
        if b is None:
            value, detail = me["auc"], f"{me['auc']:.3f}"
        else:
            value = me["ap"] / rs[b]["ap"] if rs[b]["ap"] > 0 else math.inf
            detail = (f"{me['ap']:.3f} vs {rs[b]['ap']:.3f} "
                      f"({me['improvement']:.2f}x vs {rs[b]['improvement']:.2f}x random)")  # fmt: skip
        goal = spec["auc"] if b is None else spec["ap_gain"]
        out.append({**base, "check": check, "value": value, "detail": detail, "target": _target(spec, b),
                    "passed": bool(value >= goal)})  # fmt: skip
    return out + not_run


def _target(spec: dict[str, Any], baseline: str | None) -> str:
    return f">= {spec['auc']:.2f}" if baseline is None else f">= {spec['ap_gain']:.2f}x"


def verdict(check: dict[str, Any]) -> str:
    """The ``met`` cell of a check: yes, **MISSED**, not evaluated, or indicative (n=...) on a sample or on fewer
    than :data:`MIN_COUNT` positives or negatives (whatever the value, it says nothing about the target)."""
    if check["passed"] is None:
        return "not evaluated"
    if check.get("indicative"):
        pos, neg = check.get("positives"), check.get("negatives")
        if pos is None or neg is None:
            return "indicative (a sample)"
        return f"indicative (n={_plural(pos, 'positive')} / {_plural(neg, 'negative')})"
    return "yes" if check["passed"] else "**MISSED**"


def acceptance_markdown(
    checks: list[dict[str, Any]],
    models: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    run: str = "",
) -> str:
    """``summary.md``: one row per target check, MISSED where a target is not met (indicative on a sample or too
    few positives, "not evaluated" where it cannot be computed); ``models``: per dataset, the model, ``run``:
    the settings shared by every dataset (views, seed, CAE keep); ``data``: per dataset, what was evaluated
    (sample sizes, a ``--limit``, the default scorer's settings)."""
    out = [
        "### Targets of issue 12 (each scorer vs the baselines)",
        "",
        "| dataset | scorer | feature | check | scorer vs baseline | ratio / value | target | met |",
        "|---|---|---|---|---|---:|---|---|",
    ]
    for c in checks:
        ds = c["dataset"] + (" (validation)" if c["dataset"] in VALIDATION_ONLY else "")
        value = "n/a" if c["value"] is None else f"{c['value']:.2f}"
        out.append(
            f"| {ds} | {c.get('scorer', DEFAULT)} | {c['feature']} | {c['check']} | {c['detail']} | "
            f"{value} | {c['target']} | {verdict(c)} |"
        )
    if not checks:
        out.append("| (no target checked) | | | | | | | |")
    if any(str(c.get("detail", "")).startswith("not run") for c in checks):
        out += ["", "not run: baselines this model cannot run; the AP target (against every baseline) is checked "
                "only against the others, so it cannot be met in full."]  # fmt: skip
    if any(verdict(c).startswith("indicative") for c in checks):
        out += ["", f"indicative: measured on a sample (--limit) or on fewer than {MIN_COUNT} positives or "
                "negatives; the targets are stated for the whole split."]  # fmt: skip
    if models:
        out += ["", "Models: " + "; ".join(f"{d}: `{m}`" for d, m in models.items()) + (f" ({run})" if run else "")
                + "."]  # fmt: skip
    if data:
        out += ["", "Data: " + "; ".join(f"{d}: {v}" for d, v in data.items()) + "."]
    return "\n".join(out) + "\n"


def run_settings(
    scorer: PatchScorer, ms: MultiScale, model: str | None, limit: int | None, seed: int, fill: bool = False
) -> dict[str, Any]:
    """What a run's numbers depend on beyond the data: model, views, seed, limit, the default scorer's windows,
    normalisation and combination, the CAE's kept fraction (``results.json["info"]["settings"]``)."""
    return {
        "model": model, "model_kind": scorer.kind, "views": scorer.views, "seed": seed, "limit": limit,
        "windows": list(ms.windows), "normalise": ms.normalise, "combine": ms.combine,
        "cae_keep": scorer.cae_keep if scorer.kind == "cae" else None, "fill_nodata": fill,
    }  # fmt: skip


def settings_note(settings: dict[str, Any]) -> str:
    """The per-dataset settings of :func:`run_settings` as summary text (the shared ones go on the Models line)."""
    sizes = "/".join(str(w) for w in settings["windows"])
    filled = ", partial patches' no-data filled (--fill-nodata)" if settings.get("fill_nodata") else ""
    return f"windows {sizes} px, normalise {settings['normalise']}, combine {settings['combine']}{filled}"


def data_note(
    dataset: str,
    rows: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    limit: int | None,
    sampled: bool = True,
    settings: dict[str, Any] | None = None,
) -> str:
    """What a dataset's checks were measured on: positives and negatives of each checked feature, and whether
    ``limit`` made it a sample (``sampled``: it left items out; the targets are stated for the whole split);
    ``settings`` (:func:`run_settings`): the default scorer's settings."""
    feats = dict.fromkeys(c["feature"] for c in checks if c["dataset"] == dataset)
    counts = {r["feature"]: (r["positives"], r["negatives"]) for r in rows if r["feature"] in feats}
    text = ", ".join(f"{f} {_plural(p, 'positive')} / {_plural(n, 'negative')}" for f, (p, n) in counts.items())
    text = text or "no target checked"
    if limit is not None and sampled:
        text += f" (a sample: --limit {limit}; the targets are stated for the whole split)"
    elif limit is not None:
        text += f" (--limit {limit}: every item)"
    if settings:
        text += f", {settings_note(settings)}"
    return text


def table_rows(scored: Scored) -> list[dict[str, Any]]:
    """One row per (feature, method): the paper's columns plus ROC AUC."""
    rows = []
    for feat, (pos, sel) in scored.features.items():
        for method, s in scored.methods.items():
            rows.append({"feature": feat, "method": method, **ranking_summary(s[sel], pos[sel])})
    return rows


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown_tables(rows: list[dict[str, Any]], primary: str, title: str) -> str:
    """The paper's table for the primary method, then AP of every method per feature."""
    out = [
        f"### {title}: {primary}",
        "",
        "| feature | positives | negatives | AP | random AP | improvement | ROC AUC | KS statistic | KS p-value |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["method"] == primary:
            out.append(
                f"| {r['feature']} | {r['positives']} | {r['negatives']} | {_fmt(r['ap'])} | "
                f"{_fmt(r['random_ap'])} | {_fmt(r['improvement'], 2)} | {_fmt(r['auc'])} | "
                f"{_fmt(r['ks'])} | {_fmt(r['ks_p'])} |"
            )
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out += [
        "",
        f"### {title}: AP of every method (improvement over random in brackets; best in bold)",
        "",
        "| feature | random AP | " + " | ".join(methods) + " |",
        "|---|---:|" + "---:|" * len(methods),
    ]
    for feat in dict.fromkeys(r["feature"] for r in rows):
        rs = {r["method"]: r for r in rows if r["feature"] == feat}
        aps = [rs[m]["ap"] for m in methods if rs[m]["ap"] is not None]
        best = max(aps) if aps else None
        cells = []
        for m in methods:
            ap, imp = rs[m]["ap"], rs[m]["improvement"]
            cell = "n/a" if ap is None else f"{ap:.3f} ({imp:.2f}x)"
            cells.append(f"**{cell}**" if ap is not None and ap == best else cell)
        out.append(f"| {feat} | {_fmt(rs[methods[0]]['random_ap'])} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
