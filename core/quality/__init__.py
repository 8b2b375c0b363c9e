"""Sample quality: scores of generated samples against the data they imitate.

- `points`: point clouds (N, D), D small (the 2-D toys): knn_kl, moment_kl,
  energy_distance, precision_recall, mean_log_density, score_points, and data_vs_data (the
  same scores for two sets of true samples: the floor a perfect sampler reaches).
- `features`: the image features: a small network trained on the data set itself (a
  classifier when it has labels, else an autoencoder), deterministic, cached as
  safetensors; feature_extractor(dataset) -> images (N, C, H, W) -> (N, 64) float64.
- `images`: frechet_distance and kid in those features (FID's and KID's formulas, not
  their Inception features: labelled "FD in <data set>-classifier features"), and
  image_scores.
"""

from core.quality.features import (
    FeatureCacheWarning,
    FeatureExtractor,
    FeatureSettings,
    feature_extractor,
)
from core.quality.images import (
    fd_label,
    frechet_distance,
    frechet_distance_gaussians,
    image_scores,
    kid,
    kid_label,
)
from core.quality.points import (
    data_vs_data,
    energy_distance,
    gaussian_kl,
    knn_kl,
    mean_log_density,
    moment_kl,
    precision_recall,
    score_points,
)

__all__ = [
    "FeatureCacheWarning",
    "FeatureExtractor",
    "FeatureSettings",
    "data_vs_data",
    "energy_distance",
    "fd_label",
    "feature_extractor",
    "frechet_distance",
    "frechet_distance_gaussians",
    "gaussian_kl",
    "image_scores",
    "kid",
    "kid_label",
    "knn_kl",
    "mean_log_density",
    "moment_kl",
    "precision_recall",
    "score_points",
]
