"""MMKD: adaptive multi-teacher distillation with meta-learned per-sample teacher weights and a hard buffer.

Zhang, Chen, Wang (ICME 2023), "Adaptive Multi-Teacher Knowledge Distillation with Meta-Learning",
arXiv 2306.06634, code Rorozhl/MMKD. The paper's equations were lost in our text copy; they are
reconstructed from the official code (methods.md section 4, E1-E12; the paper's numbers in brackets).
K frozen teachers, a student theta (with one feature regressor r_k per teacher, trained with it), two
meta-weight networks phi = (phi_l, phi_f). `z` are logits, `F` penultimate features, tau the temperature.

  E1 [8]      L_CE    = mean_i CE(z^s_i, y_i)
  E2          l^KD_ik = tau^2 KL(softmax(z^tk_i / tau) || softmax(z^s_i / tau))          (per sample, teacher)
  E3 [1-2]    w^l_i   = softmax(W2 relu(W1 a_i)),  a_i = [z^t1_i, ..., z^tK_i, sg(z^s_i)]  (raw logits in
              the code; probabilities at tau in the paper: `logit_input="logits" | "probs"`)
  E4 [6]      L_logit = mean_i sum_k w^l_ik l^KD_ik
  E5 [3]      G = F F^T over the batch (B x B), per teacher and for sg(student); the code leaves G raw,
              the kit row-L2-normalises it by default as similarity-preserving KD does (`gram=`)
  E6 [4-5]    w^f_i   = softmax(V2 relu(V1 b_i)),  b_i = [G^t1_i, ..., G^tK_i, G^s_i] (rows i), width B(K+1)
  E7          l^F_ik  = mean over feature entries of (r_k(F^s_i) - F^tk_i)^2
  E8 [7]      L_feat  = mean_i sum_k w^f_ik l^F_ik
  E9 [9]      L_train = gamma L_CE + alpha L_logit + beta L_feat     (code: gamma = alpha = 1, beta = 100)
  E10         virtual student, R rounds on one hard batch from the current theta and momentum buffers:
              rounds 1..R-1 minimise alpha L_logit + beta L_feat (matching only), round R minimises
              L_CE, each with the real optimizer's rule (SGD, momentum, weight decay)
  E11 [12]    L_meta(phi) = L_CE(theta_R(phi); hard batch); phi <- Adam(grad_phi L_meta); the copy is discarded
  E12         hard buffer (capacity 256 = 4 batches in the code): filled with whole training batches,
              then each batch's misclassified samples replace as many slots chosen uniformly at random;
              meta batches are drawn from it without replacement. Without it, the current batch is used.

Detached (the detach map): teacher outputs are computed under `no_grad`; the student-side inputs of both
weight nets (student logits, student Gram matrix) are detached; in the real student step the weights are
computed under `no_grad`, so theta gets first-order gradients only and phi nothing.
Second order: phi enters only the matching loss of the virtual rounds, so grad_phi L_meta is a mixed
second derivative d^2 L_match / d phi d theta carried forward through the later rounds (Hessian-vector
products, `create_graph=True` in `kdlab.meta.unrolled_sgd`). A first-order unroll gives phi no gradient.
Because the student-side inputs are detached at every virtual round (as in the code's Reverse-HG), the
hypergradient omits the path phi -> theta_j -> weight-net input for j >= 1: exact for R = 2 (checked
against finite differences in the tests), the code's approximation for R >= 3.

Where the kit differs from the code, on purpose: a global step counter triggers the meta step every
`meta_every` batches (the code: `idx % meta_freq == 0` within an epoch, plus the last batch); SGD without
Nesterov in both the real and the virtual steps (the code uses Nesterov forward and ignores it backward);
the buffer's last fill is truncated, so any capacity >= the batch size works (the code needs a multiple);
the baselines' weights are distributions and every weighting uses the same loss scale, sum_k w_k l_k
(the authors' CA-MKD code divides once more by K, and its EBKD weights sum to K - 1).

Baselines (logit weights only; their feature term, if beta > 0, uses equal weights as FitNet-MKD):
  AVER   w_ik = 1 / K                                              (Fukuda et al. 2017)
  EBKD   w_ik = (1 - H_ik / sum_j H_ij) / (K - 1), H = entropy of softmax(z^tk_i)   (Kwon et al. 2020,
         as in the authors' CA-MKD code)
  CA-MKD w_ik = (1 - softmax_k(CE(z^tk_i, y_i))) / (K - 1)          (Zhang, Chen, Wang, ICASSP 2022)
"""
import math
import numbers
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config, meta
from ..data.batching import batches
from ..errors import ParameterError
from ..train import History, accuracy, check_finite, make_optimizer, scheduled_lr

