"""Measured serving figures per arm: parameters, model file size, peak memory, throughput at concurrency 1 and 8.

Peak memory is the peak resident set of a fresh process that loads the model and answers a few queries
(so one model's memory never hides another's). Throughput sends the same queries through one model object
from 1 and from 8 threads and counts completed queries per hour; the in-process llama.cpp student answers one
query at a time per process, so its concurrency-8 figure shows that honestly.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

QUERIES = ["How do I reset my password?", "Where is my order?", "Can I return my camera?", "Is shipping free?",
           "My camera says offline", "How do I cancel my plan?", "Do gift cards expire?", "How long does the battery last?"]


def gguf_parameters(path: Path) -> int | None:
    try:
        import gguf

        return int(sum(int(t.n_elements) for t in gguf.GGUFReader(str(path)).tensors))
    except Exception:
        return None


def _child(kind: str, path: str, home: str) -> None:
    from assistant.settings import Settings

    from assistant.models import GroundedStudent, LlamaStudent

    if kind == "gguf":
        model = LlamaStudent(path, max_tokens=64)
    else:  # retrieval in the process too: the embedder, KB and case index
        from dataclasses import replace

        from assistant.services import build_services

        services = build_services(replace(Settings.from_env(), home=Path(home)), student=object())
        model = (GroundedStudent(LlamaStudent(path, max_tokens=64), services.retriever) if kind == "grounded"
                 else services.teacher)
    for q in QUERIES[:3]:
        model.complete([{"role": "user", "content": q}], 64)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss_mb(kind: str, path: str = "", home: str = "") -> float | None:
    try:
        out = subprocess.run([sys.executable, "-m", "eval.measure", kind, path, home], capture_output=True, text=True,
                             timeout=600, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    except (subprocess.SubprocessError, ValueError, IndexError, KeyError):
        return None


def throughput(model, concurrency: int, n: int = 8, max_tokens: int = 96) -> float:
    """Completed queries per hour with `concurrency` parallel callers."""
    queries = [[{"role": "user", "content": QUERIES[i % len(QUERIES)]}] for i in range(n)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda m: model.complete(m, max_tokens), queries))
    return n / (time.perf_counter() - t0) * 3600


def embedder_parameters() -> int:
    """Parameters of the retrieval embedder (all-MiniLM-L6-v2), counted from the loaded weights."""
    from assistant.retrieval import load_embedder

    return sum(p.numel() for p in load_embedder().parameters())


def measure_arms(models: dict, settings, n_queries: int = 8) -> dict:
    out = {}
    for arm, model in models.items():
        # a retrieval-augmented student is measured with its retrieval: the embedder runs beside it
        grounded = hasattr(model, "inner")
        path = getattr(getattr(model, "inner", model), "path", None)
        m: dict = {"model": model.name, "local": model.local}
        if path is not None:
            m["parameters"] = (gguf_parameters(Path(path)) or 0) + (embedder_parameters() if grounded else 0) or None
            m["file_mb"] = Path(path).stat().st_size / 1e6
            m["peak_rss_mb"] = (peak_rss_mb("grounded", str(path), str(settings.home)) if grounded
                                else peak_rss_mb("gguf", str(path)))
        elif arm == "teacher" and model.local:
            m["parameters"] = embedder_parameters()  # the only network the stand-in runs
            m["peak_rss_mb"] = peak_rss_mb("casebased", "", str(settings.home))
        m["throughput_c1_qph"] = throughput(model, 1, n_queries)
        m["throughput_c8_qph"] = throughput(model, 8, n_queries)
        out[arm] = m
    return out


def measure_run(store, settings, run_id: int) -> None:
    """Measure the arms of a stored evaluation run and store the figures with it (the report reads them)."""
    from eval.abtest import EvalConfig, build_models

    run = store.db["eval_runs"].get(run_id)
    config = EvalConfig(**{k: (tuple(v) if k == "arms" else v) for k, v in json.loads(run["config"]).items()})
    models = build_models(store, settings, config, exclude=frozenset())
    models.pop("routed", None)
    store.update("eval_runs", run_id, {"measurements": json.dumps(measure_arms(models, settings))})


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
