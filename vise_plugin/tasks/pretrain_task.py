"""classy-vision's classification task for dict targets (one tensor per engagement type)."""

from classy_vision.tasks import ClassificationTask, register_task


@register_task("vise_pretraining")
class VisEPretrainTask(ClassificationTask):
    """A :class:`ClassificationTask` whose ``sample["target"]`` is ``{task: tensor}``.

    The parent moves dict targets to the GPU and passes them to the loss unchanged; only meter
    updates assume a single tensor, so meters receive the dict as is.
    """

    def update_meters(self, model_output, sample):
        for meter in self.meters:
            meter.update(model_output, sample["target"], is_train=self.train)