WEIGHTINGS = ("mmkd", "aver", "ebkd", "camkd")
LOGIT_INPUTS = ("logits", "probs")
GRAMS = ("normalized", "raw")


# ----------------------------------------------------------------------------------------------- checks

def _choice(name, value, allowed):
    if value not in allowed:
        raise ParameterError(name, value, "one of " + ", ".join(map(repr, allowed)))
    return value


def _int_at_least(name, value, low):
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low):
        raise ParameterError(name, value, f"an integer >= {low}")
    return int(value)


def _num_classes(model, probe=None):
    """The number of classes a model predicts: its `num_classes`, else the width of its logits on `probe`."""
    count = getattr(model, "num_classes", None)
    if count is None and probe is not None:
        with torch.no_grad():
            count = model(probe[:1]).shape[-1]
    return count


def check_teachers(teachers, num_classes=None, probe=None):
    """A list of at least 2 teachers that all predict the same number of classes (the student's, if given)."""
    if isinstance(teachers, nn.Module) or not isinstance(teachers, (list, tuple)) or len(teachers) < 2:
        count = 1 if isinstance(teachers, nn.Module) else (len(teachers) if hasattr(teachers, "__len__") else teachers)
        raise ParameterError("teachers", f"{count} teacher(s)",
                             "a list of at least 2 teachers: multi-teacher distillation weighs several teachers")
    counts = [_num_classes(t, probe) for t in teachers]
    expected = num_classes if num_classes is not None else counts[0]
    if any(c != expected for c in counts):
        raise ParameterError("teachers", f"teachers with class counts {counts}",
                             f"models that all predict the same {expected} classes (the student's number of classes)")
    return list(teachers)


def check_buffer_size(buffer_size, batch_size):
    """The hard buffer must hold at least one meta batch (the meta batch is as large as a training batch)."""
    buffer_size = _int_at_least("buffer_size", buffer_size, 1)
    if buffer_size < batch_size:
        raise ParameterError("buffer_size", buffer_size,
                             f"an integer >= the meta batch size (batch_size={batch_size}): "
                             "a meta batch is drawn from the buffer without replacement")
    return buffer_size


# --------------------------------------------------------------------------------- losses (E1-E2, E4, E7-E8)

def per_teacher_kd(student_logits, teacher_logits, temperature):
    """E2: tau^2 KL(p_t^tau || p_s^tau) for every sample and teacher, shape (B, K).
    `teacher_logits` has shape (B, K, C)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1).unsqueeze(1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return temperature**2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


def per_teacher_feature_mse(student_features, teacher_features):
    """E7: mean squared error between each aligned student feature r_k(F^s) and teacher feature F^tk, (B, K).
    Feature maps are average-pooled to the smaller of the two spatial sizes first."""
    columns = []
    for f_s, f_t in zip(student_features, teacher_features):
        if f_s.dim() == 4 and f_s.shape[-2:] != f_t.shape[-2:]:
            size = min(f_s.shape[-2], f_t.shape[-2]), min(f_s.shape[-1], f_t.shape[-1])
            f_s, f_t = F.adaptive_avg_pool2d(f_s, size), F.adaptive_avg_pool2d(f_t, size)
        columns.append((f_s - f_t).pow(2).flatten(1).mean(1))
    return torch.stack(columns, dim=1)


def weighted_sum(per_teacher, weights):
    """E4 / E8: mean over the batch of sum_k w_ik l_ik."""
    return (weights * per_teacher).sum(dim=1).mean()


# ------------------------------------------------------------------------------- meta-weight nets (E3, E5-E6)

def similarity_matrix(features, normalize=True):
    """E5: the batch Gram matrix G = F F^T of flattened features, (B, B); rows L2-normalised if asked."""
    flat = features.flatten(1)
    gram = flat @ flat.t()
    return F.normalize(gram, dim=1) if normalize else gram


def logit_net_input(teacher_logits, student_logits, mode="logits", temperature=4.0):
    """E3's input a_i = [z^t1_i, ..., z^tK_i, sg(z^s_i)], (B, C(K+1)): raw logits (code) or p^tau (paper)."""
    parts = torch.cat([teacher_logits, student_logits.detach().unsqueeze(1)], dim=1)
    if _choice("logit_input", mode, LOGIT_INPUTS) == "probs":
        parts = F.softmax(parts / temperature, dim=-1)
    return parts.flatten(1)


