"""The fault matrix, round two (issue #25): a stopped sweep, a plain rerun, resume with early stopping, an edited
record, bad arguments, a checkpoint scored on the wrong data, and inputs that crashed instead of explaining. Each
test fails when the behaviour it names breaks (test_faults.py holds the first round)."""
import pytest
import torch

from utils.data import ImageDataset, ImageSplit
from utils.engine import TrainConfig, fit
from utils.models import build_model


# --- resume with early stopping ----------------------------------------------------------------------------------

def _noisy_data() -> ImageDataset:
    """Random labels: validation accuracy wanders, so early stopping stops a run part way."""
    generator = torch.Generator().manual_seed(0)
    split = lambda n: ImageSplit(torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8),
                                 torch.randint(0, 2, (n,), generator=generator))
    return ImageDataset("noise", ["a", "b"], {"train": split(96), "val": split(48), "test": split(16)}, "", "")


def _fit(data, cfg, state_path=None, resume=False, stop_after_epochs=None):
    torch.manual_seed(0)
    return fit(build_model("simple_cnn", 2, width=8), data, cfg, state_path=state_path, resume=resume,
               stop_after_epochs=stop_after_epochs)


def _same_run(a, b):
    strip = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert strip(a.history) == strip(b.history)
    assert a.best_epoch == b.best_epoch
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)


@pytest.mark.parametrize("patience", [2, 0], ids=["early-stopping", "no-early-stopping"])
def test_a_run_interrupted_after_any_epoch_resumes_to_the_uninterrupted_run(tmp_path, patience):
    data = _noisy_data()
    cfg = TrainConfig(epochs=8 if patience else 3, batch_size=32, augment="none", lr=1e-2, warmup_epochs=0,
                      early_stop_patience=patience)
    straight = _fit(data, cfg)
    if patience:
        assert len(straight.history) < cfg.epochs, "the data no longer makes the run stop early: the test tests nothing"
    for k in range(1, len(straight.history) + 1):  # interrupted after epoch k, the last one included
        state = tmp_path / f"k{k}.state.pt"
        _fit(data, cfg, state, stop_after_epochs=k)
        resumed = _fit(data, cfg, state, resume=True)
        _same_run(resumed, straight)
    # A run that had finished (stopped early, or at its last epoch) trains no further when resumed.
    again = _fit(data, cfg, tmp_path / f"k{len(straight.history)}.state.pt", resume=True)
    _same_run(again, straight)


# --- arguments ---------------------------------------------------------------------------------------------------

RUN = ["--model", "simple_cnn", "--profile", "smoke"]


@pytest.mark.parametrize("args, says", [
    (["--epochs", "0"], "--epochs: 0 is not accepted; give a whole number of 1 or more"),
    (["--epochs", "-2"], "--epochs: -2 is not accepted; give a whole number of 1 or more"),
    (["--epochs", "two"], "--epochs: 'two' is not a whole number; give one of 1 or more"),
    (["--train-limit", "-5"], "--train-limit: -5 is not accepted; give a whole number of 1 or more"),
    (["--train-limit", "0"], "--train-limit: 0 is not accepted"),
    (["--pretrained"], "--pretrained: simple_cnn has no ImageNet weights here; only efficientnet_lite0 does"),
    (["--out", "{file}"], "is a file; give a folder"),
    (["--out", "{file}/runs"], "lies under the file"),
], ids=["epochs-0", "epochs-negative", "epochs-word", "train-limit-negative", "train-limit-0", "pretrained",
        "out-file", "out-under-file"])
def test_a_bad_training_argument_gets_one_line_and_nothing_is_trained_or_locked(tmp_path, capsys, args, says):
    from utils.train import main
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    out = tmp_path / "runs"
    argv = [*RUN, "--out", str(out), *(arg.replace("{file}", str(file)) for arg in args)]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("python -m utils.train: error: ") and says in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"], "something was written"


def test_a_sweep_with_no_workers_is_refused(capsys):
    from utils.sweep import main
    with pytest.raises(SystemExit) as exit_:
        main(["--workers", "0", "--dry-run"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err == ("python -m utils.sweep: error: argument --workers: 0 is not accepted; "
                                             "give a whole number of 1 or more\n")

