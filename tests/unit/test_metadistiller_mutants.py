"""Planted bugs in MetaDistiller: each mutant patches one module-level function of the method (or of the
label generator) with a concrete, plausible bug, and one of the ordinary checks of test_metadistiller.py
must then fail BY AN ASSERTION (tests/mutation.py). The third column of MUTANTS names that check."""
from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F

from kdlab import meta
from kdlab.losses import kd_loss
from kdlab.methods import metadistiller as md
from kdlab.models import label_generator
from tests.mutation import assert_caught
from tests.unit.test_metadistiller import (BASE_LR, check_generator_keeps_its_learning_rate, check_meta_step,
                                           check_meta_gradient_matches_finite_differences, check_network_step)

original_soft_targets_for, original_generator_step = md.soft_targets_for, md.generator_step
original_meta_gradient, original_meta_batches = md.meta_gradient, md.meta_batches


def first_order_lookahead(model, params, inner, lr, first_order=False):
    return meta.lookahead(model, params, inner, lr, create_graph=False)


def ascending_lookahead(model, params, inner, lr, first_order=False):
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    return {name: p + lr * g for (name, p), g in zip(params.items(), grads)}


def md_targets_attached(mode, outputs, maps, generator=None):     # no torch.no_grad, no detach
    if mode == "md":
        return generator(md.generator_input(maps))
    return original_soft_targets_for(mode, outputs, maps, generator)


def md_targets_and_maps_attached(mode, outputs, maps, generator=None):
    if mode == "md":
        return generator(maps)
    return original_soft_targets_for(mode, outputs, maps, generator)


def sd_target_attached(mode, outputs, maps, generator=None):
    if mode == "sd":
        return [outputs[-1]] * (len(outputs) - 1)
    return original_soft_targets_for(mode, outputs, maps, generator)


def alpha_on_ce(outputs, labels, targets, *, alpha=0.5, temperature=1.0):   # the paper's convention, unconverted
    total = F.cross_entropy(outputs[-1], labels)
    for k, s_k in enumerate(outputs[:-1]):
        ce = F.cross_entropy(s_k, labels)
        total = total + (ce if targets is None else alpha * ce + (1 - alpha) * kd_loss(s_k, targets[k], temperature))
    return {"loss": total}


def both_batches_from_the_training_half(x, y, halves, batch_size, rng):
    return original_meta_batches(x, y, (halves[0], halves[0]), batch_size, rng)


def skipped_generator_step(model, generator, optimizer, train_batch, test_batch, **kwargs):
    return {"meta_loss": torch.tensor(0.0), "lookahead_loss": torch.tensor(0.0), "meta_grad_norm": torch.tensor(0.0)}


def base_lr_lookahead(*args, lr, **kwargs):   # zeta frozen at the recipe's lr instead of the current one
    return original_generator_step(*args, lr=BASE_LR, **kwargs)


def nearest(fused, size):
    return F.interpolate(fused, size=size, mode="nearest")


MUTANTS = {  # name -> (the planted bug, the check that catches it)
    "first-order look-ahead (create_graph=False)":
        (lambda: patch.object(md, "lookahead_step", first_order_lookahead), check_meta_step),
    "look-ahead ascends the inner loss (sign flipped)":
        (lambda: patch.object(md, "lookahead_step", ascending_lookahead), check_meta_step),
    "generator ascends the meta loss (sign flipped)":
        (lambda: patch.object(md, "meta_gradient", lambda loss, gen: [-g for g in original_meta_gradient(loss, gen)]),
         check_meta_step),
    "generator reads the stage maps undetached":
        (lambda: patch.object(md, "generator_input", list), check_meta_gradient_matches_finite_differences),
    "targets not detached in the network step":
        (lambda: patch.object(md, "soft_targets_for", md_targets_attached), lambda: check_network_step("md")),
    "targets and maps not detached in the network step":
        (lambda: patch.object(md, "soft_targets_for", md_targets_and_maps_attached), lambda: check_network_step("md")),
    "SD's target (the final output) not detached":
        (lambda: patch.object(md, "soft_targets_for", sd_target_attached), lambda: check_network_step("sd")),
    "look-ahead targets detached from the generator":
        (lambda: patch.object(md, "lookahead_targets", lambda gen, maps: [u.detach() for u in
                                                                           gen(md.generator_input(maps))]),
         check_meta_gradient_matches_finite_differences),
    "nearest instead of bilinear upsampling (Eq. 5)":
        (lambda: patch.object(label_generator, "upsample", nearest), lambda: check_network_step("md")),
    "meta loss on a batch of the training half, not the test half":
        (lambda: patch.object(md, "meta_batches", both_batches_from_the_training_half), check_meta_step),
    "generator step skipped":
        (lambda: patch.object(md, "generator_step", skipped_generator_step), check_meta_step),
    "look-ahead with the base lr, not the scheduled one":
        (lambda: patch.object(md, "generator_step", base_lr_lookahead), check_meta_step),
    "meta loss scores the final exit only":
        (lambda: patch.object(md, "heldout_loss", lambda outputs, labels, meta_exits="all":
                              F.cross_entropy(outputs[-1], labels)), check_meta_step),
    "alpha weights the CE term (paper's convention, unconverted)":
        (lambda: patch.object(md, "exit_losses", alpha_on_ce), lambda: check_network_step("sd")),
    "the generator's Adam follows the network's schedule":
        (lambda: patch.object(md.MetaDistiller, "optimizers", lambda self: [self.optimizer, self.generator_optimizer]),
         check_generator_keeps_its_learning_rate),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