def feature_net_input(teacher_features, student_feature, gram="normalized"):
    """E6's input b_i = [G^t1_i, ..., G^tK_i, G^s_i], (B, B(K+1)), the student's Gram matrix detached."""
    normalize = _choice("gram", gram, GRAMS) == "normalized"
    grams = [similarity_matrix(f, normalize) for f in teacher_features]
    grams.append(similarity_matrix(student_feature.detach(), normalize))
    return torch.cat(grams, dim=1)


class MetaWeightNet(nn.Module):
    """Two fully connected layers, ReLU then softmax over the K teachers (E3, E6); hidden = in // 2."""

    def __init__(self, in_features, num_teachers, hidden=None):
        super().__init__()
        hidden = hidden or max(in_features // 2, 1)
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_teachers)

    def forward(self, inputs):
        return F.softmax(self.fc2(F.relu(self.fc1(inputs))), dim=-1)


class MMKDNets(nn.Module):
    """phi: the logit meta-weight net (input C(K+1)) and the feature meta-weight net (input B(K+1))."""

    def __init__(self, num_classes, num_teachers, batch_size):
        super().__init__()
        self.logit_net = MetaWeightNet(num_classes * (num_teachers + 1), num_teachers)
        self.feature_net = MetaWeightNet(batch_size * (num_teachers + 1), num_teachers)


# ------------------------------------------------------------------------------------------ baseline weights

def aver_weights(teacher_logits):
    """AVER: equal weights 1/K, shape (B, K)."""
    batch, k = teacher_logits.shape[:2]
    return teacher_logits.new_full((batch, k), 1.0 / k)


def ebkd_weights(teacher_logits):
    """EBKD: (1 - H_k / sum_j H_j) / (K - 1) with H_k the entropy of softmax(z^tk) (T = 1): confident
    teachers weigh more."""
    k = teacher_logits.shape[1]
    log_p = F.log_softmax(teacher_logits, dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return (1.0 - entropy / entropy.sum(dim=1, keepdim=True).clamp_min(1e-12)) / (k - 1)


def camkd_weights(teacher_logits, labels):
    """CA-MKD: (1 - softmax_k(CE(z^tk, y))) / (K - 1): teachers that agree with the label weigh more."""
    k = teacher_logits.shape[1]
    ce = F.cross_entropy(teacher_logits.transpose(1, 2), labels.unsqueeze(1).expand(-1, k), reduction="none")
    return (1.0 - F.softmax(ce, dim=1)) / (k - 1)


# --------------------------------------------------------------------------------- the student and regressors

class Regressor(nn.Module):
    """r_k (E7): Linear-ReLU for feature vectors; conv1x1-BN-ReLU for feature maps (the code's non-`convs` Embed)."""

    def __init__(self, in_channels, out_channels, maps=False):
        super().__init__()
        self.maps = maps
        if maps:
            self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels), nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Linear(in_channels, out_channels), nn.ReLU())

    def forward(self, x):
        return self.body(x)


class DistillationStudent(nn.Module):
    """theta: the student and its K regressors as one module, so that one functional call (and one
    optimizer) covers both. `forward(x)` -> (logits, penultimate feature, [r_k(feature) for each k])."""

    def __init__(self, student, teacher_channels, feature_index=-1, maps=False):
        super().__init__()
        self.student = student
        self.feature_index = feature_index
        channels = student.feature_channels[feature_index]
        self.regressors = nn.ModuleList(Regressor(channels, c, maps) for c in teacher_channels)

    def forward(self, x):
        logits, features = self.student(x, return_features=True)
        feature = features[self.feature_index]
        return logits, feature, [r(feature) for r in self.regressors]


