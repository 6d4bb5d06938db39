"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images of 10 classes, no download.

Pixels (0..16 in the original) are scaled to [0, 1]; inputs have shape (N, 1, 8, 8).

The split is stratified and seeded:
- by default 25 % of the images (449) are the test set and the other 1,348 the training set;
- `train_size=n` keeps n stratified training images and makes *all the rest* the test set, the protocol
  of the kit's KD measurements (300 training images, 1,497 test images);
- `test_fraction` and `train_size` together: a test set of that fraction, and n training images drawn
  from the remainder.
"""
import numbers

import torch

from ..errors import ParameterError
from .base import DataSplits, as_device, check_count, seeded_generator, stratified_split
from .registry import register

NUM_IMAGES = 1797
DEFAULT_TEST_FRACTION = 0.25


def _split_sizes(train_size, test_fraction):
    """(number of training images, number of test images) for the options given."""
    num_test = None
    if test_fraction is not None:
        if not isinstance(test_fraction, numbers.Real) or isinstance(test_fraction, bool) or not 0 < test_fraction < 1:
            raise ParameterError("test_fraction", test_fraction, "a number strictly between 0 and 1")
        num_test = min(max(round(NUM_IMAGES * test_fraction), 1), NUM_IMAGES - 1)
    if train_size is None:
        num_test = num_test or round(NUM_IMAGES * DEFAULT_TEST_FRACTION)
        return NUM_IMAGES - num_test, num_test
    train_size = check_count("train_size", train_size, 1, NUM_IMAGES - (num_test or 1))
    return train_size, num_test or NUM_IMAGES - train_size


@register("digits", offline=True, description="scikit-learn's 1,797 real 8x8 handwritten digits, 10 classes")
def load_digits(root=None, device="cpu", *, seed=0, train_size=None, test_fraction=None):
    """The digits as `DataSplits`; `seed` fixes the stratified train/test split (see the module docstring).

    `root` is unused (the images ship inside scikit-learn) and accepted for a uniform loader signature.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # scikit-learn is slow to import

    num_train, num_test = _split_sizes(train_size, test_fraction)
    device = as_device(device)
    generator = seeded_generator(seed)
    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)

    test, rest = stratified_split(labels, num_test, generator)
    if num_train < len(rest):
        keep, _ = stratified_split(labels[rest], num_train, generator)
        rest = rest[keep]
    return DataSplits(
        name="digits",
        x_train=images[rest],
        y_train=labels[rest],
        x_test=images[test],
        y_test=labels[test],
        num_classes=10,
        input_shape=(1, 8, 8),
        class_names=[str(d) for d in range(10)],
    ).to(device)
