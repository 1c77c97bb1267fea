"""``report.md`` (and ``report.html``) of ``ffnkv reproduce``, written from the stages' JSON outputs.

Every number in the report is read from a file the run wrote; a stage that did not finish is reported as such.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from studies.report import reproduce_sections as S


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _stage_table(out: Path, stages: dict) -> list[str]:
    lines = ["| stage | what | status | seeds | seconds | CPU seconds |", "|---|---|---|---|---|---|"]
    total = cpu = 0.0
    for name, stage in stages.items():
        rec = _load(out / "stages" / f"{name}.json") or {"status": "not run"}
        total += rec.get("seconds", 0.0)
        cpu += rec.get("cpu_seconds", 0.0)
        status = rec["status"] + (f": {rec['why']}" if "why" in rec else "")
        lines.append(f"| {name} | {stage.title} | {status} | {rec.get('seeds', '—')} | {rec.get('seconds', '—')} | "
                     f"{rec.get('cpu_seconds', '—')} |")
    lines.append(f"| **total** | | | | **{total:.0f}** | **{cpu:.0f}** |")
    return lines


def _claims_table(claims: list[dict]) -> list[str]:
    from studies.report.claims import describe_test
    from studies.report.markdown import cell

    lines = ["| source | claim | paper | ours | tests: measured [95% interval], cut, seeds × items | verdict |",
             "|---|---|---|---|---|---|"]
    for c in claims:
        tests = "<br>".join(", ".join(describe_test(t)) for t in c.get("tests") or [])
        lines.append(f"| {c['source']} | {c['claim']} | {c['paper']} | {c['ours']} | {cell(tests)} | "
                     f"**{c['verdict']}** |")
    return lines


def commit() -> str:
    """The checkout's commit (with ``+dirty`` for uncommitted changes to the code: README.md and docs/ are
    what the claims are written into), or ``unknown`` outside git."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!README.md",
                                ":!docs"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def claims_file(claims: list[dict], profile: str, what: str | None = None, out: Path | None = None) -> dict:
    """``claims.json``: the claims and where they come from (profile, base seed and seeds of the reproduction in
    ``out``, commit, time)."""
    from studies.reproduce_stages import SEEDS, STAGES

    marker = _load(Path(out) / "reproduce.json") if out is not None else None
    seeds = {"seed": marker.get("seed", 0), "seeds": SEEDS.get(profile, 1)} if marker else {}
    records = [p for p in (Path(out) / "stages" / f"{n}.json" for n in STAGES) if p.is_file()] if out else []
    kept = ("status", "seeds", "seconds", "cpu_seconds", "load_average", "why")
    stages = {p.stem: {k: v for k, v in _load(p).items() if k in kept} for p in records}
    return {"meta": {"what": what or f"`ffnkv reproduce --profile {profile}`", "profile": profile, **seeds,
                     "commit": commit(), "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "claims_file": "claims.json"}, "stages": stages, "claims": claims}


def build(out: Path, profile: str) -> tuple[str, list[dict]]:
    """The report's markdown and its claims (each with the rule behind its verdict)."""
    import jax

    from studies.reproduce_stages import STAGES

    sections, claims = [], []
    for builder in S.SECTIONS:
        text, found = builder(out)
        sections.append(text)
        claims += found
    head = [f"# ffnkv reproduce: report ({profile} profile)", "",
            f"Written {time.strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'this machine'} "
            f"({platform.processor() or platform.machine()}; JAX {jax.__version__}, backend "
            f"{jax.default_backend()}, {jax.device_count()} device(s)). Every number below was computed by this "
            "run; re-running `ffnkv reproduce` skips finished stages and rewrites this report.", "",
            "## Stages", "", *_stage_table(out, STAGES), "",
            "## Claims of the literature on our models", "",
            "Paper figures are the published ones, on models 100–10,000× larger; the verdict asks whether the "
            "qualitative claim holds here, by the rule in `claims.json` (also in `studies/verdicts.py`).",
            "", *_claims_table(claims), ""]
    return "\n".join(head + sections), claims


def write_report(out: Path, profile: str) -> Path:
    text, claims = build(out, profile)
    for name, content in (("report.md", text),
                          ("claims.json", json.dumps(claims_file(claims, profile, out=out), indent=1) + "\n"),
                          ("report.html", _html(text))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(content)
        tmp.replace(out / name)
    return out / "report.md"


def _html(markdown_text: str) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;line-height:1.4}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>ffnkv report</title><style>{style}</style>" \
           f"</head><body>{body}</body></html>\n"



RERUN_BEGIN, RERUN_END = "<!-- rerun:begin -->", "<!-- rerun:end -->"


def rerun_table(first: dict, second: dict) -> tuple[str, list[dict]]:
    """Two claims files of the same profile with different base seeds, claim by claim: the markdown table and
    the claims whose verdict moved (``flip``: between ``holds`` and ``fails``, or any change not to or from
    ``inconclusive``)."""
    def key(c):
        return c["source"], c["claim"]

    def seeds(data):
        return {key(c): c for c in data["claims"]}

    a, b = seeds(first), seeds(second)
    lines = [f"| source | claim | verdict, `{first['meta'].get('what', 'first run')}` | verdict, "
             f"`{second['meta'].get('what', 'second run')}` | seeds | moved |", "|---|---|---|---|---|---|"]
    moved = []
    for k in list(a) + [k for k in b if k not in a]:
        va, vb = (a[k]["verdict"] if k in a else "absent"), (b[k]["verdict"] if k in b else "absent")
        n = "/".join(str(x[k].get("n_seeds", 1)) if k in x else "—" for x in (a, b))
        how = ("" if va == vb else "not in both runs" if "absent" in (va, vb) else
               "to/from inconclusive" if "inconclusive" in (va, vb) else "**flip**")
        if how and how != "not in both runs":
            moved.append({"source": k[0], "claim": k[1], "first": va, "second": vb, "flip": how == "**flip**"})
        lines.append(f"| {k[0]} | {k[1]} | {va} | {vb} | {n} | {how} |")
    flips = sum(m["flip"] for m in moved)
    both = sum(k in b for k in a)
    head = (f"{both} claims in both runs: {len(moved)} moved, {flips} of them between a definite verdict and another "
            "(holds ↔ fails or a changed descriptive verdict); the rest to or from inconclusive.")
    ma, mb = first["meta"], second["meta"]
    if all(k in m for m in (ma, mb) for k in ("seed", "seeds")):
        shared = set(range(ma["seed"], ma["seed"] + ma["seeds"])) & set(range(mb["seed"], mb["seed"] + mb["seeds"]))
        head += (f" Base seeds {ma['seed']} and {mb['seed']}, {ma['seeds']} and {mb['seeds']} seeds: "
                 + (f"seeds {sorted(shared)} are in both runs." if shared else "no seed is in both runs."))
    return "\n".join([head, "", *lines]), moved


def replace_rerun(doc: str, table: str) -> str:
    """``doc`` with the text between the rerun markers replaced by ``table``."""
    from ffnkv.errors import FfnkvError

    if RERUN_BEGIN not in doc or RERUN_END not in doc:
        raise FfnkvError(f"the document has no {RERUN_BEGIN} … {RERUN_END} markers; add them where the table goes.")
    head, rest = doc.split(RERUN_BEGIN, 1)
    return head + RERUN_BEGIN + "\n" + table + "\n" + RERUN_END + rest.split(RERUN_END, 1)[1]
