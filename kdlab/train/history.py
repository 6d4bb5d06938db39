"""What a training run leaves behind: one record (a dict) per epoch, or per logging window of episodes."""
from dataclasses import dataclass, field


@dataclass
class History:
    """One record per epoch; `series("test_acc")` gives a column. `steps` holds per-step records for the
    methods that log them (MetaDistil's teacher dynamics); `interrupted` is True after the stop button."""

    records: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    interrupted: bool = False
    global_steps: int = 0  # optimisation steps taken over all fits, so a resumed run continues the count

    def append(self, record):
        self.records.append(record)

    def series(self, key):
        return [r[key] for r in self.records if key in r]

    def step_series(self, key):
        return [r[key] for r in self.steps if r.get(key) is not None]

    @property
    def last(self):
        return self.records[-1] if self.records else {}

    @property
    def epochs_done(self):
        return len(self.records)

    def __len__(self):
        return len(self.records)
