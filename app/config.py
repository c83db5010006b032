"""Settings from the environment (or a .env file), checked at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# INT8 (training/quantize.py): ~2.5× faster than the float32 export at the same validation score.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "nuclei-unet.int8.onnx"


class Settings(BaseSettings):
    """Every field is read from the upper-case environment variable of the same name."""

    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", protected_namespaces=())

    model_path: Path = Field(DEFAULT_MODEL, description="the default model (ONNX; its card is the .json beside it)")
    models_dir: Path | None = Field(
        None, description="folder whose every *.onnx (with its card) is served too, by the card's name, "
                          "picked up without a restart (docs/models.md); unset: MODEL_PATH's folder")
    host: str = Field("127.0.0.1", description="interface to bind (0.0.0.0 in containers)")
    port: int = Field(8000, ge=1, le=65535)
    max_upload_bytes: int = Field(50 * 2**20, ge=1024, description="larger uploads get 413")
    max_pixels: int = Field(4096 * 4096, ge=1, description="images with more pixels get 413")
    intra_op_threads: int = Field(2, ge=0, description="onnxruntime threads per inference (0: all cores)")
    intra_op_spinning: bool = Field(
        True, description="onnxruntime threads spin-wait between ops: faster alone, slower when "
                          "the cores are shared (HTTP parsing, other processes)")
    inter_op_threads: int = Field(1, ge=0, description="onnxruntime threads across graph branches")
    inference_workers: int = Field(1, ge=1, description="images segmented at the same time")
    queue_depth: int = Field(8, ge=1, description="requests admitted at once (running + waiting); more get 503")
    request_timeout_s: float = Field(120.0, gt=0, description="per-request limit; slower ones get 504")
    tile_size: int | None = Field(None, ge=64, description="override the model card's tile size")
    api_key: SecretStr | None = Field(
        None, description="when set, /segment, /model and /models need 'Authorization: Bearer <key>'")
    cors_origins: list[str] = Field(default_factory=list, description="JSON list of allowed origins; empty: CORS off")
    shutdown_timeout_s: float = Field(30.0, ge=0, description="time in-flight requests get to finish on SIGTERM")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")

    @property
    def models_folder(self) -> Path:
        """MODELS_DIR, or the default model's folder."""
        return self.models_dir or self.model_path.parent
