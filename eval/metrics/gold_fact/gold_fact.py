"""Gold-fact accuracy: does each reply state the facts its turn needed (numbers, steps, names)?

Loaded offline with evaluate.load("eval/metrics/gold_fact"). Matching is on normalised text (case,
dashes, contractions, ranges, punctuation) by distill/scoring.py, which the quick promotion check uses too.
"""
import datasets
import evaluate

from distill.scoring import gold_fact_recall


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
            recall = gold_fact_recall(reply, facts)
            if recall is None:
                continue
            recalls.append(recall)
            complete.append(float(recall == 1.0))
        n = len(recalls)
        return {"gold_fact_recall": sum(recalls) / n if n else None,
                "gold_fact_accuracy": sum(complete) / n if n else None,
                "per_item_recall": recalls, "scored": n}
