"""Image pipelines for pretraining and evaluation (ImageNet statistics, as torchvision models)."""

import torchvision.transforms as T

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def train_transform(size: int, crop_scale_min: float = 0.08) -> T.Compose:
    """PIL image -> ``(3, size, size)`` float tensor with random-resized crop and flip."""
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(crop_scale_min, 1.0)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )


def eval_transform(size: int, resize_ratio: float = 256 / 224) -> T.Compose:
    """PIL image -> ``(3, size, size)``: resize the short side to ``size * resize_ratio``, centre crop."""
    return T.Compose([T.Resize(round(size * resize_ratio)), T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD)])
