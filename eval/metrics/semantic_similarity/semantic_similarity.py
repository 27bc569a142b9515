"""Semantic similarity to the reference: cosine of all-MiniLM-L6-v2 embeddings (the packaged weights, no hub).
evaluate.load("eval/metrics/semantic_similarity")."""
import os

import datasets
import evaluate


class SemanticSimilarity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean cosine similarity of reply and reference embeddings.", citation="Reimers & Gurevych, 2019",
            inputs_description="predictions, references: lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from assistant.retrieval import load_embedder

        model = load_embedder()
        a = model.encode(list(predictions), normalize_embeddings=True, convert_to_numpy=True)
        b = model.encode(list(references), normalize_embeddings=True, convert_to_numpy=True)
        per = (a * b).sum(axis=1).tolist()
        return {"semantic_similarity": sum(per) / len(per) if per else 0.0, "per_item": per}
