"""What ``face3d serve`` runs: the model, batching and limits of one service (``ServeConfig``), with no web
framework imported, so the command line reads its defaults without FastAPI installed."""
import dataclasses
import json
from dataclasses import dataclass, field

from face3d.serve.limits import Limits

__all__ = ["ServeConfig"]


@dataclass(frozen=True)
class ServeConfig:
    """What ``face3d serve`` runs.

    Attributes:
        model: any model ``face3d.prnet.predictor.load_predictor`` reads (``.onnx`` needs no TensorFlow).
        uv_data: UV-data folder the network was trained with (None: the default).
        bfm: morphable model of the UV data, for the pose's canonical face (None: the embedded default; not read
            when the UV data has its own canonical face: ``face3d.prnet.inference.PRN``).
        max_batch, max_delay_ms: dynamic batching (``DynamicBatcher``).
        threads: threads for decoding, cropping and post-processing.
        model_threads: ONNX Runtime intra-op threads (None: all cores).
        detector: dlib detector kind ('auto', 'cnn', 'hog') used when a request has no box nor landmarks ('auto':
            none when dlib is missing; ``app.load_reconstructor``).
        limits: Limits.
        trust_model: run a frozen ``.pb`` / SavedModel whatever op types its graph holds (``load_predictor``).
    """
    model: str
    uv_data: str | None = None
    bfm: str | None = None
    max_batch: int = 8
    max_delay_ms: float = 5.0
    threads: int = 2
    model_threads: int | None = None
    detector: str = "auto"
    limits: Limits = field(default_factory=Limits)
    trust_model: bool = False

    def to_json(self):
        """The config as a JSON string (``from_json`` reads it back)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        """A ServeConfig from ``to_json``'s string."""
        values = json.loads(text)
        return cls(**{**values, "limits": Limits(**values["limits"])})
