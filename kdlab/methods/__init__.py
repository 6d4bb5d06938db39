"""One file per method, trained by the one loop (`kdlab.train.fit`, or `fit_episodes` for few-shot methods).

- `base`: the `Method` protocol (a step returning named losses; optional hooks); `kd`: plain training and
  Hinton KD, the template to copy; `registry`: every method by name, with its card.
- `metadistil`: the teacher learns to teach from the student's quiz loss, with a pilot update.
- `metadistiller`: a meta-learned top-down label generator for self-distillation across exits.
- `mmkd` (+ `mmkd_baselines`): a meta-weight network mixes several teachers per sample, on a hard buffer.
- `maml`, `tsmd` (+ `tsmd_settings`, `tsmd_reptile`): MAML; TSMD adapts a big teacher per task and the
  adapted teacher guides a compact student.
- `feature_meta`: hybrid MSE + cosine feature distillation with a MAML adaptation phase.

Modules are imported by name (`from kdlab.methods import metadistil`), so importing one never loads the rest.
"""
