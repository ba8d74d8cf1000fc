from .unet2015 import (
    UNet2015,
    is_valid_tile_size,
    nearest_valid_tile_size,
    unet2015_border,
    unet2015_output_size,
    valid_tile_sizes,
)
