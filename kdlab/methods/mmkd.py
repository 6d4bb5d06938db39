"""MMKD: adaptive multi-teacher distillation with meta-learned per-sample teacher weights and a hard buffer.

Zhang, Chen, Wang (ICME 2023), "Adaptive Multi-Teacher Knowledge Distillation with Meta-Learning", arXiv
2306.06634, code Rorozhl/MMKD. E1-E12 number every computation of the step, the paper's equation numbers in
brackets where the paper writes one (docs/notes/mmkd.md: where the code and the paper differ). K frozen teachers; student theta with regressors r_k; meta-weight nets phi = (phi_l, phi_f).

  E1 [8]    L_CE    = mean_i CE(z^s_i, y_i)
  E2        l^KD_ik = tau^2 KL(softmax(z^tk_i / tau) || softmax(z^s_i / tau))          (per sample, teacher)
  E3 [1-2]  w^l_i   = softmax(W2 relu(W1 a_i)), a_i = [z^t1_i..z^tK_i, sg(z^s_i)] (`logit_input`: code "logits")
  E4 [6]    L_logit = mean_i sum_k w^l_ik l^KD_ik
  E5 [3]    G = F F^T over the batch (B x B) per teacher and for sg(student); raw in the code, row-L2-
            normalised by default here, as similarity-preserving KD does (`gram="normalized" | "raw"`)
  E6 [4-5]  w^f_i   = softmax(V2 relu(V1 b_i)),  b_i = [G^t1_i, ..., G^tK_i, G^s_i] (rows i), width B(K+1)
  E7        l^F_ik  = mean over feature entries of (r_k(P F^s_i) - P F^tk_i)^2, F: the last conv maps (code:
            feat[-2]; vectors if a model has none), P pools the larger map to the smaller's size, BEFORE r_k
  E8 [7]    L_feat  = mean_i sum_k w^f_ik l^F_ik
  E9 [9]    L_train = gamma L_CE + alpha L_logit + beta L_feat   (ALPHA = alpha; code: gamma = alpha = 1, beta = 100)
  E10       R rounds of a copy on one hard batch from theta and the momentum buffers, each with the real
            optimizer's rule (SGD, momentum, weight decay): R-1 on alpha L_logit + beta L_feat, then L_CE
  E11 [12]  L_meta(phi) = L_CE(theta_R(phi); hard batch); phi <- Adam(grad_phi L_meta); the copy is discarded
  E12       hard buffer (`kdlab.data.hard_buffer`): whole batches until full, then misclassified samples
            replace random slots; meta batches drawn without replacement (no buffer: the current batch)

Detached: teacher outputs (no_grad, eval mode); the weight nets' student-side inputs (logits, Gram
matrix); the weights in the real step (no_grad): theta gets first-order gradients, phi nothing.
Second order: phi enters only the matching rounds, so grad_phi L_meta is a mixed second derivative
carried through the later rounds (`create_graph=True`); a first-order unroll gives phi nothing. With the
student-side inputs detached at every round (as in the code's Reverse-HG), the path phi -> theta_j ->
weight-net input, j >= 1, is omitted: exact for R = 2, the code's approximation for R >= 3.
Deviations from the code: a global counter triggers the meta step every `meta_every` batches (the code:
`idx % meta_freq == 0` per epoch, plus the last batch); no Nesterov (the code uses it forward and ignores
it backward); any buffer >= B; the baselines (`mmkd_baselines`) are distributions, loss sum_k w_k l_k; where
the student or a teacher is an MLP (no map), every model's vector is matched (notebooks 05 and 08, class).
"""
import math

import torch
import torch.nn.functional as F

from .. import config, losses
from ..data.hard_buffer import HardBuffer, check_sizes
from ..meta import forward, momentum_buffers, params_of, unrolled_sgd
from ..models.meta_weight import build_modules, num_classes_of, pool_to, teacher_outputs, teacher_rows
from .base import Method, make_optimizer
from .mmkd_baselines import aver_weights, fixed_weights


