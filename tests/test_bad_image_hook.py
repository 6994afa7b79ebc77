"""The unreadable-image budget as a trainer hook: when it judges (every batch alone, at the ranks'
agreements with several), and its counts in the checkpoint's ``bad_images`` entry."""

import datetime
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from vise_plugin.data.bad_images import BadImageBudget
from vise_plugin.engine.hooks import BadImageHook
from vise_plugin.errors import InputError

pytestmark = pytest.mark.faults


def _trainer(world_size=1, max_iterations=100):
    return SimpleNamespace(
        world_size=world_size,
        iteration=0,
        max_iterations=max_iterations,
        preemption_check_every=10,
        device=torch.device("cpu"),
        skipped_images=[],
        images_read=0,
    )


def _batch(hook, trainer, read, skipped=0):
    """One batch through the hook as the trainer runs it: ``before_step``, the step, ``after_step``."""
    trainer.skipped_images, trainer.images_read = [f"bad{i}.jpg" for i in range(skipped)], read
    hook.before_step(trainer)
    trainer.iteration += 1
    hook.after_step(trainer)


def test_one_process_stops_at_the_batch_that_puts_it_over_its_budget():
    hook, trainer = BadImageHook(BadImageBudget(0.1)), _trainer()  # judged from 100 images on
    for _ in range(9):
        _batch(hook, trainer, read=10)
    _batch(hook, trainer, read=0, skipped=10)  # 10 of 100: not above 10%
    with pytest.raises(InputError, match=r"^11 of 101 images could not be read \(10.89%.*e.g. bad0.jpg$"):
        _batch(hook, trainer, read=0, skipped=1)
    assert trainer.iteration == 10  # before its step


def test_the_last_step_judges_counts_that_went_over_the_budget_without_a_skipped_image():
    hook, trainer = BadImageHook(BadImageBudget(0.1)), _trainer(max_iterations=10)
    _batch(hook, trainer, read=0, skipped=11)  # too few images read to judge yet
    for _ in range(8):
        _batch(hook, trainer, read=10)
    with pytest.raises(InputError, match=r"^11 of 101 images could not be read"):
        _batch(hook, trainer, read=10)
    assert trainer.iteration == 10


def test_counts_are_saved_and_an_older_checkpoints_entry_goes_on():
    hook, trainer = BadImageHook(BadImageBudget(0.1)), _trainer()
    _batch(hook, trainer, read=7, skipped=1)
    hook.before_checkpoint(trainer)
    assert BadImageHook.state_key == "bad_images" and hook.state_dict() == {"seen": 8, "skipped": 1}
    resumed = BadImageHook(BadImageBudget(0.1))
    resumed.load_state_dict({"seen": 90, "skipped": 2})  # as every checkpoint since the first has it
    assert (resumed.budget.seen, resumed.budget.skipped) == (90, 2) and resumed.state_dict() == {
        "seen": 90,
        "skipped": 2,
    }
    _batch(resumed, _trainer(), read=9, skipped=1)
    resumed.before_checkpoint(trainer)
    assert resumed.state_dict() == {"seen": 100, "skipped": 3}


@pytest.fixture
def process_group(tmp_path):
    """A gloo process group of this process alone: the all-reduce of a trainer told it has several ranks."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1, timeout=datetime.timedelta(seconds=30)
    )
    yield
    dist.destroy_process_group()


def test_several_ranks_judge_their_sums_only_when_they_agree(process_group):
    hook, trainer = BadImageHook(BadImageBudget(0.1)), _trainer(world_size=2)
    for _ in range(5):
        _batch(hook, trainer, read=10)
    _batch(hook, trainer, read=0, skipped=60)  # over the budget, but the other ranks would go on
    for _ in range(3):
        _batch(hook, trainer, read=10)
    assert trainer.iteration == 9 and hook.state_dict() == {"seen": 0, "skipped": 0}  # not agreed on yet
    with pytest.raises(InputError, match=r"^60 of 150 images could not be read"):
        _batch(hook, trainer, read=10)  # iteration 10: the ranks agree
    assert hook.state_dict() == {"seen": 150, "skipped": 60}
