"""scripts/score_predictions.py: per-image scores, threshold sweep and report of saved predictions."""

import shutil

import numpy as np
import pytest
from PIL import Image

from medseg_tools.scoring import score_folder, segmentation_scores, write_report


def test_perfect_and_inverted_masks(tmp_path, isbi_dir):
    dataset = tmp_path / "data"
    for sub in ("image", "label"):
        (dataset / sub).mkdir(parents=True)
        for index in (0, 1):
            shutil.copy(isbi_dir / sub / f"{index}.png", dataset / sub / f"{index}.png")
    predictions = tmp_path / "pred"
    predictions.mkdir()
    label0 = np.asarray(Image.open(dataset / "label" / "0.png"))
    label1 = np.asarray(Image.open(dataset / "label" / "1.png"))
    Image.fromarray(label0).save(predictions / "0_mask.png")
    Image.fromarray(255 - label1).save(predictions / "1_mask.png")
    # probability maps: perfect for 0; for 1 a map whose best threshold is 0.7, not 0.5
    Image.fromarray((label0 > 0).astype(np.uint16) * 65535).save(predictions / "0_prob.png")
    shifted = np.where(label1 > 0, 0.8, 0.6) * 65535
    Image.fromarray(shifted.astype(np.uint16)).save(predictions / "1_prob.png")

    scores = score_folder(predictions, dataset, "isbi", overlay_dir=tmp_path / "overlays")
    perfect, inverted = scores["rows"]
    assert perfect["dice"] == 1.0 and perfect["pixel_error"] == 0.0 and perfect["rand_error"] == 0.0
    assert inverted["pixel_error"] == 1.0 and inverted["dice"] == 0.0
    assert scores["mean"]["pixel_error"] == pytest.approx(0.5)
    threshold, best_pixel_error = scores["best_threshold"]["pixel_error"]
    assert 0.6 <= threshold < 0.8 and best_pixel_error == 0.0
    assert (tmp_path / "overlays" / "1_overlay.png").is_file()
    report = write_report(scores, tmp_path, "test")
    assert "| **mean** |" in report and "threshold" in report


def test_missing_prediction_and_size_mismatch(tmp_path, isbi_dir):
    with pytest.raises(FileNotFoundError, match="0_mask.png"):
        score_folder(tmp_path, isbi_dir, "isbi", ids=[0])
    with pytest.raises(ValueError, match="differ in size"):
        segmentation_scores(np.ones((4, 4)), np.ones((4, 5)))


def test_segmentation_scores_match_a_hand_count():
    truth = np.zeros((4, 4), bool)
    truth[0, 1:] = True  # 3 cell pixels
    prediction = np.zeros((4, 4), bool)
    prediction[0, :3] = True  # 2 of them found, 1 false positive, 12 true negatives
    scores = segmentation_scores(prediction, truth)
    assert scores["dice"] == pytest.approx(2 * 2 / (3 + 3))
    assert scores["iou"] == pytest.approx(2 / 4)
    assert scores["accuracy"] == pytest.approx(14 / 16) and scores["pixel_error"] == pytest.approx(2 / 16)
    assert scores["sensitivity"] == pytest.approx(2 / 3) and scores["specificity"] == pytest.approx(12 / 13)
    empty = segmentation_scores(np.zeros((3, 3)), np.zeros((3, 3)))
    assert empty["sensitivity"] == empty["specificity"] == empty["dice"] == 1.0


def test_skimage_rand_error_counts_membrane_inside_cells_as_one_segment():
    import numpy as np

    from medseg_tools.scoring import skimage_rand_error
    from transforms.metrics import rand_error

    truth = np.zeros((8, 8), bool)
    truth[:, :4] = truth[:, 5:] = True  # two cells split by a membrane column
    assert skimage_rand_error(truth, truth) == 0.0 and rand_error(truth, truth) == 0.0
    thick = truth.copy()
    thick[:, 3] = thick[:, 5] = False  # the predicted membrane is 3 px wide
    # the challenge's definition counts the 16 lost pixels as singletons, scikit-image as one segment
    from skimage.metrics import adapted_rand_error

    labels = np.where(truth, np.where(np.arange(8) < 4, 1, 2)[None, :], 0)
    predicted = np.where(thick, labels, 0)
    assert skimage_rand_error(thick, truth) == adapted_rand_error(labels, predicted, ignore_labels=(0,))[0]
    assert 0 < rand_error(thick, truth) != skimage_rand_error(thick, truth) > 0
