"""Held-out loss of the base student vs a trained version, on the dataset's validation and test splits.

Loss is the mean cross-entropy per assistant token of the labelled turns (the training objective), so lower
means the model finds the reference replies likelier. One run, same tokenisation for both models.

    python -m eval.bench_loss [--version student-001-...]   (default: the serving version)
"""

from __future__ import annotations

import argparse
import json

from assistant.errors import InputError
from assistant.settings import Settings
from assistant.store import open_store
from assistant import students
from distill.base_model import load_base
from distill.dataset import load_dataset
from distill.train import TrainConfig, device_and_dtype, pad_id, prepare_rows, validation_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version")
    args = parser.parse_args()
    settings = Settings.from_env()
    store = open_store(settings)
    row = students.resolve(store, args.version)
    if row is None:
        raise InputError("no trained version to compare (assistant train)")
    dd, _ = load_dataset(store, row["dataset_version"])
    config = TrainConfig(**json.loads(row["config"]))
    model, tokenizer = load_base(settings.student_path, settings.cache_dir)
    pad = pad_id(tokenizer)
    device, _ = device_and_dtype()
    ground = None
    if config.retrieval_augmented:  # measured on the prompts it was trained and is served with
        from distill.pipeline import grounding_for_training, held_out_retriever

        ground = grounding_for_training(held_out_retriever(store, settings, dd), [dd["validation"], dd["test"]])
    splits = {s: prepare_rows(tokenizer, list(dd[s]), config, ground) for s in ("validation", "test")}
    base = {s: validation_loss(model, ex, 8, pad, device) for s, ex in splits.items()}
    from peft import PeftModel

    tuned = PeftModel.from_pretrained(model, f"{row['path']}/adapter")
    trained = {s: validation_loss(tuned, ex, 8, pad, device) for s, ex in splits.items()}
    print(f"dataset {row['dataset_version']}; loss per assistant token (lower is better)")
    for s in splits:
        print(f"{s:10}  base {base[s]:.4f}  {row['version']} {trained[s]:.4f}  ({(trained[s] - base[s]) / base[s]:+.0%})")


if __name__ == "__main__":
    main()
