"""Gold-fact accuracy: does each reply state the facts its turn needed (numbers, steps, names)?

Loaded offline with evaluate.load("eval/metrics/gold_fact"). Matching is on normalised text (case,
dashes, contractions, ranges, punctuation); see eval/scoring.py, which this module mirrors so it can be
loaded on its own.
"""
import re
import unicodedata

import datasets
import evaluate

_CONTRACTIONS = {"can't": "cannot", "won't": "will not", "n't": " not", "'re": " are", "'ll": " will", "'ve": " have",
                 "'m": " am", "it's": "it is", "that's": "that is", "there's": "there is", "you're": "you are"}


def normalise(text):
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    text = re.sub(r"[‐-―−]", "-", text)
    for short, long in _CONTRACTIONS.items():
        text = text.replace(short, long)
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)
    text = re.sub(r"(\d)\s*(?:-|to|–)\s*(\d)", r"\1-\2", text)
    text = re.sub(r"[*_`#]", "", text)
    text = re.sub(r"[^\w$%@./>+-]+", " ", text)
    text = re.sub(r"(?<!\d)[.](?!\d)", " ", text)
    return " ".join(text.split())


class GoldFact(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of gold facts stated per reply, and the share of replies stating all of them.",
            citation="", inputs_description="predictions: list of str; references: list of list of str (the gold facts)",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, references):
        recalls, complete = [], []
        for reply, facts in zip(predictions, references):
            facts = [f for f in facts if f and f.strip()]
            if not facts:
                continue
            text = f" {normalise(reply)} "
            hits = sum(f" {normalise(f)} " in text for f in facts)
            recalls.append(hits / len(facts))
            complete.append(float(hits == len(facts)))
        n = len(recalls)
        return {"gold_fact_recall": sum(recalls) / n if n else None,
                "gold_fact_accuracy": sum(complete) / n if n else None,
                "per_item_recall": recalls, "scored": n}
