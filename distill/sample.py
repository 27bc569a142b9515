"""The sample company (data/sample): loaded into an empty store on first run, the way a user would import it.

`open_services` is what the shells and the benchmarks start from: the application's services, after the
sample's KB and conversations were imported into an empty store (when ASSISTANT_SEED_SAMPLE is on, the
default), so the first command of the README opens a chat that already knows the sample company.
"""

from __future__ import annotations

import logging
from pathlib import Path

from assistant.services import Services, build_services
from assistant.settings import Settings, sample_dir
from assistant.store import Store, open_store
from distill.importer import import_file
from distill.kb import import_kb

log = logging.getLogger(__name__)

SAMPLE_DIR = sample_dir()  # data/sample in a checkout, the copy inside the package when installed


def seed_sample(store: Store, sample_dir: Path = SAMPLE_DIR) -> dict:
    """Load the sample company's KB and conversations into an empty store; what is already there stays."""
    added = {"kb_articles": 0, "conversations": 0}
    if store.kb_version() is None and (sample_dir / "kb").is_dir():
        added["kb_articles"] = import_kb(store, sample_dir / "kb").articles
    if store.count("conversations") == 0 and (sample_dir / "conversations.jsonl").exists():
        added["conversations"] = import_file(store, sample_dir / "conversations.jsonl").imported
    return added


def open_services(settings: Settings, **kwargs) -> Services:
    """`build_services`, with the sample company seeded first when settings.seed_sample is on."""
    if settings.seed_sample:
        store = open_store(settings)
        try:
            added = seed_sample(store)
        finally:
            store.close()
        if any(added.values()):
            log.info("loaded the sample company: %s", added)
    return build_services(settings, **kwargs)
