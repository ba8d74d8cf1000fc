"""transforms.BudgetCosineLR: cosine decay over a budget of steps or of wall time, and StopAfterSeconds as its clock."""

import math

import pytest
import torch
from ignite.engine import Engine, Events

from transforms.handlers import BudgetCosineLR, StopAfterSeconds


class FakeClock:
    def __init__(self, seconds):
        self.seconds = seconds
        self.now = 0.0

    def elapsed(self):
        return self.now


def _optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _step(optimizer, scheduler):
    optimizer.step()
    scheduler.step()
    return optimizer.param_groups[0]["lr"]


def test_cosine_over_steps_matches_the_formula():
    optimizer = _optimizer(0.1)
    scheduler = BudgetCosineLR(optimizer, total_steps=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    rates = [_step(optimizer, scheduler) for _ in range(10)]
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(1, 11)]
    assert rates == pytest.approx(expected)
    assert rates[4] == pytest.approx(0.05) and rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_wall_time_budget_wins_when_it_runs_out_first():
    optimizer = _optimizer(1.0)
    clock = FakeClock(seconds=100.0)
    scheduler = BudgetCosineLR(optimizer, total_steps=1000, clock=clock)
    clock.now = 50.0  # half the time, 0.1 % of the steps
    assert _step(optimizer, scheduler) == pytest.approx(0.5)
    clock.now = 150.0  # past the budget: the floor
    assert _step(optimizer, scheduler) == pytest.approx(0.0, abs=1e-12)


def test_clock_without_a_limit_falls_back_to_steps_and_floor_and_warmup_apply():
    optimizer = _optimizer(1.0)
    clock = FakeClock(seconds=None)
    clock.now = 1e9
    scheduler = BudgetCosineLR(optimizer, total_steps=4, clock=clock, warmup_steps=2, min_lr_ratio=0.2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)  # step 0: warm-up 1/2 of the full rate
    rates = [_step(optimizer, scheduler) for _ in range(4)]
    cosine = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(1, 5)]
    assert rates == pytest.approx([0.2 + 0.8 * c for c in cosine])


def test_state_dict_leaves_the_clock_out_and_restores_the_step(tmp_path):
    optimizer = _optimizer(1.0)
    scheduler = BudgetCosineLR(optimizer, total_steps=10, clock=StopAfterSeconds(60.0))
    for _ in range(3):
        _step(optimizer, scheduler)
    state = scheduler.state_dict()
    assert "clock" not in state
    torch.save(state, tmp_path / "s.pt")
    restored = BudgetCosineLR(_optimizer(1.0), total_steps=10)
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert restored.last_epoch == 3


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="total_steps"):
        BudgetCosineLR(_optimizer(), total_steps=0)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        BudgetCosineLR(_optimizer(), total_steps=5, min_lr_ratio=1.5)


def test_stop_after_seconds_without_a_limit_only_keeps_time(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    stopper = StopAfterSeconds(None, elapsed_path=tmp_path / "elapsed.json")
    stopper.attach(trainer)
    trainer.run(range(5), max_epochs=3)
    assert trainer.state.epoch == 3 and stopper.elapsed() >= 0.0
    assert (tmp_path / "elapsed.json").is_file()


def test_stop_after_seconds_resume_false_ignores_an_old_record(tmp_path):
    record = tmp_path / "elapsed.json"
    record.write_text('{"elapsed_seconds": 1000.0, "epoch": 9}')
    trainer = Engine(lambda engine, batch: None)
    epochs = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(e.state.epoch))
    StopAfterSeconds(60.0, elapsed_path=record, resume=False).attach(trainer)
    trainer.run(range(2), max_epochs=2)
    assert epochs == [1, 2], "a fresh run must not inherit the spent time of an older one"
    with pytest.raises(ValueError, match="budget"):
        StopAfterSeconds(True)
