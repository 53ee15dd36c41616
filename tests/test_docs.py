from __future__ import annotations

from pathlib import Path

from gpufleet.docs import metrics_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_metric_reference_is_current() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    assert doc == metrics_markdown(), "docs/metrics.md is stale: run `python -m gpufleet.docs > docs/metrics.md`"


def test_every_doc_link_in_readme_exists() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_every_metric_belongs_to_a_scope_of_the_one_table() -> None:
    from gpufleet.catalogue import CATALOGUE, SCOPE_LABELS, SCOPE_STEM
    from gpufleet.scopes import SCOPES, STORED_SCOPES

    assert {m.scope for m in CATALOGUE} <= set(SCOPES)
    assert SCOPE_LABELS == {n: s.labels for n, s in SCOPES.items()} and set(SCOPE_STEM) == set(SCOPES)
    assert "gpu_process" not in STORED_SCOPES and "gpu" in STORED_SCOPES  # per-process churn stays out
    assert "gpu_link" not in STORED_SCOPES  # ~1300 series per HGX node: live only, their per-GPU sums stored