@torch.no_grad()
def teacher_outputs(teachers, x, feature_index=-1, batch_size=1024):
    """Frozen teachers' logits (N, K, C) and penultimate features (one (N, ...) tensor per teacher), eval mode."""
    logits, features = [], [[] for _ in teachers]
    for t in teachers:
        t.eval()
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        row = []
        for k, t in enumerate(teachers):
            z, feats = t(xb, return_features=True)
            row.append(z)
            features[k].append(feats[feature_index])
        logits.append(torch.stack(row, dim=1))
    return torch.cat(logits), [torch.cat(f) for f in features]


# ------------------------------------------------------------------------------------ the objective (E9)

@dataclass(frozen=True)
class Settings:
    """Everything the losses and weights depend on besides the tensors."""

    temperature: float = 4.0
    alpha: float = 1.0
    beta: float = 10.0
    gamma: float = 1.0
    weighting: str = "mmkd"
    logit_weights: bool = True      # False: equal logit weights (ablation "w/o logit weights")
    feature_weights: bool = True    # False: equal feature weights (ablation "w/o feature weights")
    feature_loss: bool = True       # False: no feature term (ablation "w/o feature loss")
    logit_input: str = "logits"
    gram: str = "normalized"

    @property
    def uses_features(self):
        return self.feature_loss and self.beta > 0

    @property
    def learns_weights(self):
        """Whether any weight comes from a meta-weight net (then the meta step has something to train)."""
        return self.weighting == "mmkd" and (self.logit_weights or (self.feature_weights and self.uses_features))


def teacher_weights(nets, output, labels, teacher_logits, teacher_features, settings):
    """(w_logit, w_feat), each (B, K) and a distribution per sample; w_feat is None without a feature term."""
    logits, feature, _ = output
    s = settings
    if s.weighting == "mmkd" and s.logit_weights:
        w_logit = nets.logit_net(logit_net_input(teacher_logits, logits, s.logit_input, s.temperature))
    elif s.weighting == "ebkd":
        w_logit = ebkd_weights(teacher_logits)
    elif s.weighting == "camkd":
        w_logit = camkd_weights(teacher_logits, labels)
    else:
        w_logit = aver_weights(teacher_logits)
    w_feat = None
    if s.uses_features:
        if s.weighting == "mmkd" and s.feature_weights:
            w_feat = nets.feature_net(feature_net_input(teacher_features, feature, s.gram))
        else:
            w_feat = aver_weights(teacher_logits)
    return w_logit, w_feat


def mmkd_losses(output, labels, teacher_logits, teacher_features, w_logit, w_feat, settings, *, matching_only=False):
    """E9 as a dict of named terms: loss = gamma CE + alpha L_logit + beta L_feat (matching_only: no CE, E10)."""
    logits, _, aligned = output
    s = settings
    ce = F.cross_entropy(logits, labels)
    kd = weighted_sum(per_teacher_kd(logits, teacher_logits, s.temperature), w_logit)
    feat = (weighted_sum(per_teacher_feature_mse(aligned, teacher_features), w_feat)
            if w_feat is not None else logits.new_zeros(()))
    loss = s.alpha * kd + s.beta * feat
    if not matching_only:
        loss = loss + s.gamma * ce
    return {"loss": loss, "ce": ce, "kd": kd, "feat": feat}


def student_step(model, nets, optimizer, batch, settings):
    """One real update of theta (student and regressors) on `batch` = (x, y, teacher_logits, *teacher_features).

    The weights are computed under no_grad: constants for theta, and phi is not touched.
    Returns the dict of named losses (detached) and the mask of misclassified samples (for the buffer).
    """
    x, y, t_logits, *t_feats = batch
    output = model(x)
    with torch.no_grad():
        w_logit, w_feat = teacher_weights(nets, output, y, t_logits, t_feats, settings)
    losses = mmkd_losses(output, y, t_logits, t_feats, w_logit, w_feat, settings)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    wrong = output[0].detach().argmax(dim=-1) != y
    named = {name: value.detach() for name, value in losses.items()}
    for k in range(w_logit.shape[1]):
        named[f"w_logit_{k}"] = w_logit[:, k].mean()
        if w_feat is not None:
            named[f"w_feat_{k}"] = w_feat[:, k].mean()
    return named, wrong


