"""Several meters as one: the CPU package (RAPL) and the GPUs (NVML) of a GPU node, in one window."""

from __future__ import annotations

from .base import Measurement, Meter


class CombinedMeter(Meter):
    """One window over several meters of distinct hardware (e.g. ``CombinedMeter(NvmlMeter(),
    RaplMeter())``).

    The window synchronises every part (the GPUs' queued work is waited for) before any part reads
    its counters, at both edges; parts begin and end in the order given. The measurement's
    ``joules`` is the sum of the parts', ``domains`` and ``devices`` the union of theirs (each
    domain reported: ``package-0``, ``package-0/dram``, ``cuda:0`` …; a label two parts share is
    prefixed with the part's name, and its position when two parts share a name: ``nvml#1:cuda:0``), ``estimated`` is true when any part estimates, ``valid`` when
    every part is, ``source`` joins the parts' sources with ``+`` (``nvml+rapl``). The parts must
    meter distinct hardware: a CPU-time estimate beside RAPL would count the CPU twice.
    """

    name = "combined"

    def __init__(self, *meters: Meter):
        if len(meters) < 2:
            raise ValueError("CombinedMeter needs at least two meters")
        for m in meters:
            if not isinstance(m, Meter):
                raise TypeError(f"CombinedMeter parts must be Meters, got {type(m).__name__}")
        self.meters = list(meters)
        self.name = "+".join(m.name for m in meters)
        self.strict = any(m.strict for m in meters)

    @property
    def source(self) -> str:
        return "+".join(m.source for m in self.meters)

    @property
    def estimated(self) -> bool:
        return any(m.estimated for m in self.meters)

    def describe(self) -> str:
        return " + ".join(m.describe() for m in self.meters)

    def synchronize(self) -> None:
        for m in self.meters:
            m.synchronize()

    def _begin(self):
        states = []
        try:
            for m in self.meters:
                states.append(m._begin())
        except BaseException:
            self._abandon(states)
            raise
        return states

    def _abandon(self, states) -> None:
        for m, state in zip(self.meters, states):
            try:
                m._end(state, Measurement(source=m.source, estimated=m.estimated))
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass

    def _end(self, states, m) -> None:
        parts, error = [], None
        for meter, state in zip(self.meters, states):  # every part is ended, even after a failure
            part = Measurement(source=meter.source, estimated=meter.estimated, seconds=m.seconds)
            try:
                meter._end(state, part)
            except Exception as e:  # noqa: BLE001 - re-raised once the other parts are closed
                error = error or e
            parts.append((meter, part))
        if error is not None:
            raise error
        labels = [label for _, part in parts for label in part.domains]
        shared = {label for label in labels if labels.count(label) > 1}
        names = [meter.name for meter, _ in parts]
        for i, (meter, part) in enumerate(parts):
            prefix = meter.name if names.count(meter.name) == 1 else f"{meter.name}#{i}"
            for label, joules in part.domains.items():
                key = f"{prefix}:{label}" if label in shared else label
                m.domains[key] = joules
                if label in part.devices:
                    m.devices[key] = part.devices[label]
            m.notes.extend(f"{meter.name}: {note}" for note in part.notes)
        m.joules = sum(part.joules for _, part in parts)
        m.estimated = any(part.estimated for _, part in parts)
        m.valid = all(part.valid for _, part in parts)
