"""The compute-optimal study: difficulty bins, cross-validated strategy selection, the FLOPs
exchange, reports and plots (`run_study`), and the configuration it runs from."""

from ttc_jax.study.config import check_study_config, study_config
from ttc_jax.study.runner import Study, StudyModels, run_study

__all__ = ["Study", "StudyModels", "check_study_config", "run_study", "study_config"]
