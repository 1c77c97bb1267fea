"""The command line is one vocabulary (docs/cli.md): every command's parser, built in-process, has the shared
options with the same type and meaning, help texts without RST markup, and docs/cli.md lists exactly them."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cli import args as A
from cli.main import build_parser

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
# option -> (dest, type, the commands that must take it: the policy docs/cli.md explains)
SHARED = {
    "--out": ("out", A.output_dir, {"analyze", "atlas", "compare", "edit", "knowledge", "memories",
                                    "pretrained", "reproduce", "train"}),
    "--facts": ("facts", A.facts_file, {"edit", "knowledge", "pretrained"}),
    "--n-facts": ("n_facts", A.positive_int, {"edit", "knowledge", "pretrained"}),
    "--seed": ("seed", A.nonnegative_int, {"analyze", "atlas", "compare", "edit", "knowledge",
                                           "memories", "pretrained", "reproduce", "train"}),
    "--mesh": ("mesh", A.mesh_shape, {"compare", "edit", "knowledge", "memories", "pretrained", "train"}),
    "--no-progress": ("no_progress", None, None),  # every command
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = _commands()


def _visible(parser) -> dict[str, argparse.Action]:
    """Each documented option string of ``parser`` (hidden deprecated aliases left out) -> its action."""
    return {o: a for a in parser._actions if a.help is not argparse.SUPPRESS for o in a.option_strings}


def _doc_rows(heading: str) -> dict[str, set[str]]:
    """The table under ``## heading`` of docs/cli.md: each option named in a row's first cell -> its commands."""
    section = DOC.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for option in re.findall(r"`(--[a-z-]+)", cells[0]):
                rows[option] = {c.strip() for c in cells[2].split(",")}
    return rows


def test_every_command_has_the_shared_options_with_one_meaning():
    for option, (dest, kind, required) in SHARED.items():
        having = {name for name, p in COMMANDS.items() if option in _visible(p)}
        assert having >= (required or set(COMMANDS)), (option, sorted((required or set(COMMANDS)) - having))
        for name in having:
            action = _visible(COMMANDS[name])[option]
            assert action.dest == dest, (name, option, action.dest)
            assert (action.type is kind) if kind else isinstance(action, argparse._StoreTrueAction), (name, option)


def test_docs_cli_lists_exactly_the_shared_options_and_who_takes_them():
    rows = _doc_rows("Shared options")
    assert set(rows) == set(SHARED)
    for heading in ("Shared options", "Other names with one meaning"):
        for option, listed in _doc_rows(heading).items():
            having = {name for name, p in COMMANDS.items() if option in _visible(p)}
            assert listed == having, (option, sorted(listed ^ having))


def test_help_is_plain_text_with_defaults():
    assert "``" not in build_parser().format_help()
    for name, parser in COMMANDS.items():
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text, name
        for action in parser._actions:
            if action.help is argparse.SUPPRESS or not action.option_strings:
                continue
            d = action.default
            if not (d is None or d is False or d is argparse.SUPPRESS or d == []):
                shown = A.HelpFormatter("x")._get_help_string(action)
                assert "default" in shown, (name, action.option_strings)
    assert "(default: 120)" in " ".join(COMMANDS["knowledge"].format_help().split())
    train = " ".join(COMMANDS["train"].format_help().split())
    assert "exits 143" in train and "exits 130" in train


@pytest.mark.parametrize("argv, dest, value", [
    (["train", "condcomp", "--run-dir", "r"], "out", "r"),
    (["knowledge", "x", "--steps", "4"], "ig_steps", 4),
    (["knowledge", "x", "--rule", "right"], "ig_rule", "right"),
    (["knowledge", "x", "--threshold", "0.3"], "kn_threshold", 0.3),
    (["knowledge", "x", "--unrelated", "3"], "unrelated_per_fact", 3),
    (["memories", "x", "--window", "16"], "row_tokens", 16),
    (["memories", "x", "--threshold", "0.5"], "activation_threshold", 0.5),
    (["compare", "--threshold", "0.9"], "accuracy_threshold", 0.9),
])
def test_old_spellings_still_parse_hidden_and_with_a_warning(tmp_path, monkeypatch, capsys, argv, dest, value):
    monkeypatch.chdir(tmp_path)
    assert getattr(build_parser().parse_args(argv), dest) == value
    assert f"{argv[-2]} is deprecated; use --" in capsys.readouterr().err
    assert argv[-2] not in _visible(COMMANDS[argv[0]])


def test_old_trace_kind_name_reads_as_the_new_one():
    parsed = build_parser().parse_args(["pretrained", "smollm2", "--trace-kinds", "hidden", "mlp"])
    assert parsed.trace_kinds == ["resid", "mlp"]


def test_old_facts_file_spelling_and_a_count_for_a_file(tmp_path, capsys):
    facts = tmp_path / "f.json"
    facts.write_text("[]")
    assert build_parser().parse_args(["knowledge", "x", "--facts-file", str(facts)]).facts == str(facts)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["knowledge", "x", "--facts", "40"])
    assert exit_.value.code == 2 and "use --n-facts 40" in capsys.readouterr().err
