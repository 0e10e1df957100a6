"""What each stage of a pipeline run did (data only; the runner fills them in)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageReport:
    """One stage: items done now, skipped as already done, and failed (with reasons).

    ``status`` is ``"ok"``, ``"failed"`` (the stage itself could not run; ``error``
    says why), ``"not run"`` (an earlier stage it needs failed) or ``"disabled"``.

    >>> r = StageReport("explain", done=3, skipped=2, failed=(("val/x", "BadInputError: corrupt"),))
    >>> r.line()
    'explain   3 done, 2 skipped (already done), 1 failed  (0.0 s)'
    """

    stage: str
    done: int = 0
    skipped: int = 0
    failed: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    status: str = "ok"
    error: str = ""
    key: str = ""
    outputs: dict = field(default_factory=dict)

    def line(self) -> str:
        """One summary line (a failed or skipped stage says why)."""
        if self.status in ("not run", "disabled"):
            return f"{self.stage:<9} {self.status}{': ' + self.error if self.error else ''}"
        if self.status == "failed":
            return f"{self.stage:<9} FAILED: {self.error}"
        return (f"{self.stage:<9} {self.done} done, {self.skipped} skipped (already done), "
                f"{len(self.failed)} failed  ({self.seconds:.1f} s)")

    def to_dict(self) -> dict:
        return {
            "stage": self.stage, "status": self.status, "done": self.done, "skipped": self.skipped,
            "failed": [{"item": i, "reason": r} for i, r in self.failed], "seconds": round(self.seconds, 3),
            "error": self.error, "key": self.key, "outputs": self.outputs,
        }


@dataclass(frozen=True)
class PipelineSummary:
    """All stage reports of one ``prodlens run``.

    >>> s = PipelineSummary("r", (StageReport("ocr", done=1), StageReport("train", status="failed", error="boom")))
    >>> s.ok, s.n_failed
    (False, 0)
    """

    run: str
    stages: tuple[StageReport, ...]
    store: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every enabled stage ran and no item failed."""
        return all(r.status in ("ok", "disabled") and not r.failed for r in self.stages)

    @property
    def n_failed(self) -> int:
        return sum(len(r.failed) for r in self.stages)

    def stage(self, name: str) -> StageReport:
        for r in self.stages:
            if r.stage == name:
                return r
        raise KeyError(f"no stage {name!r}; stages: {[r.stage for r in self.stages]}")

    def text(self, max_failures: int = 10) -> str:
        """Human-readable summary: a line per stage, then the failed items with reasons."""
        out = [f"run {self.run!r}: {self.seconds:.0f} s, store {self.store}"]
        out += ["  " + r.line() for r in self.stages]
        fails = [(r.stage, i, why) for r in self.stages for i, why in r.failed]
        for stage, item, why in fails[:max_failures]:
            out.append(f"  failed {stage} {item}: {why}")
        if len(fails) > max_failures:
            out.append(f"  ... and {len(fails) - max_failures} more failures (see summary.json)")
        if fails or not self.ok:
            out.append("  re-run the same command to retry what failed; finished work is kept")
        return "\n".join(out)

    def to_dict(self) -> dict:
        return {"run": self.run, "ok": self.ok, "store": self.store, "seconds": round(self.seconds, 3),
                "stages": [r.to_dict() for r in self.stages]}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x + 0.0:.0%}".replace("-0%", "0%")


def _ci(v: list | None) -> str:
    return f" [95% CI {v[0]:.0%}-{v[1]:.0%}]" if v else ""


def highlights(summary: PipelineSummary) -> list[str]:
    """What a run found, in a few lines (accuracies, explanations, global views, deletion,
    matching), from the stages' outputs; stages that did not run are left out.

    >>> s = PipelineSummary("r", (StageReport("train", outputs={"val_top1": 0.8, "val_n": 10}),))
    >>> highlights(s)
    ['model: val top-1 80% (10 photos, evaluated once)']
    """
    by = {r.stage: r for r in summary.stages if r.status == "ok"}
    out: list[str] = []
    t = by.get("train")
    if t is not None and "val_top1" in t.outputs:
        o = t.outputs
        line = f"model: val top-1 {_pct(o['val_top1'])}{_ci(o.get('val_top1_ci95'))} ({o.get('val_n', '?')} photos, evaluated once)"
        if "image_val_top1" in o:
            line += f"; image-only (adapted backbone) {_pct(o['image_val_top1'])}{_ci(o.get('image_val_top1_ci95'))}"
        out.append(line)
    e = by.get("explain")
    if e is not None and e.outputs.get("photos"):
        o = e.outputs
        out.append(f"explained {o['photos']} photos ({', '.join(o.get('classes', [])) or '-'}): {o['explanations']} "
                   f"explanations, {o['misclassified']} misclassified photos explained for their true and predicted "
                   f"class; {o['seconds_per_photo']:.1f} s per photo, {o['encoder_passes']:.0f} encoder passes on average")
        if o.get("scored"):
            flags = f" ({', '.join(o['flags'])})" if o.get("flags") else ""
            out.append(f"quality: {o['flagged']} of {o['scored']} explanations flagged{flags}")
        if o.get("amortised"):
            a = o["amortised"]
            out.append(f"amortised explainer: fitted on {a['photos']} train photos ({a['model_rows']} model rows, "
                       f"held-out R^2 {a['held_out_r2']}{', fitted now' if a.get('fitted_now') else ', loaded'})"
                       + (f"; refined with {a['refine']} real masks a photo" if a.get("refine") else ""))
        v = o.get("verify")
        if v and v.get("photos"):
            out.append(f"verified with LIME: {v['photos']} photos ({v['fraction']:.0%}, least confident half + random): "
                       f"top-10 overlap {v['top10_overlap']:.1f}, Spearman {v['spearman']:.2f}, "
                       f"sign agreement {v['sign_top10']:.0%}; worst {v['worst']['sample_id']} "
                       f"(Spearman {v['worst']['spearman']:.2f})")
    g = by.get("global")
    if g is not None and "classes" in g.outputs:
        o = g.outputs
        emb = o.get("embedding") or {}
        how = "" if not emb else f"; superpixels embedded by {'a trained' if emb.get('trained') else 'a PRETRAINED-ONLY'} image model"
        out.append(f"global: {o['classes']} classes, {o.get('image_clusters', 0)} image clusters, "
                   f"{o.get('word_groups', 0)} word groups{how}")
    d = by.get("deletion")
    if d is not None:
        for row in d.outputs.get("rows", []):
            out.append(f"deletion test ({row['modality']}, {row['samples']} photos, {row.get('holdout', 'held out')}): accuracy drop "
                       f"{_pct(row['top_drop'])} deleting the top global features vs {_pct(row['random_drop'])} random")
    m = by.get("match")
    if m is not None and "top1" in m.outputs:
        o = m.outputs
        out.append(f"matching: {o['queries']} queries against {o['gallery']} gallery photos, top-1 {_pct(o['top1'])}, "
                   f"top-5 {_pct(o['top5'])} (run {o['run']})")
    sc = by.get("sanity")
    if sc is not None and sc.outputs.get("verdicts"):
        v = ", ".join(f"{k}: {x}" for k, x in sc.outputs["verdicts"].items())
        out.append(f"sanity check (model randomisation): {v} (run {sc.outputs['run']})")
    return out
