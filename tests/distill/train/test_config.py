"""TrainConfig: every field documented for the CLI, and a digest that keeps naming the same runs."""

from dataclasses import fields, replace

from distill.train.config import TrainConfig, config_help


def test_every_setting_has_help_text_for_the_cli():
    help_text = config_help()
    assert list(help_text) == [f.name for f in fields(TrainConfig)]
    assert [name for name, text in help_text.items() if not text.strip()] == []
    assert TrainConfig().loss == "cross_entropy" and "cross_entropy" in help_text["loss"]


def test_the_digest_names_the_same_run_as_before_the_loss_field_existed():
    # the digests of these configs before `loss` was added: run folders and checkpoints keep their names
    assert TrainConfig().digest() == "ed7076da4ad8"
    assert TrainConfig(epochs=2, learning_rate=1e-2, batch_tokens=120, grad_accum=2, lora_r=4, lora_alpha=8,
                       lora_dropout=0.1, early_stopping_patience=100, checkpoint_steps=2, seed=5).digest() == "c6a4112ec710"
    # another loss is another run
    assert replace(TrainConfig(), loss="token_kl").digest() != TrainConfig().digest()
    assert replace(TrainConfig(), seed=1).digest() != TrainConfig().digest()
