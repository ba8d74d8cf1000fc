from .channels import EnsureChannels, EnsureChannelsd
from .confusion_metrics import ConfusionScore, ConfusionScoreMetric
from .datalist import DataValidationError
from .elastic import RandPaperElasticd
from .handlers import AtomicCheckpointSaver, ResumeFromCheckpoint, StopAfterSeconds, atomic_torch_save
from .illumination import FlatFieldCorrection, FlatFieldCorrectiond, estimate_background
from .inferers import (
    OverlapTileInferer,
    SplitUncertaintyd,
    TestTimeAugmentationInferer,
    TileGeometry,
    estimate_activation_bytes,
    meta_copy_state,
    probe_tile_geometry,
)
from .losses import TverskyFocalLoss, WeightedCrossEntropyLoss
from .metrics import (
    PerImageMetric,
    PixelError,
    PixelErrorMetric,
    RandError,
    RandErrorMetric,
    RandScores,
    confusion_scores,
    dice_score,
    iou_score,
    lower_is_better,
    pixel_error,
    rand_error,
    rand_scores,
)
from .nuclei import (
    AggregatedJaccardIndex,
    AggregatedJaccardIndexMetric,
    NucleiInstances,
    NucleiInstancesd,
    ObjectF1,
    ObjectF1Metric,
    aggregated_jaccard_index,
    nuclei_instances,
    object_detection_scores,
)
from .outputs import common_input_root
from .patches import SlidingWindowPatchDataset, sliding_window_slices
from .stain import RandHEDStainJitter, RandHEDStainJitterd, hed_to_rgb, jitter_hed_stains, rgb_to_hed
from .threshold_metrics import (
    ThresholdAveragedDice,
    ThresholdAveragedDiceMetric,
    threshold_averaged_dice,
    threshold_dice_curve,
)
from .tiling import RandOverlapTileCropd, extrapolate_crop, extrapolated_indices
from .volumes import (
    AxialSliceInferer,
    CheckHounsfieldRange,
    CheckHounsfieldRanged,
    CTVolumeReader,
    CTWindow,
    CTWindowd,
    DicomSeriesInfo,
    ResizedSliceNetwork,
    SaveDicomSegd,
    SpatialDimsDispatchd,
    SpatialDimsDispatchInferer,
    VolumeNiftiWriter,
    check_dicom_series,
    check_nifti_volume,
    dicom_frames_from_volume,
    hounsfield_problem,
    load_ct_volume,
    volume_datalist,
    volume_input_root,
    volume_name_formatter,
    write_dicom_seg,
)
from .weight_map import (
    BorderWeightMap,
    BorderWeightMapd,
    InstancesFromBinary,
    InstancesFromBinaryd,
    InstancesToForegroundWithBorders,
    InstancesToForegroundWithBordersd,
    class_balance_weights,
)