# ------------------------------------------------------------------------------------------ hard buffer (E12)

class HardBuffer:
    """A fixed-capacity store of hard training samples (tuples of tensors, first dimension = sample).

    Filling: whole batches are appended until `capacity` samples are held (the last one truncated).
    Then `put` writes each misclassified sample of a batch into a slot drawn uniformly without
    replacement (correctly classified samples never enter a full buffer). `sample` draws a meta batch
    of `batch_size` distinct slots.
    """

    def __init__(self, capacity, batch_size, seed=0):
        self.batch_size = _int_at_least("batch_size", batch_size, 1)
        self.capacity = check_buffer_size(capacity, self.batch_size)
        self.generator = torch.Generator().manual_seed(seed)
        self.store, self.size = None, 0

    @property
    def full(self):
        return self.size == self.capacity

    def __len__(self):
        return self.size

    def put(self, samples, wrong):
        """Add `samples` (a tuple of tensors) given the bool mask `wrong`; returns how many slots were written."""
        samples = tuple(t.detach() for t in samples)
        if self.store is None:
            self.store = tuple(t.new_zeros((self.capacity, *t.shape[1:])) for t in samples)
        if not self.full:
            n = min(len(samples[0]), self.capacity - self.size)
            for slot, t in zip(self.store, samples):
                slot[self.size:self.size + n] = t[:n]
            self.size += n
            return n
        hard = torch.nonzero(wrong.cpu()).flatten()
        if len(hard) > self.capacity:
            hard = hard[torch.randperm(len(hard), generator=self.generator)[:self.capacity]]
        slots = torch.randperm(self.capacity, generator=self.generator)[:len(hard)]
        if len(hard):
            for slot, t in zip(self.store, samples):
                slot[slots.to(slot.device)] = t[hard.to(t.device)]
        return len(hard)

    def sample(self):
        """A meta batch: `batch_size` distinct samples, uniformly from those held."""
        if self.size < self.batch_size:
            raise ParameterError("buffer", f"{self.size} samples held",
                                 f"at least batch_size={self.batch_size} samples before sampling (put first)")
        index = torch.randperm(self.size, generator=self.generator)[:self.batch_size]
        return tuple(slot[index.to(slot.device)] for slot in self.store)


# --------------------------------------------------------------------------------------- meta step (E10-E11)

def meta_objective(model, nets, hard_batch, settings, *, lr, momentum=0.9, weight_decay=5e-4, velocity=None,
                   virtual_steps=3, params=None):
    """L_meta(phi) (E11) after `virtual_steps` differentiable rounds of the student copy on `hard_batch` (E10).

    The copy starts from the current parameters (detached leaves, or `params`) and momentum buffers
    (`velocity`, by name), takes R - 1 matching-only rounds and one CE round with SGD(momentum,
    weight decay), and is scored by CE on the same hard batch. Returns (L_meta, the rounds' losses).
    Nothing of `model` is written.
    """
    virtual_steps = _int_at_least("virtual_steps", virtual_steps, 1)
    if params is None:
        params = {n: p.detach().requires_grad_() for n, p in meta.params_of(model).items()}

    def matching(output, y, t_logits, *t_feats):
        w_logit, w_feat = teacher_weights(nets, output, y, t_logits, t_feats, settings)
        return mmkd_losses(output, y, t_logits, t_feats, w_logit, w_feat, settings, matching_only=True)["loss"]

    def cross_entropy(output, y, *_):
        return F.cross_entropy(output[0], y)

    loss_fns = [matching] * (virtual_steps - 1) + [cross_entropy]
    fast, losses = meta.unrolled_sgd(model, params, loss_fns, [hard_batch] * virtual_steps, lr, momentum,
                                     weight_decay, velocity=velocity)
    x, y = hard_batch[:2]
    return F.cross_entropy(meta.forward(model, fast, x)[0], y), losses


