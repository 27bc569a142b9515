"""ROUGE-L F1 computed by Google's rouge-score package, offline: evaluate.load("eval/metrics/rouge_l").

rouge-score's own tokeniser (lower case, letters and digits) and no stemming, so figures match the
package's published ROUGE-L. `rougeL` is the mean over pairs, `per_item` each pair's F1.
"""
import datasets
import evaluate
from rouge_score import rouge_scorer


class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="ROUGE-L F1 per pair (rouge-score) and its mean.", citation="Lin, 2004",
            inputs_description="predictions, references: lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        scores = [scorer.score(r or "", p or "")["rougeL"].fmeasure for p, r in zip(predictions, references)]
        return {"rougeL": sum(scores) / len(scores) if scores else 0.0, "per_item": scores}
