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

from studies.report.reproduce_sections import rahman_inputs, seed_dirs


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


def _per_seed(d: Path, names: tuple) -> list[list]:
    """Per seed, the JSON files ``names`` of an analysis dir (``d/seed<i>/`` as ``reproduce`` lays them out, or
    ``d/`` as the commands do); a seed missing one holds None there."""
    load = lambda p: json.loads(p.read_text()) if p.is_file() else None
    return [[load(p / n) for n in names] for p in seed_dirs(d, names[0])]


def inputs(run: Path | None, compare: Path | None) -> dict:
    """{function name: (data label, seed 0's args, every seed's args or None with one seed)} for the outputs
    present (one seed's layout, or ``reproduce``'s ``seed<i>`` dirs)."""
    out = {}

    def add(name, label, by_seed):
        by_seed = [a for a in by_seed if a is not None]
        if by_seed:
            together = ([a[0] for a in by_seed],) + by_seed[0][1:] if len(by_seed) > 1 else None
            out[name] = (label, by_seed[0], together)

    if run is not None:
        from ffnkv.io.run import Run

        cfg = Run(run).model_cfg
        a = run / "analysis"
        label = f"facts LM {run}"
        mems = _per_seed(a / "memories", ("memories.json", "promotion.json"))
        add("geva_memories", label, [(m, "facts LM") if m else None for m, _ in mems])
        add("geva_promotion", label, [(p, cfg.width) if p else None for _, p in mems])
        know = _per_seed(a / "knowledge", ("attribution.json", "tracing.json"))
        add("dai", label, [(at, cfg.n_layers) if at else None for at, _ in know])
        add("meng_tracing", label, [(tr,) if tr else None for _, tr in know])
        add("meng_edits", label, [(e,) for (e,) in _per_seed(a / "edit", ("edit.json",)) if e])
    if compare is not None and (compare / "compare.json").is_file():
        label = f"compare {compare}"
        out["condcomp"] = (label, (json.loads((compare / "compare.json").read_text()),), None)
        reproduced = seed_dirs(compare / "analysis", "rahman_comparison.json")  # reproduce's seed<i> dirs
        kinds = json.loads((compare / "compare.json").read_text())["kinds"]
        together = rahman_inputs({k: [p / k for p in reproduced] if reproduced else [compare / k / "analysis"]
                                  for k in kinds})
        if together:
            first = {k: tuple(part[0] for part in v[:4]) + (v[4],) for k, v in together.items()}
            several = len(next(iter(together.values()))[0]) > 1
            out["rahman_kinds"] = (label, (first,), (together,) if several else None)
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


def _each_seed(module, name: str, together: tuple) -> list:
    """The old way of judging several seeds (before ``seeds-together``): each seed alone, the claim's verdict the
    seeds' common verdict, else ``inconclusive``."""
    if name == "rahman_kinds":
        (kinds,) = together
        n = len(next(iter(kinds.values()))[0])
        per_seed = [({k: tuple(part[i] for part in v[:4]) + (v[4],) for k, v in kinds.items()},) for i in range(n)]
    else:
        per_seed = [(x,) + together[1:] for x in together[0]]
    claims = [_claims(module, name, a) for a in per_seed]
    out = []
    for same in zip(*claims):
        verdicts = {c["verdict"] for c in same}
        out.append(same[0] | {"verdict": verdicts.pop() if len(verdicts) == 1 else "inconclusive"})
    return out


def changes(history: list[dict], data: dict, root: Path, command: str) -> dict:
    out = {}
    for h in history:
        before, after = verdicts_at(h["before"], root), verdicts_at(h["after"], root)
        rows = []
        for name in h["functions"]:
            if name not in data:
                continue
            label, args, together = data[name]
            if h.get("seeds") == "each, then together":
                if together is None:
                    continue
                olds, news = _each_seed(before, name, together), _claims(after, name, together)
            else:
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
    p.add_argument("--only", default=None, help="comma list of history ids to recompute; the others keep their "
                   "rows from --out (each row names the data and command that computed it)")
    args = p.parse_args(argv)
    command = "python -m studies.report.rule_history " + " ".join(sys.argv[1:] if argv is None else argv)
    only = set(args.only.split(",")) if args.only else None
    history = [h for h in verdicts.HISTORY if only is None or h["id"] in only]
    kept = json.loads(args.out.read_text()) if only and args.out.is_file() else {}
    result = {k: v for k, v in kept.items() if k not in only} if only else {}
    result |= changes(history, inputs(args.run, args.compare), Path.cwd(), command)
    result = {h["id"]: result[h["id"]] for h in verdicts.HISTORY if h["id"] in result}
    write_json(args.out, result)
    print(f"wrote {args.out}: " + ", ".join(f"{k} ({len(v['rows'])} verdicts)" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
