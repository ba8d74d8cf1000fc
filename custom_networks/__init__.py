from .unet2015 import (
    UNet2015,
    is_valid_tile_size,
    nearest_valid_tile_size,
    unet2015_border,
    unet2015_output_size,
    valid_tile_sizes,
)
from .attention_resunet import AttentionResUNet
from .mcsa_unet import ChannelSpatialAttention, MCSAUNet
from .resunet import ResUNet
from .unet3plus import UNet3Plus
from .fcn import FCN8s
from .segnet import SegNet
from .r2unet import R2UNet
from .lgnet import LGNet, LocalGlobalAttention, PixelCorrelation, pixel_weighted_aggregation
from .select_output import SelectOutput
from .u2net import U2NET_LITE, U2Net
