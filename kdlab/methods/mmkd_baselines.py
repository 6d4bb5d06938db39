"""The fixed teacher weightings MMKD is compared with (its Table I), each a (B, K) distribution per sample:

  AVER   w_ik = 1 / K                                              (Fukuda et al. 2017)
  EBKD   w_ik = (1 - H_ik / sum_j H_ij) / (K - 1), H = entropy of softmax(z^tk_i)   (Kwon et al. 2020,
         as in the authors' CA-MKD code)
  CA-MKD w_ik = (1 - softmax_k(CE(z^tk_i, y_i))) / (K - 1)          (Zhang, Chen, Wang, ICASSP 2022)

Every weighting uses the same loss scale, sum_k w_ik l_ik (the authors' CA-MKD code divides once more
by K, and its EBKD weights sum to K - 1). `kdlab.methods.mmkd` trains with them via `weighting=`.
"""
import torch.nn.functional as F


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


def fixed_weights(weighting, teacher_logits, labels):
    """The (B, K) weights of a fixed weighting: "ebkd", "camkd", anything else AVER."""
    if weighting == "ebkd":
        return ebkd_weights(teacher_logits)
    if weighting == "camkd":
        return camkd_weights(teacher_logits, labels)
    return aver_weights(teacher_logits)
