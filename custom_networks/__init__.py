from .attention_resunet import AttentionResUNet
from .bcdunet import BCDUNet
from .cenet import CENet
from .families import FAMILIES, build_network, family_names
from .fcn import FCN8s
from .lgnet import LGNet, LocalGlobalAttention, PixelCorrelation, pixel_weighted_aggregation
from .mcsa_unet import ChannelSpatialAttention, MCSAUNet
from .multiresunet import MultiResUNet
from .pad_to_divisible import PadToDivisible
from .r2unet import R2UNet
from .resunet import ResUNet
from .resunetpp import ResUNetPlusPlus
from .segnet import SegNet
from .select_output import SelectOutput
from .u2net import U2NET_LITE, U2Net
from .unet3plus import UNet3Plus
from .unet2015 import (
    UNet2015,
    is_valid_tile_size,
    nearest_valid_tile_size,
    unet2015_border,
    unet2015_output_size,
    valid_tile_sizes,
)
