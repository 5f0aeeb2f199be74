"""The DRF API: one view per operation, thin: validate, call a service or selector, render."""
from serving.apis.feedback import FeedbackApi
from serving.apis.model_versions import (
    ModelVersionDetailApi,
    ModelVersionExportApi,
    ModelVersionListApi,
    ModelVersionPromoteApi,
)
from serving.apis.monitoring import MonitoringApi
from serving.apis.predict import PredictApi
from serving.apis.rules import RuleDetailApi, RuleFiringsApi, RuleListApi

__all__ = ["FeedbackApi", "ModelVersionDetailApi", "ModelVersionExportApi", "ModelVersionListApi",
           "ModelVersionPromoteApi", "MonitoringApi", "PredictApi", "RuleDetailApi", "RuleFiringsApi",
           "RuleListApi"]
