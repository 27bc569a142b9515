"""ROUGE-L F1 (longest common subsequence of words), offline: evaluate.load("eval/metrics/rouge_l")."""
import re

import datasets
import evaluate


def _tokens(text):
    return re.findall(r"\w+", (text or "").lower())


def _lcs(a, b):
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="ROUGE-L F1 per pair and its mean.", citation="Lin, 2004",
            inputs_description="predictions, references: lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        scores = []
        for p, r in zip(predictions, references):
            a, b = _tokens(p), _tokens(r)
            lcs = _lcs(a, b)
            if not lcs:
                scores.append(0.0)
                continue
            prec, rec = lcs / len(a), lcs / len(b)
            scores.append(2 * prec * rec / (prec + rec))
        return {"rougeL": sum(scores) / len(scores) if scores else 0.0, "per_item": scores}
