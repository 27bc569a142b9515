"""BLEU computed by sacrebleu, loaded offline: evaluate.load("eval/metrics/bleu").

Corpus BLEU over all pairs (`bleu`, what a report quotes: n-gram counts summed over the corpus, not an
average of per-pair scores), sentence BLEU per pair (`per_item`, with sacrebleu's default exponential
smoothing and effective order, for per-turn comparison) and sacrebleu's signature (`signature`), which
says exactly how the corpus score was computed (tokeniser, smoothing, case, version). 0-100 like sacrebleu.
"""
import datasets
import evaluate
import sacrebleu


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Corpus BLEU (sacrebleu) with its signature, and sentence BLEU per pair.", citation="Papineni et al., 2002; Post, 2018",
            inputs_description="predictions, references: lists of str (one reference per prediction)",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        predictions = [p or "" for p in predictions]
        references = [r or "" for r in references]
        corpus = sacrebleu.metrics.BLEU()
        score = corpus.corpus_score(predictions, [references])
        sentence = sacrebleu.metrics.BLEU(effective_order=True)
        per_item = [sentence.sentence_score(p, [r]).score for p, r in zip(predictions, references)]
        return {"bleu": score.score, "per_item": per_item, "signature": str(corpus.get_signature())}
