"""The bundled model, its loader, the OOD question set and the corpus generator."""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from pivotgym.envs.terminal import corpus
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.envs.terminal.suite.families import HELD_OUT_FAMILIES
from pivotgym.errors import DataError
from pivotgym.policy.chat import ChatFormat
from pivotgym.policy.engines.base import Engine, Sample
from pivotgym.policy.models import CHECKPOINTS, load, ood, resolve
from pivotgym.runs.evaluation import ood_accuracy

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


class AnsweringEngine(Engine):
    """Replies to each OOD question with its reference working, or a fixed wrong answer."""

    def __init__(self, chat: ChatFormat, questions: list[ood.Question], wrong: set[str]) -> None:
        self.chat, self.wrong = chat, wrong
        self.by_text = {q.question: q for q in questions}

    @property
    def weight_version(self) -> str:
        return "0"

    async def generate(self, prompt_ids, n, sampling):
        prompt = self.chat.decode(prompt_ids)
        question = next(q for text, q in self.by_text.items() if text in prompt)
        reply = "Answer: 0" if question.kind in self.wrong else question.working
        ids = (*self.chat.action_ids({"role": "assistant", "content": reply}),)
        return [Sample(ids, (0.0,) * len(ids), reply, "stop", "0")] * n

    async def update_weights(self, path, version):
        raise NotImplementedError


def test_ood_accuracy_scores_replies_as_the_model_ends_them():
    from tiny_models import tiny_tokenizer

    chat = ChatFormat(tiny_tokenizer())
    questions = ood.eval_questions(24, seed=0)
    engine = AnsweringEngine(chat, questions, wrong={"sort"})
    result = asyncio.run(ood_accuracy(engine, chat, n=24, seed=0))
    assert result["by_kind"] == {k: 0.0 if k == "sort" else 1.0 for k in ood.KINDS}
    assert result["accuracy"] == pytest.approx(5 / 6)
