"""The CounterFact fact-file parser, the built-in world's records and the packaged known facts."""
import copy
import json

import pytest

from ffnkv.data.counterfact import (
    HELDOUT_FACTS,
    KNOWN_FACTS,
    FactRecord,
    load_fact_file,
    record_json,
    world_fact_records,
)
from ffnkv.data.facts import FactsTask
from ffnkv.errors import FfnkvError
from ffnkv.io.tokenizer import task_tokenizer
from ffnkv.prompts import encode_prompts

GOOD = {"case_id": 7, "requested_rewrite": {"prompt": "{} is located in the city of", "subject": "The Eiffel Tower",
                                             "relation_id": "P131", "target_true": {"str": "Paris"},
                                             "target_new": {"str": "Rome"}},
        "paraphrase_prompts": ["The Eiffel Tower stands in the city of"],
        "neighborhood_prompts": ["The Louvre is in the city of"]}


class Chars:
    """A tokenizer with one token per non-space character, except 'Ø', which it drops."""

    add_bos, bos_id = False, None

    def encode_offsets(self, text):
        spans = [(i, i + 1) for i, c in enumerate(text) if not c.isspace() and c != "Ø"]
        return [ord(text[a]) for a, _ in spans], spans


def write(tmp_path, records):
    path = tmp_path / "facts.json"
    path.write_text(records if isinstance(records, str) else json.dumps(records))
    return path


def test_good_record_round_trips(tmp_path):
    [r] = load_fact_file(write(tmp_path, [GOOD]), Chars())
    assert r == FactRecord(7, "{} is located in the city of", "The Eiffel Tower", "P131", "Paris", "Rome",
                           ("The Eiffel Tower stands in the city of",), ("The Louvre is in the city of",))
    assert r.text == "The Eiffel Tower is located in the city of"
    assert record_json(r) == GOOD
    inline = copy.deepcopy(GOOD)
    inline["requested_rewrite"]["prompt"] = "The Eiffel Tower is located in the city of"
    assert load_fact_file(write(tmp_path, [inline]))[0].text == inline["requested_rewrite"]["prompt"]


def _broken(edit):
    record = copy.deepcopy(GOOD)
    edit(record)
    return [GOOD | {"case_id": 1}, record]


@pytest.mark.parametrize("edit, field", [
    (lambda r: r["requested_rewrite"].pop("subject"), "requested_rewrite.subject"),
    (lambda r: r.pop("neighborhood_prompts"), "neighborhood_prompts"),
    (lambda r: r["requested_rewrite"]["target_new"].pop("str"), "requested_rewrite.target_new.str"),
    (lambda r: r.update(paraphrase_prompts="not a list"), "paraphrase_prompts"),
    (lambda r: r.update(neighborhood_prompts=[]), "neighborhood_prompts"),
    (lambda r: r["requested_rewrite"].update(prompt="Paris is home to a tower called"), "requested_rewrite.prompt"),
])
def test_bad_record_names_index_case_and_field(tmp_path, edit, field):
    with pytest.raises(FfnkvError) as err:
        load_fact_file(write(tmp_path, _broken(edit)))
    message = str(err.value)
    assert message.startswith("record 1 (case_id 7)") and field in message and message.count(". ") == 0


def test_target_that_tokenises_to_nothing(tmp_path):
    records = _broken(lambda r: r["requested_rewrite"]["target_new"].update(str="Ø"))
    load_fact_file(write(tmp_path, records))  # without a tokenizer nothing is tokenised
    with pytest.raises(FfnkvError, match=r"record 1 \(case_id 7\).*target_new.*tokenises to nothing"):
        load_fact_file(write(tmp_path, records), Chars())


@pytest.mark.parametrize("text, match", [("{not json", "not valid JSON"), ("[]", "non-empty JSON list"),
                                         ('{"a": 1}', "non-empty JSON list"), ("[3]", "record 0 is not a JSON object")])
def test_bad_files(tmp_path, text, match):
    with pytest.raises(FfnkvError, match=match):
        load_fact_file(write(tmp_path, text))


def test_repeated_case_id(tmp_path):
    with pytest.raises(FfnkvError, match=r"record 1 \(case_id 7\).*repeats record 0"):
        load_fact_file(write(tmp_path, [GOOD, GOOD]))


def test_known_facts_file_is_packaged_and_well_formed():
    records = load_fact_file(KNOWN_FACTS)
    assert len(records) >= 50 and len({r.case_id for r in records}) == len(records)
    assert all(len(r.paraphrase_prompts) >= 2 and len(r.neighborhood_prompts) >= 2 for r in records)
    assert all(r.subject not in " ".join(r.neighborhood_prompts) for r in records)  # neighbours are other subjects


def test_world_records_match_the_task():
    task = FactsTask(n_entities=30, n_attributes=4, seed=2)
    records = world_fact_records(task, 12, seed=5)
    assert len(records) == 12 and records == world_fact_records(task, 12, seed=5)
    truth = {(s, rel.name): rel.attributes[task.attribute_index_ER[e, r]]
             for e, s in enumerate(task.subjects) for r, rel in enumerate(task.relations)}
    for rec in records:
        fact = task.facts[rec.case_id]
        assert (rec.subject, rec.relation_id, rec.target_true, rec.target_new) == \
               (fact.subject, fact.relation, fact.attribute, fact.counterfactual)
        assert rec.text in task.prompts(fact, "train")
        assert rec.paraphrase_prompts == tuple(task.prompts(fact, "paraphrase"))
        assert rec.neighborhood_prompts and all(rec.subject not in p for p in rec.neighborhood_prompts)
        for p in rec.neighborhood_prompts:  # every neighbour's true answer is the fact's own
            other = next(s for s in task.subjects if s in p)
            assert truth[(other, rec.relation_id)] == rec.target_true
    enc = encode_prompts(task_tokenizer(task), [r.prompt for r in records], [r.subject for r in records],
                         [r.target_true for r in records])
    assert list(enc.target) == [task.attribute_id(r.target_true) for r in records]


def test_heldout_facts_file_is_packaged_well_formed_and_disjoint_from_known_facts():
    records, known = load_fact_file(HELDOUT_FACTS), load_fact_file(KNOWN_FACTS)
    assert len(records) >= 50 and len({r.relation_id for r in records}) >= 10
    assert len({r.case_id for r in records}) == len(records)
    assert all(r.target_new != r.target_true for r in records)
    assert all(len(r.paraphrase_prompts) >= 2 and 2 <= len(r.neighborhood_prompts) <= 4 for r in records)
    assert all(r.subject not in p for r in records for p in r.neighborhood_prompts)  # neighbours are other subjects
    assert all(r.subject in p for r in records for p in r.paraphrase_prompts)
    assert not {r.subject.lower() for r in records} & {k.subject.lower() for k in known}