def per_teacher_kd(student_logits, teacher_logits, temperature):
    """E2: tau^2 KL(p_t^tau || p_s^tau) per sample and teacher, (B, K); `teacher_logits` is (B, K, C)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1).unsqueeze(1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    textbook = temperature**2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # its gradients; exact values:
    return losses.with_exact_value(textbook, log_p_s, log_p_t, student_logits.unsqueeze(1), teacher_logits, temperature)


def per_teacher_feature_mse(student_features, teacher_features):
    """E7: MSE between each aligned r_k(P F^s) and P F^tk, (B, K), maps pooled to the smaller size (the
    student's already before r_k, in `DistillationStudent`)."""
    pairs = [(pool_to(f_s, f_t.shape[-2:]), pool_to(f_t, f_s.shape[-2:]))
             for f_s, f_t in zip(student_features, teacher_features)]
    return torch.stack([(f_s - f_t).pow(2).flatten(1).mean(1) for f_s, f_t in pairs], dim=1)


def similarity_matrix(features, normalize=True):
    """E5: the batch Gram matrix G = F F^T of flattened features, (B, B); rows L2-normalised if asked."""
    flat = features.flatten(1)
    gram = flat @ flat.t()
    return F.normalize(gram, dim=1) if normalize else gram


def logit_net_input(teacher_logits, student_logits, mode="logits", temperature=4.0):
    """E3's input a_i = [z^t1_i, ..., z^tK_i, sg(z^s_i)], (B, C(K+1)): raw logits (code) or p^tau (paper)."""
    parts = torch.cat([teacher_logits, student_logits.detach().unsqueeze(1)], dim=1)
    if mode == "probs":
        parts = F.softmax(parts / temperature, dim=-1)
    return parts.flatten(1)


def feature_net_input(teacher_features, student_feature, gram="normalized"):
    """E6's input b_i = [G^t1_i, ..., G^tK_i, sg(G^s_i)], (B, B(K+1))."""
    grams = [similarity_matrix(f, gram == "normalized") for f in teacher_features]
    grams.append(similarity_matrix(student_feature.detach(), gram == "normalized"))
    return torch.cat(grams, dim=1)


def teacher_weights(nets, output, labels, teacher_logits, teacher_features, s):
    """(w_logit, w_feat), each (B, K), a distribution per sample (E3, E6 or a baseline); w_feat is None
    without a feature term. `output` is the student's (logits, feature, aligned); `s` the options (an MMKD)."""
    logits, feature, _ = output
    if s.weighting == "mmkd" and s.logit_weights:
        w_logit = nets.logit_net(logit_net_input(teacher_logits, logits, s.logit_input, s.temperature))
    else:
        w_logit = fixed_weights(s.weighting, teacher_logits, labels)
    if not (s.feature_loss and s.beta > 0):
        return w_logit, None
    if s.weighting == "mmkd" and s.feature_weights:
        return w_logit, nets.feature_net(feature_net_input(teacher_features, feature, s.gram))
    return w_logit, aver_weights(teacher_logits)


def frozen_weights(nets, output, labels, teacher_logits, teacher_features, s):
    """The real step's weights, under no_grad: constants for theta, and phi gets no gradient."""
    with torch.no_grad():
        return teacher_weights(nets, output, labels, teacher_logits, teacher_features, s)


def mmkd_losses(output, labels, teacher_logits, teacher_features, w_logit, w_feat, s, *, matching_only=False):
    """E9 as named terms: loss = gamma CE + alpha L_logit + beta L_feat (matching_only: no CE, E10)."""
    logits, _, aligned = output
    ce = F.cross_entropy(logits, labels)
    kd = (w_logit * per_teacher_kd(logits, teacher_logits, s.temperature)).sum(dim=1).mean()             # E4
    feat = ((w_feat * per_teacher_feature_mse(aligned, teacher_features)).sum(dim=1).mean()              # E8
            if w_feat is not None else logits.new_zeros(()))
    loss = s.alpha * kd + s.beta * feat
    if not matching_only:
        loss = loss + s.gamma * ce
    return {"loss": loss, "ce": ce, "kd": kd, "feat": feat}


def virtual_losses(nets, s, rounds):
    """E10's per-round losses: R - 1 matching rounds (where phi enters), then one CE round."""
    def matching(output, y, t_logits, *t_feats):
        w_logit, w_feat = teacher_weights(nets, output, y, t_logits, t_feats, s)
        return mmkd_losses(output, y, t_logits, t_feats, w_logit, w_feat, s, matching_only=True)["loss"]

    def cross_entropy(output, y, *_):
        return F.cross_entropy(output[0], y)

    return [matching] * (rounds - 1) + [cross_entropy]


def meta_objective(model, nets, hard_batch, s, *, lr, momentum=0.9, weight_decay=5e-4, velocity=None,
                   virtual_steps=3, params=None):
    """E10-E11: (L_meta(phi), the rounds' losses) after R differentiable rounds of a copy of `model` (from
    `params` or its own, detached, and the buffers `velocity`) on `hard_batch`; `model` is not written."""
    config.check("virtual_steps", virtual_steps)
    if params is None:
        params = {n: p.detach().requires_grad_() for n, p in params_of(model).items()}
    fast, losses = unrolled_sgd(model, params, virtual_losses(nets, s, virtual_steps), [hard_batch] * virtual_steps,
                                lr, momentum=momentum, weight_decay=weight_decay, velocity=velocity)
    x, y = hard_batch[:2]
    return F.cross_entropy(forward(model, fast, x)[0], y), losses


def meta_update(nets, meta_optimizer, grads):
    """E11's outer step: phi <- Adam(phi, grad_phi L_meta); the gradients stay in `.grad`."""
    meta_optimizer.zero_grad(set_to_none=True)
    for p, g in zip([p for p in nets.parameters() if p.requires_grad], grads):
        p.grad = g
    meta_optimizer.step()


def meta_batch(buffer, batch):
    """E12: a meta batch from the hard buffer; without a buffer, the current batch."""
    return buffer.sample() if buffer is not None else batch


class MMKD(Method):
    """MMKD or a fixed `weighting` ("aver", "ebkd", "camkd"); also the options `s` of the functions above.
    `model`: the student; `wrapper`: theta (student + regressors); `nets`: phi (built in `prepare`).
    Figure 5's ablations: `hard_buffer`, `logit_weights`, `feature_weights`, `feature_loss` = False."""

    name = "mmkd"
    reduce = "steps"   # every full batch one vote, as the code averages
    drop_last, checkpointed = True, ("meta_optimizer", "buffer")   # full batches (B(K+1) wide); resume state
    card = {"paper": "Zhang, Chen, Wang (ICME 2023), Adaptive Multi-Teacher KD with Meta-Learning, arXiv 2306.06634",
            "equations": "w = softmax(MLP([z^t, sg(z^s)])); L = gamma CE + alpha sum_k w_k KD_k + beta sum_k w^f_k "
                         "MSE_k; phi <- Adam(grad_phi CE(theta_R(phi); hard batch))", "loop": "epochs",
            "detached": "teacher outputs; the weight nets' student-side inputs; the weights in the real step",
            "order": "second order (R SGD-momentum rounds; exact for R = 2)", "deviations": "see the docstring"}

    def __init__(self, student, teachers, *, temperature=4.0, alpha=1.0, beta=10.0, gamma=1.0, meta_every=5,
                 buffer_size=256, meta_lr=1e-3, meta_weight_decay=1e-4, virtual_steps=3, weighting="mmkd",
                 hard_buffer=True, logit_weights=True, feature_weights=True, feature_loss=True,
                 logit_input="logits", gram="normalized", feature_index=None):
        config.validate(NUM_TEACHERS=len(teachers) if isinstance(teachers, (list, tuple)) else 1,
                        TEMPERATURE=temperature, KD_WEIGHT=alpha, BETA=beta, GAMMA=gamma, META_EVERY=meta_every,
                        BUFFER_SIZE=buffer_size, META_LR=meta_lr, virtual_steps=virtual_steps, weighting=weighting,
                        logit_input=logit_input, gram=gram)
        self.model, self.teachers = student, list(teachers)
        self.temperature, self.alpha, self.beta, self.gamma = temperature, alpha, beta, gamma
        self.weighting, self.logit_input, self.gram, self.hard_buffer = weighting, logit_input, gram, hard_buffer
        self.logit_weights, self.feature_weights, self.feature_loss = logit_weights, feature_weights, feature_loss
        self.meta_every, self.buffer_size, self.virtual_steps = meta_every, buffer_size, virtual_steps
        self.meta_lr, self.meta_weight_decay, self.feature_index = meta_lr, meta_weight_decay, feature_index
        self.wrapper = self.nets = self.meta_optimizer = self.buffer = self.cache = None

    @property
    def learns_weights(self):  # some weight comes from a meta-weight net: the meta step has work
        features = self.feature_weights and self.feature_loss and self.beta > 0
        return self.weighting == "mmkd" and (self.logit_weights or features)

    def configure(self, recipe, run):
        self.recipe = recipe
        config.check("mmkd_optimizer", recipe.optimizer)

    def prepare(self, data, run):
        x, teachers, b = data.x_train, self.teachers, run.batch_size
        check_sizes(b, data.num_train, self.buffer_size)
        config.check("teacher_classes", [num_classes_of(m, x) for m in (self.model, *teachers)])
        if self.wrapper is None:  # built once: a resumed fit goes on with the same nets, optimizers and buffer
            self.wrapper, self.nets = build_modules(self.model, teachers, data, b, run.seed, self.feature_index)
            self.feature_index = self.wrapper.feature_index  # None (the last conv map, else vectors) resolved
            r, phi = self.recipe, self.nets.parameters()
            self.optimizer = make_optimizer(self.wrapper.parameters(), "sgd", r.lr, r.momentum, r.weight_decay)
            self.meta_optimizer = make_optimizer(phi, "adam", self.meta_lr, weight_decay=self.meta_weight_decay)
            if self.learns_weights and self.hard_buffer:
                self.buffer = HardBuffer(self.buffer_size, b, run.seed)
        self.cache = teacher_outputs(teachers, x, self.feature_index) if run.augment is None else None
        return data

    def on_epoch_start(self, run):
        self.buffer_writes, self.meta_sums, self.meta_count = 0, {}, 0

    def step(self, batch, run):
        x, y = batch.x, batch.y
        t_logits, t_feats = (teacher_rows(self.cache, batch.index) if self.cache is not None
                             else teacher_outputs(self.teachers, x, self.feature_index))
        output = self.wrapper(x)
        w_logit, w_feat = frozen_weights(self.nets, output, y, t_logits, t_feats, self)
        losses = self.descend(mmkd_losses(output, y, t_logits, t_feats, w_logit, w_feat, self), self.optimizer, run)
        losses.update({f"w_{kind}_{k}": w[:, k].mean() for kind, w in (("logit", w_logit), ("feat", w_feat))
                       if w is not None for k in range(w.shape[1])})
        batch_data = (x, y, t_logits, *t_feats)
        if self.buffer is not None:
            self.buffer_writes += self.buffer.put(batch_data, output[0].detach().argmax(dim=-1) != y)
        if self.learns_weights and run.global_step % self.meta_every == 0:
            for name, value in self.meta_step(meta_batch(self.buffer, batch_data)).items():
                self.meta_sums[name] = self.meta_sums.get(name, 0.0) + float(value)
            self.meta_count += 1
        return losses

    def meta_step(self, hard_batch):
        """E10-E11 from the real optimizer's lr and momentum buffers; only phi moves."""
        r, lr = self.recipe, self.optimizer.param_groups[0]["lr"]
        velocity = momentum_buffers(self.optimizer, self.wrapper) if r.momentum else None
        loss, rounds = meta_objective(self.wrapper, self.nets, hard_batch, self, lr=lr, momentum=r.momentum,
                                      weight_decay=r.weight_decay, velocity=velocity, virtual_steps=self.virtual_steps)
        grads = torch.autograd.grad(loss, [p for p in self.nets.parameters() if p.requires_grad], allow_unused=True)
        meta_update(self.nets, self.meta_optimizer, grads)
        norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
        return {"meta_loss": loss.detach(), "virtual_loss": rounds.mean(), "hypergrad_norm": torch.tensor(norm)}

    def on_epoch_end(self, record, run):
        if self.buffer is not None:
            record["buffer_writes"] = self.buffer_writes  # slots written this epoch (fills + hard samples)
        record.update({name: total / self.meta_count for name, total in self.meta_sums.items()})

    def modules(self):
        return [m for m in (self.wrapper or self.model, self.nets) if m is not None]