def meta_step(model, nets, meta_optimizer, optimizer, hard_batch, settings, *, lr, momentum=0.9,
              weight_decay=5e-4, virtual_steps=3):
    """One Adam step on phi from the hypergradient of L_meta; the student copy is discarded.

    Continues the real optimizer's trajectory (its momentum buffers); gradients go to phi only
    (`torch.autograd.grad`), so the student's parameters, `.grad` and optimizer state are untouched.
    """
    velocity = meta.momentum_buffers(optimizer, model) if momentum else None
    loss, rounds = meta_objective(model, nets, hard_batch, settings, lr=lr, momentum=momentum,
                                  weight_decay=weight_decay, velocity=velocity, virtual_steps=virtual_steps)
    phi = [p for p in nets.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, phi, allow_unused=True)
    meta_optimizer.zero_grad(set_to_none=True)
    for p, g in zip(phi, grads):
        p.grad = g
    meta_optimizer.step()
    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
    return {"meta_loss": loss.detach(), "virtual_loss": rounds.mean(), "hypergrad_norm": torch.tensor(norm)}


# ------------------------------------------------------------------------------------------------ training

def _check_settings(settings, epochs, lr, batch_size, meta_every, meta_lr, buffer_size, num_train):
    config.check("EPOCHS", epochs)
    config.check("LR", lr)
    config.check("BATCH_SIZE", batch_size)
    config.check("TEMPERATURE", settings.temperature)
    config.check("BETA", settings.beta)
    config.check("GAMMA", settings.gamma)
    config.check("KD_WEIGHT", settings.alpha)
    config.check("META_EVERY", meta_every)
    config.check("META_LR", meta_lr)
    _choice("weighting", settings.weighting, WEIGHTINGS)
    _choice("logit_input", settings.logit_input, LOGIT_INPUTS)
    _choice("gram", settings.gram, GRAMS)
    if batch_size > num_train:
        raise ParameterError("batch_size", batch_size, f"at most the {num_train} training samples "
                             "(MMKD uses full batches only: the feature meta-net's width is batch_size * (K + 1))")
    check_buffer_size(buffer_size, batch_size)


