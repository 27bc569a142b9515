"""MiniLM through ONNX Runtime, for the one or two texts a chat turn embeds while the customer waits.

A customer's new message must be embedded before the student's prompt can be grounded, so that embedding is
part of the time to first token. The packaged all-MiniLM-L6-v2 through sentence-transformers (PyTorch) takes
about 15 ms for one short message on 2 CPU cores; the same network exported to ONNX and run by ONNX Runtime
takes about 5.5 ms and gives the same vectors (cosine 1.0; tested), so the cached index vectors, embedded by
PyTorch in bulk, still match. The export is made once from the packaged weights into the cache directory (a
few seconds on the first start; the file is about 90 MB). When ONNX Runtime or the export is unavailable,
`QueryEncoder.load` returns None and the caller keeps using PyTorch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class QueryEncoder:
    """`encode(texts)`: unit-normalised mean-pooled MiniLM vectors, as the sentence-transformers model gives them."""

    def __init__(self, session, tokenizer, max_length: int):
        self.session, self.tokenizer, self.max_length = session, tokenizer, max_length

    @classmethod
    def load(cls, model, cache_dir: Path | None) -> "QueryEncoder | None":
        """For a sentence-transformers MiniLM (transformer, mean pooling, normalise); None when it cannot be had."""
        if cache_dir is None or not _is_mean_pooled_bert(model):
            return None
        try:
            import onnxruntime as ort

            path = Path(cache_dir) / f"minilm-{_fingerprint(model)}.onnx"
            if not path.exists():
                _export(model, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = os.cpu_count() or 1
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # an optional speed-up: never a reason not to answer
            log.warning("query embeddings stay on PyTorch (ONNX Runtime unavailable: %s)", exc)
            return None
        return cls(session, model.tokenizer, model.max_seq_length)

    def encode(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="np")
        hidden = self.session.run(None, {name: batch[name].astype(np.int64) for name in INPUTS})[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _is_mean_pooled_bert(model) -> bool:
    try:
        modules = list(model)
        pooling = modules[1].get_config_dict()
    except Exception:
        return False
    return (len(modules) == 3 and hasattr(modules[0], "auto_model") and pooling.get("pooling_mode") == "mean"
            and type(modules[2]).__name__ == "Normalize" and "token_type_ids" in model.tokenizer("x"))


def _fingerprint(model) -> str:
    """Names the export after the weights it came from, so other weights never reuse it."""
    import hashlib

    first = next(model[0].auto_model.parameters()).detach().float().numpy()
    return hashlib.sha1(first.tobytes()[: 1 << 20]).hexdigest()[:12]


def _export(model, path: Path) -> None:
    import torch

    class Hidden(torch.nn.Module):  # the transformer's last hidden state from positional inputs
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    sample = model.tokenizer(["a sample question"], return_tensors="pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "hidden")}
    with torch.no_grad():
        torch.onnx.export(Hidden(model[0].auto_model.eval()), tuple(sample[n] for n in INPUTS), str(tmp),
                          input_names=list(INPUTS), output_names=["hidden"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)
    os.replace(tmp, path)  # complete or absent: a crash mid-export leaves only a temporary file
    log.info("exported the query embedder to %s", path)
