"""One file per paper method; each has the paper's equations in its docstring and a step function that
returns a dict of named losses (the mdistiller convention).

- `metadistil`: the teacher learns to teach from the student's quiz loss, with a pilot update.
- `metadistiller`: a meta-learned top-down label generator for self-distillation across exits.
- `mmkd`: a meta-weight network mixes several teachers per sample, trained on a hard buffer.
- `tsmd`: MAML adapts a big teacher per task; the adapted teacher guides a compact student.
- `feature_meta`: hybrid MSE + cosine feature distillation with a MAML adaptation phase.

Modules are imported by name (`from kdlab.methods import metadistil`), so importing one never loads the rest.
"""
