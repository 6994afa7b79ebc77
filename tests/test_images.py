import numpy as np
import pytest
import torch
from PIL import Image

from vise_plugin.data.images import cpu_seed, load_image, open_image
from vise_plugin.data.transforms import eval_transform, train_transform
from vise_plugin.errors import InputError


@pytest.fixture
def photo(tmp_path):
    """A smooth 1440 x 1080 picture with texture, as JPEG and PNG."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1080, 0:1440]
    pixels = np.stack([x / 6, y / 5, (x + y) / 10], axis=-1) % 255 + rng.normal(0, 4, (1080, 1440, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image.save(tmp_path / "big.jpg", quality=92)
    image.save(tmp_path / "big.png")
    return tmp_path


def _crop(path, scale, decoded_first: bool):
    transform = train_transform(224, scale[0])
    transform.transforms[0].scale = scale
    torch.manual_seed(3)
    with open_image(str(path)) as image:
        out = transform(image.convert("RGB") if decoded_first else image)
        return out, image.size


@pytest.mark.parametrize(
    "scale, decoded_size", [((0.9, 1.0), (360, 270)), ((0.3, 0.3), (720, 540)), ((0.08, 0.08), (1440, 1080))]
)
def test_training_crop_decodes_a_jpeg_at_the_smallest_scale_that_holds_the_crop(photo, scale, decoded_size):
    drafted, size = _crop(photo / "big.jpg", scale, decoded_first=False)
    full, _ = _crop(photo / "big.jpg", scale, decoded_first=True)
    assert size == decoded_size
    assert drafted.shape == full.shape == (3, 224, 224)
    assert (drafted - full).abs().mean() < 0.06  # same crop (same random draws), resampled from another scale
    png, png_size = _crop(photo / "big.png", scale, decoded_first=False)  # no draft scales: same as torchvision's
    assert png_size == (1440, 1080) and torch.equal(png, _crop(photo / "big.png", scale, decoded_first=True)[0])


def test_evaluation_decodes_a_jpeg_down_to_the_resize_target(photo):
    with open_image(str(photo / "big.jpg")) as image:
        drafted = eval_transform(224)(image)
        assert image.size == (360, 270)  # 1/4 scale: short side 270 >= 256
    full = load_image(str(photo / "big.jpg"), lambda im: eval_transform(224)(im.convert("RGB")))
    assert (drafted - full).abs().mean() < 0.06


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(InputError, match=r"broken.jpg: cannot read image"):
        load_image(str(tmp_path / "broken.jpg"), train_transform(224))


@pytest.mark.parametrize("seed", [0, 7, 2**63 + 5])
def test_an_item_seed_draws_what_torch_manual_seed_draws_and_leaves_the_global_state(seed):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with cpu_seed(seed):
        drawn = torch.rand(5)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(seed % 2**63)
    assert torch.equal(drawn, torch.rand(5))