def train_mmkd(student, teachers, data, *, epochs, lr=0.05, batch_size=64, temperature=4.0, alpha=1.0, beta=10.0,
               gamma=1.0, meta_every=5, buffer_size=256, meta_lr=1e-3, meta_weight_decay=1e-4, virtual_steps=3,
               weighting="mmkd", hard_buffer=True, logit_weights=True, feature_weights=True, feature_loss=True,
               logit_input="logits", gram="normalized", momentum=0.9, weight_decay=5e-4, schedule="cosine",
               feature_index=-1, seed=0, eval_every=None, augment=None, callbacks=()):
    """Train `student` from K frozen `teachers` on `data` (a DataSplits) with MMKD or a baseline weighting.

    weighting "mmkd" learns per-sample weights (meta step every `meta_every` batches on a hard batch);
    "aver", "ebkd", "camkd" use the fixed formulas of the module docstring. The ablations of the paper's
    Figure 5 are `hard_buffer=False`, `logit_weights=False`, `feature_weights=False`, `feature_loss=False`.
    Only full batches are used (the feature meta-net's width depends on the batch size). Teachers' outputs
    are computed once for the whole training set unless `augment(x, generator)` changes the inputs.
    Returns (student, History, nets): History records per epoch the mean of every named loss, the mean
    teacher weights `w_logit_k` / `w_feat_k`, `meta_loss`, `buffer_writes`, `lr`, `seconds`, accuracies.
    """
    settings = Settings(temperature, alpha, beta, gamma, weighting, logit_weights, feature_weights, feature_loss,
                        logit_input, gram)
    _check_settings(settings, epochs, lr, batch_size, meta_every, meta_lr, buffer_size, data.num_train)
    teachers = check_teachers(teachers, _num_classes(student, data.x_train), data.x_train)
    virtual_steps = _int_at_least("virtual_steps", virtual_steps, 1)
    learns = settings.learns_weights
    buffer = HardBuffer(buffer_size, batch_size, seed) if learns and hard_buffer else None
    eval_every = eval_every or epochs

    cached = None
    if augment is None:
        cached = teacher_outputs(teachers, data.x_train, feature_index)
    else:
        for t in teachers:
            t.eval()
    with torch.no_grad():
        _, probe = teacher_outputs(teachers, data.x_train[:2], feature_index)
    maps = probe[0].dim() == 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DistillationStudent(student, [f.shape[1] for f in probe], feature_index, maps)
        model = model.to(device=data.x_train.device, dtype=data.x_train.dtype)
        nets = MMKDNets(data.num_classes, len(teachers), batch_size).to(data.x_train.device, data.x_train.dtype)
    optimizer = make_optimizer(model.parameters(), "sgd", lr, momentum, weight_decay)
    meta_optimizer = torch.optim.Adam(nets.parameters(), lr=meta_lr, weight_decay=meta_weight_decay)
    generator = torch.Generator().manual_seed(seed)
    index = torch.arange(data.num_train, device=data.x_train.device)
    history, step = History(), 0
    model.train()
    for epoch in range(epochs):
        epoch_lr = scheduled_lr(lr, schedule, epoch, epochs)
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr
        start, sums, count, meta_sums, meta_count = time.perf_counter(), {}, 0, {}, 0
        for i, (idx, y) in enumerate(batches(index, data.y_train, batch_size, generator=generator, drop_last=True)):
            x = data.x_train[idx]
            if augment is None:
                t_logits, t_feats = cached[0][idx], [f[idx] for f in cached[1]]
            else:
                x = augment(x, generator)
                t_logits, t_feats = teacher_outputs(teachers, x, feature_index)
            batch = (x, y, t_logits, *t_feats)
            losses, wrong = student_step(model, nets, optimizer, batch, settings)
            check_finite(losses, epoch, i, epoch_lr)
            if buffer is not None:
                losses["buffer_writes"] = torch.tensor(float(buffer.put(batch, wrong)))
            if learns and step % meta_every == 0:
                hard = buffer.sample() if buffer is not None else batch
                out = meta_step(model, nets, meta_optimizer, optimizer, hard, settings, lr=epoch_lr,
                                momentum=momentum, weight_decay=weight_decay, virtual_steps=virtual_steps)
                for name, value in out.items():
                    meta_sums[name] = meta_sums.get(name, 0.0) + float(value)
                meta_count += 1
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            count += 1
            step += 1
        record = {"epoch": epoch + 1, "lr": epoch_lr, "seconds": time.perf_counter() - start}
        record.update({name: total / max(count, 1) for name, total in sums.items() if name != "buffer_writes"})
        if "buffer_writes" in sums:
            record["buffer_writes"] = int(sums["buffer_writes"])  # slots written this epoch (fills + hard samples)
        record.update({name: total / meta_count for name, total in meta_sums.items()})
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            record["train_acc"] = accuracy(student, data.x_train, data.y_train)
            record["test_acc"] = accuracy(student, data.x_test, data.y_test)
        history.append(record)
        if any(callback(history, student) for callback in callbacks):
            break
    model.eval()
    nets.eval()
    return student, history, nets


@torch.no_grad()
def weights_on(nets, student, teachers, x, y, *, weighting="mmkd", batch_size=64, temperature=4.0,
               logit_input="logits", gram="normalized", feature_index=-1):
    """Per-sample teacher weights (logit, feature) on inputs `x` as the trained nets (or a baseline) give
    them, in eval mode; only whole batches of `batch_size` (the feature net's width), so N // B * B rows."""
    student_was = student.training
    student.eval()
    settings = Settings(temperature=temperature, weighting=weighting, logit_input=logit_input, gram=gram, beta=1.0)
    t_logits, t_feats = teacher_outputs(teachers, x, feature_index)
    n = len(x) // batch_size * batch_size
    w_logit, w_feat = [], []
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        logits, features = student(x[sl], return_features=True)
        output = (logits, features[feature_index], None)
        wl, wf = teacher_weights(nets, output, y[sl], t_logits[sl], [f[sl] for f in t_feats], settings)
        w_logit.append(wl)
        w_feat.append(wf)
    student.train(student_was)
    return torch.cat(w_logit), torch.cat(w_feat)
