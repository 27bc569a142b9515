"""The evaluate metric modules in eval/metrics load and compute with the network unavailable."""

import socket
from pathlib import Path

import pytest


METRICS = Path(__file__).parents[2] / "eval" / "metrics"


def test_metric_modules_load_with_the_network_unavailable(monkeypatch):
    import evaluate

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gold = evaluate.load(str(METRICS / "gold_fact"))
    assert gold.compute(predictions=["Refunds take 5 to 7 business days."], references=[["5-7 business days"]])["gold_fact_accuracy"] == 1.0
    rouge = evaluate.load(str(METRICS / "rouge_l")).compute(predictions=["a b c d"], references=["a b x d"])
    assert rouge["rougeL"] == pytest.approx(0.75)
    bleu = evaluate.load(str(METRICS / "bleu")).compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])
    assert bleu["bleu"] == pytest.approx(100.0)
    sem = evaluate.load(str(METRICS / "semantic_similarity")).compute(  # the packaged embedder, no hub
        predictions=["Refunds take a week.", "Refunds take a week."], references=["Refunds take 7 days.", "I like pizza."])
    assert sem["per_item"][0] > sem["per_item"][1]
