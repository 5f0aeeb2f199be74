"""Model versions: request, train, promote, rescore the pool; one module per concept."""
from learning.services.cycle import model_version_train
from learning.services.export import FORMATS as EXPORT_FORMATS, ModelExport, model_version_export
from learning.services.healing import retrain_sweep
from learning.services.promotion import model_version_promote
from learning.services.ranking import pool_cold_start
from learning.services.requests import (
    model_version_request,
    model_version_request_by,
    model_version_request_if_due,
)
from learning.services.scoring import pool_score, pool_score_chunk, pool_score_start
from learning.services.training import TrainingError

__all__ = [
    "EXPORT_FORMATS",
    "ModelExport",
    "TrainingError",
    "model_version_export",
    "model_version_promote",
    "model_version_request",
    "model_version_request_by",
    "model_version_request_if_due",
    "model_version_train",
    "pool_cold_start",
    "pool_score",
    "pool_score_chunk",
    "pool_score_start",
    "retrain_sweep",
]
