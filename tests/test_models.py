"""The bundled model, its loader, the OOD question set and the corpus generator."""

from __future__ import annotations

import random
import re

import pytest

from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.envs.terminal.suite.families import HELD_OUT_FAMILIES
from pivotgym.errors import DataError
from pivotgym.models import CHECKPOINTS, corpus, load, ood, resolve

SHIPPED = (CHECKPOINTS / "pivotgym-tiny" / "config.json").is_file()


@pytest.mark.skipif(not SHIPPED, reason="the pivotgym-tiny checkpoint is not in the package")
def test_bundled_model_loads_offline_and_renders_the_terminal_tools(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load("pivotgym-tiny")
    messages = [{"role": "system", "content": TerminalEnv.system_prompt}]
    text = tokenizer.apply_chat_template(
        messages, tools=TerminalEnv.tools, tokenize=False, add_generation_prompt=True
    )
    assert '"name": "bash"' in text and '"name": "submit"' in text
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert max(ids) < model.config.vocab_size
    assert tokenizer.decode(tokenizer("é ü 🙂 \x00")["input_ids"]) == "é ü 🙂 \x00"


def test_a_missing_checkpoint_is_a_data_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(DataError, match="no-such-model"):
        load(missing)
    with pytest.raises(DataError):
        resolve(str(missing))


def test_ood_questions_are_deterministic_and_disjoint_from_training():
    first = ood.eval_questions(60, seed=3)
    assert first == ood.eval_questions(60, seed=3)
    assert first != ood.eval_questions(60, seed=4)
    assert {q.kind for q in first} == set(ood.KINDS)
    train = {q.question for q in ood.train_questions(600, seed=3)}
    assert not train & {q.question for q in first}


def test_ood_scorer_accepts_right_and_rejects_wrong_answers():
    for question in ood.eval_questions(30, seed=0):
        assert ood.score(question, question.working)
        assert ood.score(question, f"some working\nAnswer: {question.answer}.")
        assert not ood.score(question, f"Answer: {question.answer}x")
        assert not ood.score(question, "no answer line")
    add = next(q for q in ood.eval_questions(30, seed=0) if q.kind == "add")
    a, b = (int(x) for x in re.findall(r"\d+", add.question))
    assert add.answer == str(a + b)


def test_imperfect_variants_keep_the_expert_turns_around_the_mistake():
    plan = corpus.corpus_plans(0, 1)[0]
    turns = list(plan.expert)
    rng = random.Random(0)
    typo = corpus.mistyped_command(turns, rng)
    assert typo is not None and len(typo) == len(turns) + 1
    assert [t.command for t in typo if t.command in {u.command for u in turns}] == [
        t.command for t in turns
    ]


def test_corpus_is_deterministic_and_holds_no_held_out_family():
    plans = corpus.corpus_plans(0, 2 * len(corpus.TRAIN_FAMILIES))
    again = corpus.corpus_plans(0, 2 * len(corpus.TRAIN_FAMILIES))
    assert [p.files for p in plans] == [p.files for p in again]
    assert not {p.family for p in plans} & set(HELD_OUT_FAMILIES)
    assert {p.family for p in plans} == set(corpus.TRAIN_FAMILIES)
    small = corpus.build_corpus(seed=1, shell=3, questions=12, jobs=3)
    assert small == corpus.build_corpus(seed=1, shell=3, questions=12, jobs=3)
    assert not {c["family"] for c in small} & set(HELD_OUT_FAMILIES)
    assert sum(c["kind"].startswith("ood/") for c in small) == 12
