"""Write the claims tables from a claims file: ``ffnkv report --readme [--docs] [--claims FILE]``.

``--readme`` replaces the Results table of ``README.md`` (between ``<!-- claims:begin -->`` and
``<!-- claims:end -->``) with the one generated from the claims file, and the API example's measured time
(between the quickstart markers) from ``results/quickstart/quickstart.json``; ``--docs`` writes ``docs/claims.md``
(every claim with its rule and tests) and ``docs/verdict_rules.md`` (the rules table of ``studies/verdicts.py``
and the history of every rule change). The claims file defaults to ``docs/claims.json``, the committed one;
``ffnkv reproduce`` writes ``claims.json`` into its output dir; ``--collect DIR`` judges the outputs under a
reproduce dir again with today's rules and writes the claims file first (``ffnkv report --collect
runs/reproduce-quick --readme --docs`` regenerates every table from a quick reproduction); ``--atlas FILE`` writes
docs/atlas.md's table from an ``atlas.json`` (``ffnkv atlas``).
"""
from __future__ import annotations

from pathlib import Path

NAME = "report"
HELP = "write the README's Results table and the docs' claims and rules tables from a claims.json"
DESCRIPTION = """Write the claims tables from a claims file: --readme replaces the Results table of README.md
(between <!-- claims:begin --> and <!-- claims:end -->); --docs writes docs/claims.md (every claim with its rule
and tests) and docs/verdict_rules.md (the verdict rules and the history of every rule change). --collect DIR
first judges the outputs under a reproduce dir again with today's rules and writes the claims file, e.g.
  ffnkv report --collect runs/reproduce-quick --readme --docs
regenerates every table from a quick reproduction. --atlas FILE writes docs/atlas.md's table from an
atlas.json written by ffnkv atlas. Files are written under --root (the repository)."""


def add_arguments(parser) -> None:
    parser.add_argument("--claims", default="docs/claims.json", metavar="FILE",
                        help="claims.json written by ffnkv reproduce (default: docs/claims.json)")
    parser.add_argument("--readme", action="store_true", help="replace README.md's Results table")
    parser.add_argument("--docs", action="store_true", help="write docs/claims.md and docs/verdict_rules.md")
    parser.add_argument("--root", default=".", help="the repository root holding README.md and docs/ (default: .)")
    parser.add_argument("--collect", default=None, metavar="DIR",
                        help="first judge the study outputs under DIR (laid out as `ffnkv reproduce --out DIR` lays "
                             "them out; unfinished stages are left out) and write the claims to --claims")
    parser.add_argument("--atlas", default=None, metavar="FILE",
                        help="write docs/atlas.md's table from an atlas.json written by ffnkv atlas")
    parser.add_argument("--what", default=None, help="with --collect: what the run was, recorded in the claims file")
    parser.add_argument("--rerun", default=None, metavar="FILE",
                        help="the claims.json of a rerun with another base seed: write the verdict-by-verdict "
                             "comparison with --claims into docs/reproduce.md (between <!-- rerun:begin --> and "
                             "<!-- rerun:end -->)")


def run(args) -> int:
    import json

    from ffnkv.errors import FfnkvError
    from studies import verdicts
    from studies.report import claims as C
    from studies.report.write import write_text

    if not (args.readme or args.docs or args.collect or args.rerun or args.atlas):
        raise FfnkvError("nothing to write; pass --collect DIR, --readme, --docs, --rerun FILE, --atlas FILE or any "
                         "of them.")
    root = Path(args.root)
    if args.atlas:
        atlas_docs(root, Path(args.atlas))
        if not (args.readme or args.docs or args.collect or args.rerun):
            return 0
    if args.collect:
        collect(Path(args.collect), Path(args.claims), args.what)
    data = C.load(args.claims)
    readme = root / "README.md"
    if args.readme and not readme.is_file():
        raise FfnkvError(f"{str(readme)!r} is not a file; run from the repository root or pass --root.")
    text = C.replace_in_readme(readme.read_text(), C.readme_table(data)) if args.readme else None
    quick = root / C.QUICKSTART
    if text is not None and quick.is_file():
        text = C.replace_quickstart(text, C.quickstart_line(json.loads(quick.read_text())))
    if text is not None:
        write_text(readme, text)
        print(f"wrote the Results table of {readme} ({len(data['claims'])} claims)")
    if args.docs:
        changes_path = root / "docs" / "rule_changes.json"
        changes = json.loads(changes_path.read_text()) if changes_path.is_file() else None
        write_text(root / "docs" / "claims.md", C.docs_table(data))
        write_text(root / "docs" / "verdict_rules.md", C.rules_doc(verdicts.RULES, verdicts.HISTORY, changes))
        print(f"wrote {root / 'docs' / 'claims.md'} and {root / 'docs' / 'verdict_rules.md'}")
    if args.rerun:
        from studies.report.reproduce import replace_rerun, rerun_table

        table, moved = rerun_table(data, C.load(args.rerun))
        doc = root / "docs" / "reproduce.md"
        write_text(doc, replace_rerun(doc.read_text(), table))
        print(f"wrote the rerun comparison into {doc}: {len(moved)} verdicts moved, "
              f"{sum(m['flip'] for m in moved)} flipped")
    return 0


def atlas_docs(root: Path, source: Path) -> None:
    """docs/atlas.md's generated block from ``source``: an atlas.json, or an atlas_pretrained.json (its own block)."""
    import json

    from ffnkv.errors import FfnkvError
    from studies.report.atlas import docs_section, pretrained_docs_section, replace_in_docs
    from studies.report.write import write_text

    doc = root / "docs" / "atlas.md"
    if not source.is_file() or not doc.is_file():
        raise FfnkvError(f"{str(source if not source.is_file() else doc)!r} is not a file; pass an atlas.json written "
                         "by ffnkv atlas and run from the repository root (or pass --root).")
    result = json.loads(source.read_text())
    render = pretrained_docs_section if result.get("kind") == "atlas_pretrained" else docs_section
    text = replace_in_docs(doc.read_text(), render(result, str(source)))
    write_text(doc, text)
    print(f"wrote the atlas table of {doc} from {source}")


def collect(out: Path, path: Path, what: str | None) -> None:
    """The claims of every finished stage under ``out`` (``studies.report.reproduce.build``) into ``path``."""
    import json

    from ffnkv.errors import FfnkvError
    from studies.report.reproduce import build, claims_file
    from studies.report.write import write_json

    if not out.is_dir():
        raise FfnkvError(f"{str(out)!r} is not a directory; pass --collect with a `ffnkv reproduce --out` dir.")
    marker = out / "reproduce.json"
    profile = json.loads(marker.read_text())["profile"] if marker.is_file() else "partial"
    claims = build(out, profile)[1]
    if not claims:
        raise FfnkvError(f"{str(out)!r} holds no finished stage to judge; run `ffnkv reproduce --out {out}` first.")
    data = claims_file(claims, profile, what, out)
    data["meta"]["claims_file"] = str(path)
    write_json(path, data)
    print(f"wrote {path} ({len(claims)} claims from {out})")
