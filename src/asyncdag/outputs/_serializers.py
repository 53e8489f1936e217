"""How a value becomes bytes in the output store and back: one serializer per output.

Pickle is the default because it takes any Python value; where plain pickle
cannot (a lambda, a class defined in ``__main__`` or inside a function),
cloudpickle pickles it by value, and the result still loads with plain
``pickle.loads``.  An output whose value should be readable by other tools
(JSON for a small document, Parquet for a table) names its own serializer with
``Out(serializer=...)``.  A serializer is any object with a ``name`` (recorded
with the stored output), an ``extension`` (the stored file's suffix), and
``dump(value, file)`` / ``load(file)`` over a binary file object, so a large
value streams to its destination instead of being held twice in memory::

    class ParquetSerializer(Serializer):
        name = "parquet"
        extension = ".parquet"

        def dump(self, value, file):
            value.to_parquet(file)            # a pandas DataFrame

        def load(self, file):
            import pandas
            return pandas.read_parquet(file)
"""

from __future__ import annotations

import abc
import json
import pickle
from typing import IO, Any

__all__ = ["JsonSerializer", "PickleSerializer", "Serializer", "builtin_serializer"]


class Serializer(abc.ABC):
    """Writes a value to a binary file and reads it back.

    Subclass it (or write any class with the same four members).  ``dump``
    raises what it raises for a value it cannot write (a ``TypeError``...): the
    store turns that into an error naming the step, the output and the type.
    """

    #: Recorded with every stored output, so a reader knows how it was written.
    name: str = ""
    #: The stored file's suffix, with its dot (``".parquet"``).
    extension: str = ""

    @abc.abstractmethod
    def dump(self, value: Any, file: IO[bytes]) -> None: ...

    @abc.abstractmethod
    def load(self, file: IO[bytes]) -> Any: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PickleSerializer(Serializer):
    """Any picklable value; cloudpickle for what plain pickle cannot take (the default)."""

    name = "pickle"
    extension = ".pkl"

    def dump(self, value: Any, file: IO[bytes]) -> None:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as plain:
            import cloudpickle  # only for what plain pickle cannot take: lambdas, __main__ classes

            try:
                data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                raise plain from None  # the plain error says best what cannot be pickled
        file.write(data)

    def load(self, file: IO[bytes]) -> Any:
        return pickle.load(file)


class JsonSerializer(Serializer):
    """Strict JSON (no NaN or infinity), UTF-8: for values other tools read."""

    name = "json"
    extension = ".json"

    def dump(self, value: Any, file: IO[bytes]) -> None:
        file.write(json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8"))

    def load(self, file: IO[bytes]) -> Any:
        return json.loads(file.read().decode("utf-8"))


_BUILTIN: dict[str, Serializer] = {s.name: s for s in (PickleSerializer(), JsonSerializer())}


def builtin_serializer(name: str) -> Serializer | None:
    """The built-in serializer called ``name`` (``"pickle"``, ``"json"``), or None."""
    return _BUILTIN.get(name)
