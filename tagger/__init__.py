"""Teacher LLM labeling, student distillation and intent-tag serving (issue #3).

The public API, for ``cli/`` and ``api/``: names resolve on first use (PEP 562), so importing the
package costs nothing and the serving path never imports training code (peft, datasets) unless a
training name is used. (``distill`` is not here: it is also the name of a submodule, which would
shadow it; use ``from tagger.distill import distill``.)

>>> import tagger
>>> tagger.check_query("이과수 폭포") is None  # None: it can be tagged
True
>>> tagger.check_query("")
'empty query'
>>> "StudentTagger" in tagger.__all__
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clipfeed.lazy import lazy_exports

if TYPE_CHECKING:
    from tagger.evaluate import dir_size_mb, evaluate_model, side_by_side
    from tagger.format import check_query
    from tagger.gemma import pick_device, resolve_model_dir
    from tagger.intent import StudentBackend, StudentTagger
    from tagger.label import read_label_inputs, run_labeling
    from tagger.metrics import agreement, prf
    from tagger.openai_backend import OpenAIBackend
    from tagger.openai_server import create_openai_app
    from tagger.patterns import PatternModel, cap_patterns
    from tagger.student import StudentConfig
    from tagger.teacher import HFBackend, Teacher, TeacherConfig, load_teacher_config
    from tagger.tuning import TEACHER_TRAIN, TUNED_TEACHER, train_teacher
    from tagger.types import QueryInput, TeacherLabel

_EXPORTS = {
    "agreement": "tagger.metrics",
    "cap_patterns": "tagger.patterns",
    "check_query": "tagger.format",
    "create_openai_app": "tagger.openai_server",
    "dir_size_mb": "tagger.evaluate",
    "evaluate_model": "tagger.evaluate",
    "HFBackend": "tagger.teacher",
    "load_teacher_config": "tagger.teacher",
    "OpenAIBackend": "tagger.openai_backend",
    "PatternModel": "tagger.patterns",
    "pick_device": "tagger.gemma",
    "prf": "tagger.metrics",
    "QueryInput": "tagger.types",
    "read_label_inputs": "tagger.label",
    "resolve_model_dir": "tagger.gemma",
    "run_labeling": "tagger.label",
    "side_by_side": "tagger.evaluate",
    "StudentBackend": "tagger.intent",
    "StudentConfig": "tagger.student",
    "StudentTagger": "tagger.intent",
    "Teacher": "tagger.teacher",
    "TEACHER_TRAIN": "tagger.tuning",
    "TeacherConfig": "tagger.teacher",
    "TeacherLabel": "tagger.types",
    "train_teacher": "tagger.tuning",
    "TUNED_TEACHER": "tagger.tuning",
}
__all__ = [
    "TEACHER_TRAIN",
    "TUNED_TEACHER",
    "HFBackend",
    "OpenAIBackend",
    "PatternModel",
    "QueryInput",
    "StudentBackend",
    "StudentConfig",
    "StudentTagger",
    "Teacher",
    "TeacherConfig",
    "TeacherLabel",
    "agreement",
    "cap_patterns",
    "check_query",
    "create_openai_app",
    "dir_size_mb",
    "evaluate_model",
    "load_teacher_config",
    "pick_device",
    "prf",
    "read_label_inputs",
    "resolve_model_dir",
    "run_labeling",
    "side_by_side",
    "train_teacher",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
