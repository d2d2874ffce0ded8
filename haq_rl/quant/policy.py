"""QuantPolicy: the ordered mapping layer name -> (w_bits, a_bits) and its policy.json format."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from haq_rl.errors import MissingPathError, PolicyError, UnknownNameError
from haq_rl.fileio import MAX_JSON_DEPTH, json_depth, write_json_atomic

if TYPE_CHECKING:  # pandas is imported lazily: the search hot path never needs it
    import pandas as pd

FORMAT_VERSION = 1
_RESERVED_KEYS = ("format_version", "layers")


class QuantPolicy:
    """An ordered layer name -> (w_bits, a_bits) mapping plus free-form metadata.

    ``a_bits`` of a layer applies to the tensor *entering* that layer (HAQ's convention).
    The constructor checks types only; :meth:`validate` checks a policy against a model's
    layer names and a bit range.

    Arguments:
        layers: mapping or sequence of ``(name, w_bits, a_bits)`` / ``name -> (w_bits, a_bits)``.
        metadata: JSON-serialisable extras (model, profile name and hash, metrics, ...).
    """

    __slots__ = ("_layers", "metadata")

    def __init__(self, layers: Mapping[str, Sequence[int]] | Iterable[Sequence[Any]],
                 metadata: Mapping[str, Any] | None = None) -> None:
        items: list[tuple[str, Sequence[int]]]
        if isinstance(layers, Mapping):
            items = [(name, bits) for name, bits in layers.items()]
        else:
            rows = cast(Iterable[Sequence[Any]], layers)  # not a Mapping: (name, w, a) rows
            items = [(row[0], tuple(row[1:])) for row in rows]
        parsed: dict[str, tuple[int, int]] = {}
        for name, bits in items:
            if not isinstance(name, str) or not name:
                raise PolicyError(f"policy layer names must be non-empty strings, got {name!r}")
            if name in parsed:
                raise PolicyError(f"policy lists layer {name!r} twice")
            if len(bits) != 2:
                raise PolicyError(f"layer {name!r}: expected (w_bits, a_bits), got {bits!r}")
            parsed[name] = (_as_bits(name, "w_bits", bits[0]), _as_bits(name, "a_bits", bits[1]))
        if not parsed:
            raise PolicyError("a policy needs at least one layer")
        self._layers = parsed
        self.metadata: dict[str, Any] = dict(metadata or {})

    # ----------------------------------------------------------------- constructors
    @classmethod
    def uniform(cls, names: Iterable[str], w: int, a: int, **metadata: Any) -> QuantPolicy:
        """Same ``w`` weight bits and ``a`` activation bits for every layer of ``names``."""
        return cls([(name, w, a) for name in names], metadata)

    @classmethod
    def from_arrays(cls, names: Sequence[str], w_bits: Sequence[int] | np.ndarray,
                    a_bits: Sequence[int] | np.ndarray,
                    **metadata: Any) -> QuantPolicy:
        """Build from parallel sequences (e.g. the env's per-layer actions)."""
        if not len(names) == len(w_bits) == len(a_bits):
            raise PolicyError(f"names/w_bits/a_bits lengths differ: "
                              f"{len(names)}, {len(w_bits)}, {len(a_bits)}")
        return cls([(n, int(w), int(a)) for n, w, a in zip(names, w_bits, a_bits, strict=True)], metadata)

    # ----------------------------------------------------------------- views
    @property
    def layer_names(self) -> list[str]:
        """Layer names in policy order."""
        return list(self._layers)

    @property
    def w_bits(self) -> np.ndarray:
        """Weight bits per layer (int64 array, policy order)."""
        return np.array([b[0] for b in self._layers.values()], dtype=np.int64)

    @property
    def a_bits(self) -> np.ndarray:
        """Activation (layer input) bits per layer (int64 array, policy order)."""
        return np.array([b[1] for b in self._layers.values()], dtype=np.int64)

    def __getitem__(self, name: str) -> tuple[int, int]:
        try:
            return self._layers[name]
        except KeyError:
            raise UnknownNameError("layer", name, self._layers) from None

    def __contains__(self, name: object) -> bool:
        return name in self._layers

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def items(self) -> Iterator[tuple[str, tuple[int, int]]]:
        """``(name, (w_bits, a_bits))`` in policy order."""
        return iter(self._layers.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantPolicy):
            return NotImplemented
        return list(self._layers.items()) == list(other._layers.items())

    def __hash__(self) -> int:
        return hash(tuple(self._layers.items()))

    def __repr__(self) -> str:
        w, a = self.w_bits, self.a_bits
        return (f"QuantPolicy({len(self)} layers, w_bits={w.tolist()}, a_bits={a.tolist()})"
                if len(self) <= 8 else
                f"QuantPolicy({len(self)} layers, mean w_bits={w.mean():.2f}, "
                f"mean a_bits={a.mean():.2f})")

    def to_frame(self) -> pd.DataFrame:
        """pandas DataFrame indexed by layer name with columns ``w_bits``, ``a_bits``."""
        import pandas as pd

        return pd.DataFrame({"w_bits": self.w_bits, "a_bits": self.a_bits},
                            index=pd.Index(self.layer_names, name="layer"))

    # ----------------------------------------------------------------- validation
    def validate(self, layer_names: Sequence[str], min_bits: int = 2,
                 max_bits: int = 8) -> QuantPolicy:
        """Check the policy covers exactly ``layer_names`` with bits in [min_bits, max_bits].

        Returns the policy re-ordered to ``layer_names`` order (``self`` when already in order).

        Raises:
            UnknownNameError: a policy layer that the model lacks (with "did you mean").
            PolicyError: layers missing, a policy of another model, or bits out of range.
        """
        known = list(layer_names)
        known_set = set(known)
        extra = [n for n in self._layers if n not in known_set]
        missing = [n for n in known if n not in self._layers]
        if extra or missing:
            shared = len(self._layers) - len(extra)
            # Mostly disjoint name sets: the policy was made for another model. A few
            # stray names are more likely typos, which deserve a "did you mean".
            if shared < max(1, len(known) // 2) or (extra and missing and len(extra) > 2):
                raise PolicyError(
                    f"policy does not match this model ({len(known)} quantizable layers): "
                    f"missing layers {_short(missing)}, extra layers {_short(extra)}")
            if extra:
                raise UnknownNameError("layer", extra[0], known)
            raise PolicyError(f"policy does not cover every quantizable layer: "
                              f"missing {_short(missing)}")
        for name, (w, a) in self._layers.items():
            for field, value in (("w_bits", w), ("a_bits", a)):
                if not min_bits <= value <= max_bits:
                    raise PolicyError(f"layer {name!r}: {field}={value} outside the allowed "
                                      f"range [{min_bits}, {max_bits}]")
        if list(self._layers) == known:
            return self
        return QuantPolicy([(n, *self._layers[n]) for n in known], self.metadata)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self, **metadata: Any) -> dict[str, Any]:
        """The policy.json payload: format_version, layers, then metadata keys."""
        extras = {**self.metadata, **metadata}
        for key in _RESERVED_KEYS:
            if key in extras:
                raise PolicyError(f"metadata key {key!r} is reserved by the policy format")
        return {"format_version": FORMAT_VERSION,
                "layers": {n: {"w_bits": w, "a_bits": a} for n, (w, a) in self._layers.items()},
                **extras}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> QuantPolicy:
        """Inverse of :meth:`to_dict`; unknown top-level keys become :attr:`metadata`."""
        if not isinstance(payload, Mapping):
            raise PolicyError(f"policy must be a JSON object, got {type(payload).__name__}")
        version = payload.get("format_version")
        if version != FORMAT_VERSION:
            raise PolicyError(f"unsupported policy format_version {version!r} "
                              f"(this haq-rl reads {FORMAT_VERSION})")
        layers = payload.get("layers")
        if not isinstance(layers, Mapping):
            raise PolicyError("policy has no 'layers' object")
        rows = []
        for name, entry in layers.items():
            if not isinstance(entry, Mapping) or "w_bits" not in entry or "a_bits" not in entry:
                raise PolicyError(f"layer {name!r}: expected {{'w_bits': int, 'a_bits': int}}, "
                                  f"got {entry!r}")
            rows.append((name, entry["w_bits"], entry["a_bits"]))
        meta = {k: v for k, v in payload.items() if k not in _RESERVED_KEYS}
        return cls(rows, meta)

    def to_json(self, path: str | os.PathLike[str], **metadata: Any) -> Path:
        """Write policy.json atomically (temp file + rename); extra metadata is merged in."""
        return write_json_atomic(path, self.to_dict(**metadata))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> QuantPolicy:
        """Read a policy.json; its metadata is available as ``.metadata``."""
        path = Path(path)
        if not path.is_file():
            raise MissingPathError(f"policy file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise PolicyError(f"{path} is not a policy file (not UTF-8 text)") from None
        if json_depth(text) > MAX_JSON_DEPTH:  # json.loads would end in a RecursionError
            raise PolicyError(f"{path} is not a policy file: nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:  # exc.msg may end in "at" ("... starting at")
            raise PolicyError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        return cls.from_dict(payload)


def _as_bits(name: str, field: str, value: Any) -> int:
    """Accept ints (and integral numpy/float values); reject bools and fractions."""
    if isinstance(value, (bool, np.bool_)):
        raise PolicyError(f"layer {name!r}: {field}={value!r} is not an integer")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise PolicyError(f"layer {name!r}: {field}={value!r} is not an integer")


def _short(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}{more}]"
