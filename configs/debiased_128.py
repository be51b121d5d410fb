# Background-randomised training (issue 8) at the quick profile's size. Usage:
#   evbattery train --config configs/debiased_128.py
input_type = "images"
debias = "bg-swap"
swap_prob = 1.0
image_size = 128
epochs = 25
batch_size = 32
