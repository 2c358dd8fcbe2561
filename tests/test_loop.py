"""The shared training loop on a toy trainee (a linear model): fast checks of each mechanism."""
import numpy as np
import pytest
import torch

from modeldojo.config import TrainConfig
from modeldojo.errors import TrainingError
from modeldojo.events import EventBus
from modeldojo.training.loop import fit
from modeldojo.training.optim import make_optimizer, make_scheduler


class Toy:
    monitor = "loss"

    def __init__(self, rows=64, seed=0, validation=True):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(rows, 4, generator=generator)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.0), torch.nn.Linear(8, 1))
        self.validation = validation
        self.evaluations = 0

    def step_batches(self, epoch):
        order = np.random.default_rng([0, epoch]).permutation(len(self.x))
        return [order[i:i + 8].tolist() for i in range(0, len(order), 8)]

    def collate(self, indices, device):
        return {"x": self.x[indices], "y": self.y[indices]}

    def loss(self, model, batch):
        return torch.nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])

    def evaluate(self, model):
        if not self.validation:
            return {}
        self.evaluations += 1
        return {"loss": float(torch.nn.functional.mse_loss(model(self.x).squeeze(-1), self.y).detach())}


def settings(**changes):
    base = dict(epochs=3, learning_rate=0.05, warmup=0.0, weight_decay=0.0, precision="fp32")
    return TrainConfig(**{**base, **changes})


def test_training_reduces_loss_and_restores_the_best():
    toy = Toy()
    before = toy.evaluate(toy.model)["loss"]
    result = fit(toy, settings(epochs=20), EventBus(), None)
    assert result.best_metric < before / 10 and result.steps == 160 and result.epochs_completed == 20
    assert toy.evaluate(toy.model)["loss"] == pytest.approx(result.best_metric)


def test_gradient_accumulation_gives_the_same_step():
    one, two = Toy(), Toy()
    fit(one, settings(batch_size=8), EventBus(), None)
    fit(two, settings(batch_size=4, gradient_accumulation=2), EventBus(), None)
    for a, b in zip(one.model.parameters(), two.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_early_stopping_and_max_steps():
    toy = Toy()
    result = fit(toy, settings(epochs=50, learning_rate=0.0, eval_every=1, patience=2), EventBus(), None)
    assert result.stopped_early and result.steps == 3  # best at step 1, then two evaluations without gain
    assert fit(Toy(), settings(epochs=50, max_steps=5), EventBus(), None).steps == 5


def test_no_validation_keeps_final_weights():
    toy = Toy(validation=False)
    result = fit(toy, settings(), EventBus(), None)
    assert result.best_step is None and result.steps == 24


def test_sgd_l1_and_non_finite_loss():
    toy = Toy()
    fit(toy, settings(optimizer="sgd", learning_rate=0.01, l1=0.01), EventBus(), None)
    assert isinstance(make_optimizer(toy.model, settings(optimizer="sgd")), torch.optim.SGD)
    exploding = Toy()
    with pytest.raises(TrainingError, match="non-finite loss .* at step"):
        fit(exploding, settings(optimizer="sgd", learning_rate=1e3, epochs=50, max_grad_norm=0.0), EventBus(), None)


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [0.5, 1.0, 1.0, 1.0, 1.0]),
    ("linear", [0.5, 1.0, 2 / 3, 1 / 3, 0.0]),
    ("cosine", [0.5, 1.0, 0.75, 0.25, 0.0]),
])
def test_schedules_with_warmup(schedule, expected):
    model = torch.nn.Linear(2, 1)
    config = settings(schedule=schedule, warmup=1.0, learning_rate=1.0)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, total_steps=4)
    rates = []
    for _ in range(5):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx(expected)


def test_weight_decay_skips_biases():
    model = torch.nn.Linear(3, 2)
    optimizer = make_optimizer(model, settings(weight_decay=0.1))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and [p.shape for p in decayed["params"]] == [torch.Size([2, 3])]
    assert plain["weight_decay"] == 0.0 and [p.shape for p in plain["params"]] == [torch.Size([2])]


def test_every_epoch_gets_its_own_batch_order():
    seen = []

    class Recording(Toy):
        def collate(self, indices, device):
            seen.append(tuple(indices))
            return super().collate(indices, device)

    fit(Recording(), settings(epochs=2), EventBus(), None)
    toy = Toy()
    assert seen == [tuple(b) for epoch in (0, 1) for b in toy.step_batches(epoch)]


@pytest.mark.parametrize("every", [3, 8])  # 8 = the epoch length: checkpoints at epochs' last steps
def test_crash_then_resume_matches_an_uninterrupted_run(tmp_path, every):
    config = settings(epochs=4, checkpoint_every=every, eval_every=5)
    straight = Toy()
    fit(straight, config, EventBus(), tmp_path / "straight")

    class Crash(Toy):
        calls = 0

        def collate(self, indices, device):
            Crash.calls += 1
            if Crash.calls == 20:
                raise KeyboardInterrupt
            return super().collate(indices, device)

    with pytest.raises(KeyboardInterrupt):
        fit(Crash(), config, EventBus(), tmp_path / "crashed")
    resumed = Toy()
    result = fit(resumed, config, EventBus(), tmp_path / "crashed")
    assert result.resumed_from is not None and result.steps == 32
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_train_threads_sets_torchs_threads_for_the_run_and_restores_them():
    seen = []

    class Counting(Toy):
        def loss(self, model, batch):
            seen.append(torch.get_num_threads())
            return super().loss(model, batch)

    before = torch.get_num_threads()
    fit(Counting(), settings(epochs=1, threads=1), EventBus(), None)
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_a_trainee_weight_decides_how_micro_batches_are_weighted():
    """A token-level loss: micro-batches weigh by what `weight` counts, so accumulation gives the full step."""
    class Weighted(Toy):
        counts = np.arange(1, 65)  # a different "token count" per example

        def weight(self, indices):
            return int(self.counts[indices].sum())

        def loss(self, model, batch):  # a weighted mean over the batch, as a token mean is
            weights = torch.as_tensor(self.counts[batch["indices"]], dtype=torch.float32)
            errors = (model(batch["x"]).squeeze(-1) - batch["y"]) ** 2
            return (errors * weights).sum() / weights.sum()

        def collate(self, indices, device):
            return {**super().collate(indices, device), "indices": indices}

    one, two = Weighted(), Weighted()
    fit(one, settings(batch_size=8), EventBus(), None)
    fit(two, settings(batch_size=4, gradient_accumulation=2), EventBus(), None)
    for a, b in zip(one.model.parameters(), two.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_forked_workers_still_end_on_sigterm_while_stop_is_armed():
    """statsforecast's process pool forks during `dojo train`: its workers inherit the stop handler, and
    Pool.terminate() (SIGTERM) must still end them, or training waits for them forever."""
    import multiprocessing
    import signal
    import time

    from modeldojo.training import stopping

    context = multiprocessing.get_context("fork")
    with stopping.on_signals():
        worker = context.Process(target=time.sleep, args=(30,))
        worker.start()
        time.sleep(0.2)
        worker.terminate()
        worker.join(10)
        assert worker.exitcode == -signal.SIGTERM
        assert not stopping.requested()  # the worker's signal is not a stop of the training process
