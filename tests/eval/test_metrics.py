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
    assert bleu["bleu"] == pytest.approx(100.0) and bleu["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    sem = evaluate.load(str(METRICS / "semantic_similarity")).compute(  # the packaged embedder, no hub
        predictions=["Refunds take a week.", "Refunds take a week."], references=["Refunds take 7 days.", "I like pizza."])
    assert sem["per_item"][0] > sem["per_item"][1]


PAIRS = (["Refunds take 5 to 7 business days.", "Go to Settings > Devices and tap Reset.", "I cannot help.", ""],
         ["Refunds take 5-7 business days once approved.", "Open Settings > Devices, then tap Reset.", "Your order ships today.",
          "Thanks for waiting."])


def test_bleu_is_sacrebleus_corpus_and_sentence_bleu_not_an_average_of_pairs():
    import evaluate
    import sacrebleu

    preds, refs = PAIRS
    out = evaluate.load(str(METRICS / "bleu")).compute(predictions=preds, references=refs)
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert out["per_item"] == pytest.approx([sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(preds, refs)])
    # the corpus figure sums n-gram counts over all pairs: one long exact reply and two short misses are not 100, 0, 0
    long = "Open the app, go to Settings > Devices and tap Reset, then wait a minute."
    mixed = evaluate.load(str(METRICS / "bleu")).compute(predictions=[long, "Sorry", "Sorry"], references=[long, "Thanks", "Thanks"])
    assert mixed["per_item"][1:] == [0.0, 0.0] and mixed["per_item"][0] == pytest.approx(100.0)
    assert mixed["bleu"] == pytest.approx(sacrebleu.corpus_bleu([long, "Sorry", "Sorry"], [[long, "Thanks", "Thanks"]]).score)
    assert mixed["bleu"] > 60  # the mean of the pairs would say 33
    reference = sacrebleu.metrics.BLEU()
    reference.corpus_score(preds, [refs])
    assert out["signature"] == str(reference.get_signature()) and "version:" in out["signature"]


def test_rouge_l_is_rouge_scores():
    import evaluate
    from rouge_score import rouge_scorer

    preds, refs = PAIRS
    out = evaluate.load(str(METRICS / "rouge_l")).compute(predictions=preds, references=refs)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert out["per_item"] == pytest.approx([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)])
    assert out["per_item"][3] == 0.0 and out["rougeL"] == pytest.approx(sum(out["per_item"]) / 4)
