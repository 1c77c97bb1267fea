"""Verdicts before and after each rule change of ``studies.verdicts.HISTORY``, on the same data.

``python -m studies.report.rule_history --run RUN_DIR [--compare DIR] [--out docs/rule_changes.json]``: for each
change, the verdicts module as it was at ``before`` and at ``after`` (a git revision, read with ``git show``;
``WORKTREE`` is the current ``studies.verdicts``) judges the same study outputs of a facts run dir (memories,
knowledge, edit under ``RUN_DIR/analysis``) and of a ``ffnkv compare`` dir. ``ffnkv report --docs`` renders the
result into ``docs/verdict_rules.md``.
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def verdicts_at(rev: str, root: Path):
    """The ``studies.verdicts`` module as committed at ``rev`` (``WORKTREE``: the current one)."""
    if rev == "WORKTREE":
        from studies import verdicts

        return verdicts
    source = subprocess.run(["git", "show", f"{rev}:studies/verdicts.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"verdicts_{rev.replace('^', '_parent')}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass in the module looks its module up while it is executed
    spec.loader.exec_module(module)
    return module


def inputs(run: Path | None, compare: Path | None) -> dict:
    """{function name: (data label, args)} for the outputs present."""
    load = lambda p: json.loads(p.read_text()) if p.is_file() else None
    out = {}
    if run is not None:
        from ffnkv.io.run import Run

        cfg = Run(run).model_cfg
        a = run / "analysis"
        mem, promo = load(a / "memories/memories.json"), load(a / "memories/promotion.json")
        attr, trace = load(a / "knowledge/attribution.json"), load(a / "knowledge/tracing.json")
        edit = load(a / "edit/edit.json")
        label = f"facts LM {run}"
        out |= {k: (label, v) for k, v in (("geva_memories", (mem, "facts LM") if mem else None),
                                           ("geva_promotion", (promo, cfg.width) if promo else None),
                                           ("dai", (attr, cfg.n_layers) if attr else None),
                                           ("meng_tracing", (trace,) if trace else None),
                                           ("meng_edits", (edit,) if edit else None)) if v}
    if compare is not None and (compare / "compare.json").is_file():
        out["condcomp"] = (f"compare {compare}", (load(compare / "compare.json"),))
        kinds = {}
        for kind in load(compare / "compare.json")["kinds"]:
            a = compare / kind / "analysis"
            parts = [load(a / f"{name}.json") for name in ("sparsity", "specialisation", "ablation", "hierarchy")]
            if all(parts) and parts[2].get("ops"):
                kinds[kind] = (*parts, parts[2]["ops"])
        if kinds:
            out["rahman_kinds"] = (f"compare {compare}", (kinds,))
    return out


def rahman_kinds(module, kinds: dict) -> list:
    """Rahman et al.'s claims over the kinds of a comparison, judged from each kind's analysis outputs by the
    module's own ``rahman_claims`` (not the verdicts stored at analysis time)."""
    return module.rahman({k: {"claims": module.rahman_claims(*args)} for k, args in kinds.items()})


def _claims(module, name: str, args) -> list:
    try:
        result = rahman_kinds(module, *args) if name == "rahman_kinds" else getattr(module, name)(*args)
    except Exception as err:  # an older rule may not read today's outputs; the table says so
        return [{"claim": f"({name})", "verdict": f"not computable: {type(err).__name__}"}]
    return result if isinstance(result, list) else [result]


def changes(history: list[dict], data: dict, root: Path, command: str) -> dict:
    out = {}
    for h in history:
        before, after = verdicts_at(h["before"], root), verdicts_at(h["after"], root)
        rows = []
        for name in h["functions"]:
            if name not in data:
                continue
            label, args = data[name]
            olds, news = _claims(before, name, args), _claims(after, name, args)
            if len(olds) == 1 and len(news) > 1:  # one claim split into several (condcomp: one per op)
                rows.append({"data": label, "claim": olds[0]["claim"], "before": olds[0]["verdict"],
                             "after": "; ".join(f"{c['claim'].split(':')[0]}: {c['verdict']}" for c in news)})
                continue
            for old, new in itertools.zip_longest(olds, news):
                rows.append({"data": label, "claim": (new or old)["claim"],
                             "before": old["verdict"] if old else "—", "after": new["verdict"] if new else "—"})
        if rows:
            out[h["id"]] = {"data": "; ".join(sorted({r["data"] for r in rows})), "command": command, "rows": rows}
    return out


def main(argv=None) -> int:
    from studies import verdicts
    from studies.report.write import write_json

    p = argparse.ArgumentParser(prog="python -m studies.report.rule_history", description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None, help="a facts run dir with analysis/memories, knowledge, edit")
    p.add_argument("--compare", type=Path, default=None, help="a ffnkv compare output dir")
    p.add_argument("--out", type=Path, default=Path("docs/rule_changes.json"))
    args = p.parse_args(argv)
    command = "python -m studies.report.rule_history " + " ".join(sys.argv[1:] if argv is None else argv)
    result = changes(verdicts.HISTORY, inputs(args.run, args.compare), Path.cwd(), command)
    write_json(args.out, result)
    print(f"wrote {args.out}: " + ", ".join(f"{k} ({len(v['rows'])} verdicts)" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
