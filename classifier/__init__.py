"""Topic classifier and tag filter: a small hashed sub-word model (Korean + English) that maps a
tag and its query to calibrated tier-2 topic probabilities, and a filter that keeps or drops tags.

>>> from classifier import TopicClassifier, TopicFilter
>>> f = TopicFilter(TopicClassifier.load())
>>> f.explain(f.classifier.predict_one("네이버 로그인"))["keep"]
False
"""

from classifier.config import FilterConfig, TopicModelConfig
from classifier.data import TopicRow, read_rows, world_eval_rows, world_training_rows
from classifier.filter import TopicFilter
from classifier.topic_model import TopicClassifier, TopicPrediction, shipped_model_dir
from classifier.train import train

__all__ = [
    "FilterConfig",
    "TopicClassifier",
    "TopicFilter",
    "TopicModelConfig",
    "TopicPrediction",
    "TopicRow",
    "read_rows",
    "shipped_model_dir",
    "train",
    "world_eval_rows",
    "world_training_rows",
]
