"""Training memory preflight: the estimate, the micro-batch it lowers or the refusal, and README's 4 GB bound."""

import pytest

from distill.train.config import TrainConfig
from tests.conftest import tiny_llama


def test_memory_preflight_lowers_the_micro_batch_or_refuses_with_the_numbers():
    from assistant.errors import InputError
    from distill.memory import estimate_training_mb, plan_memory

    model = tiny_llama(1000)
    examples = [{"input_ids": [0] * 300}]
    need = lambda tokens: estimate_training_mb(model, tokens, 300, True, 1000, 1024)  # noqa: E731
    assert need(4096) > need(1024) > 0
    assert estimate_training_mb(model, 4096, 300, False, 1000, 1024) > need(4096)  # checkpointing saves memory
    fits = plan_memory(model, examples, 4096, True, 1024, limit_mb=100 + need(1024) + 0.01, current_mb=100)
    assert fits.batch_tokens <= 1024 and fits.estimate_mb <= fits.limit_mb and "lowered" in fits.line()
    with pytest.raises(InputError) as err:
        plan_memory(model, examples, 4096, True, 1024, limit_mb=100, current_mb=100)
    assert "MB" in str(err.value) and "--max-length" in str(err.value)


@pytest.mark.slow
def test_the_defaults_fit_the_packaged_student_in_4_gb_whatever_the_length(base_cache):
    """README's bound, by the preflight's own arithmetic: with the defaults a micro-batch holds at most
    batch_tokens tokens and no sequence is longer than max_length, so the longest conversation costs what one
    full micro-batch costs. The measured peak is eval/bench_train_long's (1.7 GB on this machine)."""
    from assistant.settings import packaged_student_gguf
    from distill.base_model import load_base
    from distill.memory import estimate_training_mb
    from distill.train.losses import HEAD_CHUNK

    model, _ = load_base(str(packaged_student_gguf()), base_cache)
    c = TrainConfig()
    lora = 5_000_000  # r 16 on the 7 projections of 30 layers: 4.9M trainable parameters
    step = estimate_training_mb(model, c.batch_tokens, c.max_length, c.gradient_checkpointing, lora, HEAD_CHUNK)
    process = 1024  # libraries and the base's weights: 570 MB measured before the first step
    assert c.gradient_checkpointing and step + process < 4096, step
    # without the bound the estimate is over it: the test can fail
    assert estimate_training_mb(model, 8 * c.batch_tokens, c.max_length, False, lora, HEAD_CHUNK) + process > 4096
