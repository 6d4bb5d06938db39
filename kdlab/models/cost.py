"""What a model costs to run: multiply-accumulates of one forward pass per image (convolutions and linear
layers, the terms that dominate; BatchNorm, activations and pooling are not counted)."""
import torch
import torch.nn as nn


def multiply_adds(model, input_shape):
    """Multiply-accumulates per image of `model` on inputs of `input_shape` (one image, without the batch).

    Runs two zero images (train-mode BatchNorm needs a batch) under no_grad; the buffers are restored."""
    from ..meta import preserved_buffers

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        per_image = output.numel() // output.shape[0]
        if isinstance(module, nn.Conv2d):
            total += per_image * module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
        elif isinstance(module, nn.Linear):
            total += per_image * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad(), preserved_buffers(model):
            model(torch.zeros(2, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total
