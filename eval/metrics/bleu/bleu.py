"""Corpus BLEU-4 in the sacrebleu style (13a-like tokenisation, exponential smoothing, brevity penalty),
written out so it loads offline: evaluate.load("eval/metrics/bleu"). Scores are 0-100 like sacrebleu."""
import math
import re
from collections import Counter

import datasets
import evaluate


def _tokenize(text):
    text = re.sub(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])", r" \1 ", text or "")
    text = re.sub(r"([^0-9])([\.,])", r"\1 \2 ", text)
    text = re.sub(r"([\.,])([^0-9])", r" \1 \2", text)
    text = re.sub(r"([0-9])(-)", r"\1 \2 ", text)
    return text.split()


def _ngrams(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Corpus BLEU-4 (sacrebleu-style) and sentence BLEU per pair.", citation="Papineni et al., 2002; Post, 2018",
            inputs_description="predictions, references: lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    @staticmethod
    def _score(pairs):
        matches, totals, sys_len, ref_len = [0] * 4, [0] * 4, 0, 0
        for p, r in pairs:
            pt, rt = _tokenize(p), _tokenize(r)
            sys_len += len(pt)
            ref_len += len(rt)
            for n in range(1, 5):
                hyp, ref = _ngrams(pt, n), _ngrams(rt, n)
                matches[n - 1] += sum((hyp & ref).values())
                totals[n - 1] += max(0, len(pt) - n + 1)
        if sys_len == 0:
            return 0.0
        precisions, k = [], 1
        for m, t in zip(matches, totals):
            if t == 0:
                precisions.append(0.0)
                continue
            if m == 0:  # exponential smoothing, as sacrebleu's default
                k *= 2
                precisions.append(100.0 / (k * t))
            else:
                precisions.append(100.0 * m / t)
        if min(precisions) <= 0:
            return 0.0
        bp = 1.0 if sys_len > ref_len else math.exp(1 - ref_len / sys_len)
        return bp * math.exp(sum(math.log(p) for p in precisions) / 4)

    def _compute(self, predictions, references):
        pairs = list(zip(predictions, references))
        return {"bleu": self._score(pairs), "per_item": [self._score([pair]) for pair in pairs]}
