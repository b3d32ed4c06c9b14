"""A saved map (`embed-scores --save-map`, `--map`): everything needed to place new rows on a fitted
UMAP map without fitting again, as arrays and JSON (a Parquet table and its metadata), never a
pickle: loading one runs no code.

The table holds the fit sample's vectors (float32, as UMAP was fitted on them), their map
coordinates (UMAP's float32 embedding) and, in its first rows, the centres of the k-means cells of
the neighbour index the transform searches (so a map run does not run the k-means again; a map
saved by kscore 0.8.10 or earlier lacks them, and its index is built as it was then); the JSON
holds UMAP's parameters and the few values its fit derived that its transform reads. `umap_model`
rebuilds a model that transforms exactly as the fitted one did.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from kscore.errors import InputError

# The format of the JSON; a map of another format is refused (exit 2), never guessed at.
MAP_FORMAT = 1
# UMAP's parameters the map is made with, kept as given to `umap.UMAP`.
_PARAMETERS = ("n_neighbors", "min_dist", "metric", "seed", "fit_epochs", "transform_epochs")
# Kept where the run had them: the order of the distinct rows' transform batches ("input"; a map
# without it was saved by kscore 0.8.7 or earlier, which took them in the order of their hashes).
_OPTIONAL = ("distinct_order",)
# What UMAP's fit derives and its transform reads (umap-learn 0.5): kept, not derived again.
_DERIVED = ("a", "b", "small_data", "disconnection_distance", "n_neighbors_fitted", "initial_alpha")


@dataclass
class SavedMap:
    """A fitted UMAP map: the fit sample's `vectors` (float32, n x width), their `coordinates`
    (float32, n x 2), UMAP's `parameters`, the values its fit `derived`, and the `centers` of its
    neighbour index's cells (float32, `cell_count(n)` x width; None: run the k-means to find them)."""

    vectors: np.ndarray
    coordinates: np.ndarray
    parameters: dict[str, Any]
    derived: dict[str, Any]
    centers: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def metric(self) -> str:
        return str(self.parameters["metric"])

    @classmethod
    def of(cls, model: Any, parameters: dict[str, Any]) -> SavedMap:
        """The map of a fitted `umap.UMAP` (`parameters`: the reduction's, as in the output's metadata)."""
        derived = {
            "a": float(model._a),
            "b": float(model._b),
            "small_data": bool(model._small_data),
            "disconnection_distance": float(model._disconnection_distance),
            "n_neighbors_fitted": int(model._n_neighbors),
            "initial_alpha": float(model._initial_alpha),
        }
        kept = {key: parameters[key] for key in _PARAMETERS}
        kept.update({key: parameters[key] for key in _OPTIONAL if key in parameters})
        centers = getattr(model._knn_search_index, "centers", None)  # kscore's index (`CellNeighbors`)
        return cls(
            np.ascontiguousarray(model._raw_data, dtype=np.float32),
            np.ascontiguousarray(model.embedding_, dtype=np.float32),
            kept,
            derived,
            None if centers is None else np.ascontiguousarray(centers, dtype=np.float32),
        )

    def record(self) -> dict[str, Any]:
        """The JSON half (the table holds the arrays)."""
        return {
            "format": MAP_FORMAT,
            "width": self.width,
            "rows": len(self.vectors),
            "parameters": self.parameters,
            "derived": {
                k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in self.derived.items()
            },
        }

    @classmethod
    def from_parts(
        cls,
        record: Any,
        vectors: np.ndarray,
        coordinates: np.ndarray,
        where: str,
        centers: np.ndarray | None = None,
    ) -> SavedMap:
        """A map from its JSON and arrays, checked: exit 2 naming what does not fit."""
        from kscore.core.neighbors import cell_count

        if not isinstance(record, dict):
            raise InputError(f"{where}: not a saved map (save one with embed-scores --save-map)")
        if record.get("format") != MAP_FORMAT:
            raise InputError(
                f"{where}: a map of format {record.get('format')!r}; this kscore reads format {MAP_FORMAT}: "
                "save the map again with this version"
            )
        parameters, derived = record.get("parameters"), record.get("derived")
        if not isinstance(parameters, dict) or not isinstance(derived, dict):
            raise InputError(f"{where}: the map's 'parameters' or 'derived' is not an object; save it again")
        for key in (*_PARAMETERS, *_DERIVED):
            if key not in (parameters if key in _PARAMETERS else derived):
                raise InputError(f"{where}: the map lacks {key!r}; save it again")
        if parameters.get("distinct_order", "hash") not in ("input", "hash"):
            raise InputError(
                f"{where}: the map's distinct_order {parameters['distinct_order']!r} is not input or hash"
            )
        if parameters["metric"] not in ("euclidean", "cosine"):
            raise InputError(f"{where}: the map's metric {parameters['metric']!r} is not euclidean or cosine")
        numbers = {k: derived[k] for k in ("a", "b", "initial_alpha")}
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in numbers.values()
        ):
            raise InputError(f"{where}: the map's {numbers} are not finite numbers; save it again")
        rows = len(vectors)
        if vectors.ndim != 2 or coordinates.shape != (rows, 2) or rows < 2:
            raise InputError(f"{where}: the map's vectors and coordinates do not match; save it again")
        if record.get("width") != vectors.shape[1] or record.get("rows") != rows:
            raise InputError(
                f"{where}: the map holds {rows} x {vectors.shape[1]}, not what it says; save it again"
            )
        if not (np.isfinite(vectors).all() and np.isfinite(coordinates).all()):
            raise InputError(f"{where}: the map holds non-finite values; save it again")
        if centers is not None and (
            centers.shape != (cell_count(rows), vectors.shape[1]) or not np.isfinite(centers).all()
        ):
            raise InputError(
                f"{where}: the map's {len(centers)} cell centres are not the {cell_count(rows)} finite ones "
                "its index has; save it again"
            )
        distance = derived["disconnection_distance"]
        derived = {**derived, "disconnection_distance": math.inf if distance is None else float(distance)}
        return cls(vectors, coordinates, parameters, derived, centers)

    def search_index(self) -> Any:
        """The neighbour index the map's transform searches (`CellNeighbors` of the fit sample),
        built once: by a thread `build_index_meanwhile` started, or here."""
        if self.__dict__.get("_index") is None:
            self.build_index_meanwhile()
        return self.__dict__["_index"].result()

    def build_index_meanwhile(self) -> None:
        """Start building `search_index()` in a thread, so that it overlaps the reading of the
        embeddings, which releases the GIL: the saved centres' cells (0.1 s for 20,000 x 384), or,
        in a map without them, scikit-learn's import and a k-means (about 1 s)."""
        from concurrent.futures import Future

        future: Future = Future()

        def build() -> None:
            try:
                from kscore.core.neighbors import CellNeighbors

                future.set_result(
                    CellNeighbors(self.vectors, self.metric, self.parameters["seed"], self.centers)
                )
            except BaseException as exc:  # handed to `search_index`'s caller
                future.set_exception(exc)

        self.__dict__["_index"] = future
        threading.Thread(target=build, name="kscore-map-index", daemon=True).start()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_index"}  # no thread's future

    def umap_model(self, index: Any = None) -> Any:
        """A `umap.UMAP` that transforms new rows exactly as the model this map was saved from: its
        parameters, its fit sample and embedding, and the values its fit derived; `index` is
        `search_index()`, built here if not given."""
        import umap

        p, d = self.parameters, self.derived
        seed = p["seed"]
        model = umap.UMAP(
            n_components=2,
            n_neighbors=p["n_neighbors"],
            min_dist=p["min_dist"],
            metric=p["metric"],
            random_state=seed,
            transform_seed=seed if seed is not None else 42,
            n_jobs=1,
            low_memory=True,
            n_epochs=3 * int(p["transform_epochs"]),  # umap's transform runs n_epochs // 3 epochs
        )
        model._raw_data = self.vectors
        model._initial_alpha = d["initial_alpha"]
        model._validate_parameters()
        model.embedding_ = self.coordinates
        model._a, model._b = d["a"], d["b"]
        model._small_data = d["small_data"]
        model._disconnection_distance = d["disconnection_distance"]
        model._n_neighbors = d["n_neighbors_fitted"]
        model._input_hash = None
        model._knn_search_index = self.search_index() if index is None else index
        return model
